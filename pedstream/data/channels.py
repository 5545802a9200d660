"""Canonical channel layout and name-based channel resolution.

Every source (WFDB file, LSL stream, MQTT stream) is mapped onto the canonical 19-channel layout
by *name*, never by index: ECG = I II III aVR aVL aVF V1..V6, IEGM = ABL12 RVA12 CS12..CS90.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np

from pedstream.errors import ChannelError

__all__ = [
    "ECG_CHANNELS",
    "IEGM_CHANNELS",
    "CANONICAL_CHANNELS",
    "LEIPZIG_LAYOUTS",
    "ChannelMap",
    "resolve_channels",
]

ECG_CHANNELS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
IEGM_CHANNELS: tuple[str, ...] = ("ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90")
CANONICAL_CHANNELS: tuple[str, ...] = ECG_CHANNELS + IEGM_CHANNELS

_CS = ("CS12", "CS34", "CS56", "CS78", "CS90")
# The six channel layouts of the real Leipzig files (verified against all 39 headers).
LEIPZIG_LAYOUTS: dict[str, tuple[str, ...]] = {
    "full": ECG_CHANNELS + ("ABL12", "RVA12") + _CS,  # 27 records
    "abl_rva": ECG_CHANNELS + ("ABL12", "RVA12"),  # x102 x105 x107 x108 x109
    "no_abl": ECG_CHANNELS + ("RVA12",) + _CS,  # x002 x005 x0015 x0029
    "abl_uni": ECG_CHANNELS + ("ABL12", "ABL_uni", "RVA12") + _CS,  # x0023
    "art": ECG_CHANNELS + ("ART", "ABL12", "RVA12") + _CS,  # x0028
    "rva_last": ECG_CHANNELS + ("ABL12",) + _CS + ("RVA12",),  # x100
}


@dataclass(frozen=True)
class ChannelMap:
    """How a source's channels land on a target layout.

    ``source_index[k]`` is the source column that feeds target channel ``k`` (or -1 when absent);
    ``present`` is the boolean presence mask over the target layout; ``unknown`` lists source names
    that match nothing; ``ignored`` lists known-but-unused names (``extra_ok``).
    """

    target: tuple[str, ...]
    source_names: tuple[str, ...]
    source_index: np.ndarray  # (n_target,) int, -1 where absent
    unknown: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    present: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "present", self.source_index >= 0)

    @property
    def n_present(self) -> int:
        return int(self.present.sum())

    def apply(self, data: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
        """Scatter ``(n, n_source)`` samples into a zero-filled ``(n, n_target)`` float32 array."""
        n = data.shape[0]
        if out is None:
            out = np.zeros((n, len(self.target)), dtype=np.float32)
        else:
            out[...] = 0.0
        idx = np.flatnonzero(self.present)
        out[:, idx] = data[:, self.source_index[idx]]
        return out


def _norm(name: str) -> str:
    return name.strip().replace(" ", "").lower()


def resolve_channels(
    names: Sequence[str],
    *,
    target: Sequence[str] = CANONICAL_CHANNELS,
    aliases: Mapping[str, str] | None = None,
    extra_ok: Iterable[str] = (),
    where: str = "source",
    require_any: bool = True,
) -> ChannelMap:
    """Map source channel ``names`` onto ``target`` by (case-insensitive) name and ``aliases``.

    Raises :class:`ChannelError` when a target channel appears twice, or when ``require_any`` and no
    name matches at all (the "unknown channel names" case the engine must report clearly).
    """
    target = tuple(target)
    lookup = {_norm(t): i for i, t in enumerate(target)}
    for alias, canon in (aliases or {}).items():
        if canon in target:
            lookup.setdefault(_norm(alias), target.index(canon))
    ok = {_norm(e) for e in extra_ok}
    index = np.full(len(target), -1, dtype=np.int64)
    unknown: list[str] = []
    ignored: list[str] = []
    for col, raw in enumerate(names):
        k = lookup.get(_norm(raw))
        if k is None:
            (ignored if _norm(raw) in ok else unknown).append(raw)
            continue
        if index[k] >= 0:
            raise ChannelError(where, f"channel {target[k]} appears twice ({names[index[k]]!r} and {raw!r})")
        index[k] = col
    if require_any and not (index >= 0).any():
        raise ChannelError(
            where,
            f"none of the channel names {list(names)} is a known ECG/IEGM channel "
            f"(expected names like {', '.join(target[:3])}..., {target[-1]})",
            channels=list(names),
        )
    return ChannelMap(target=target, source_names=tuple(names), source_index=index,
                      unknown=tuple(unknown), ignored=tuple(ignored))
