"""Name-based channel resolution onto the canonical 19-channel layout."""

from __future__ import annotations

import numpy as np
import pytest

from pedstream.data.channels import CANONICAL_CHANNELS, LEIPZIG_LAYOUTS, resolve_channels
from pedstream.errors import ChannelError

EXTRA = ("ART", "ABL_uni")


@pytest.mark.parametrize("layout", sorted(LEIPZIG_LAYOUTS))
def test_every_leipzig_layout_maps_by_name(layout: str) -> None:
    names = LEIPZIG_LAYOUTS[layout]
    cmap = resolve_channels(names, extra_ok=EXTRA)
    assert not cmap.unknown
    for k, canon in enumerate(CANONICAL_CHANNELS):
        if canon in names:
            assert names[cmap.source_index[k]] == canon
        else:
            assert not cmap.present[k]
    data = np.arange(len(names) * 3, dtype=np.float32).reshape(3, len(names))
    out = cmap.apply(data)
    assert out.shape == (3, 19)
    rva = CANONICAL_CHANNELS.index("RVA12")
    np.testing.assert_array_equal(out[:, rva], data[:, names.index("RVA12")])


def test_rva_last_is_not_read_by_index() -> None:
    cmap = resolve_channels(LEIPZIG_LAYOUTS["rva_last"])
    assert cmap.source_index[CANONICAL_CHANNELS.index("RVA12")] == len(LEIPZIG_LAYOUTS["rva_last"]) - 1


def test_aliases_case_and_extras() -> None:
    cmap = resolve_channels(["MLII", "v1", "ART", "weird"], aliases={"MLII": "II"}, extra_ok=["ART"])
    assert cmap.present[CANONICAL_CHANNELS.index("II")] and cmap.present[CANONICAL_CHANNELS.index("V1")]
    assert cmap.ignored == ("ART",) and cmap.unknown == ("weird",)
    assert cmap.n_present == 2


def test_unknown_only_and_duplicates_fail_clearly() -> None:
    with pytest.raises(ChannelError, match="stream bed7: none of the channel names"):
        resolve_channels(["foo", "bar"], where="stream bed7")
    with pytest.raises(ChannelError, match="appears twice"):
        resolve_channels(["II", "MLII"], aliases={"MLII": "II"})
