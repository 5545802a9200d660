"""Rhythm episodes from '+' annotations, mapped by configuration (pedstream.data.rhythm)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from pedstream.config import load_config
from pedstream.data.annotations import Annotations, write_annotations
from pedstream.data.rhythm import (
    Episode,
    NoRhythmAnnotations,
    RhythmMapping,
    episodes_from_annotations,
    labels_at,
    merge_episodes,
    rhythm_episodes,
)
from pedstream.errors import AnnotationError, ConfigError

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
FS = 360


def _record(folder: Path, name: str, marks: list[tuple[int, str, str]], *, n: int = 3600) -> Path:
    """A 2-lead 360 Hz record of ``n`` samples with annotations ``marks`` ((sample, symbol, aux))."""
    sig = (0.1 * np.sin(np.arange(n) / FS * 2 * np.pi))[:, None].repeat(2, axis=1)
    wfdb.wrsamp(name, fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=sig, fmt=["212", "212"],
                write_dir=str(folder))
    samples = [m[0] for m in marks]
    write_annotations(folder / name, Annotations(sample=np.array(samples), symbol=[m[1] for m in marks],
                                                 aux=[m[2] for m in marks], fs=FS))
    return folder / name


@pytest.fixture(scope="module")
def mitdb_map() -> RhythmMapping:
    return RhythmMapping.from_config(load_config(), "mitdb")


def test_mitdb_aux_strings_map_onto_leipzig_classes(mitdb_map: RhythmMapping) -> None:
    expected = {"(N": "sinus", "(AFIB": "af_afl", "(AFL": "af_afl", "(VT": "vt", "(P": "ventricular_paced",
                "(PREX": "preexcited", "(B": "pvc", "(T": "pvc"}
    for aux, cls in expected.items():
        assert mitdb_map.label(aux) == cls, aux
        assert mitdb_map.label(aux + "\x00") == cls  # WFDB pads aux strings with NUL
    for aux in ("(SVTA", "(VFL", "(NOD", "(IVR", "(XYZ"):
        assert mitdb_map.label(aux) is None, aux
    assert mitdb_map.knows("(SVTA") and not mitdb_map.knows("(XYZ")


def test_episodes_from_a_written_record(tmp_path: Path, mitdb_map: RhythmMapping) -> None:
    marks = [(10, "+", "(N"), (200, "N", ""), (900, "+", "(AFIB"), (1200, "N", ""), (1800, "+", "(SVTA"),
             (2400, "+", "(VT"), (3000, "+", "(N")]
    path = _record(tmp_path, "r1", marks, n=3600)
    eps = rhythm_episodes(path, mitdb_map)
    assert [(e.start, e.end, e.label, e.aux) for e in eps] == [
        (10, 900, "sinus", "(N"), (900, 1800, "af_afl", "(AFIB"), (1800, 2400, None, "(SVTA"),
        (2400, 3000, "vt", "(VT"), (3000, 3600, "sinus", "(N")]  # the last runs to the record's end
    assert eps[1].start_s == pytest.approx(2.5) and eps[1].duration_s == pytest.approx(2.5)
    assert labels_at(eps, np.array([0, 10, 899, 900, 2000, 3599])) == [None, "sinus", "sinus", "af_afl", None, "sinus"]


def test_real_mitdb_excerpt_bigeminy_episodes(mitdb_map: RhythmMapping) -> None:
    # MIT-BIH 119, first 60 s: (N at 32, (B at 7610, (N at 11305, (B at 12901, (N at 15216, (B at 20532
    eps = rhythm_episodes(REAL / "119", mitdb_map)
    assert [e.label for e in eps] == ["sinus", "pvc", "sinus", "pvc", "sinus", "pvc"]
    assert eps[1].start == 7610 and eps[1].end == 11305 and eps[-1].end == 21600


def test_record_without_rhythm_annotations_is_a_domain_error(tmp_path: Path, mitdb_map: RhythmMapping) -> None:
    path = _record(tmp_path, "beats", [(100, "N", ""), (400, "V", ""), (700, "N", "")])
    with pytest.raises(NoRhythmAnnotations) as err:
        rhythm_episodes(path, mitdb_map)
    assert isinstance(err.value, AnnotationError) and err.value.exit_code == 2
    assert "no rhythm annotations" in str(err.value) and "beats" in str(err.value)
    assert "\n" not in str(err.value)


def test_merge_joins_touching_episodes_of_one_label() -> None:
    eps = [Episode(0, 10, "sinus", "(N", 10.0), Episode(10, 20, "sinus", "(N", 10.0),
           Episode(20, 30, "vt", "(VT", 10.0), Episode(30, 40, "sinus", "(N", 10.0)]
    merged = merge_episodes(eps)
    assert [(e.start, e.end, e.label) for e in merged] == [(0, 20, "sinus"), (20, 30, "vt"), (30, 40, "sinus")]


def test_episodes_need_a_sampling_rate(mitdb_map: RhythmMapping) -> None:
    ann = Annotations(sample=np.array([5]), symbol=["+"], aux=["(N"], fs=None)
    with pytest.raises(AnnotationError, match="sampling rate"):
        episodes_from_annotations(ann, mitdb_map, n_samples=100)


def test_a_map_naming_an_unknown_class_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rhythm.mitdb"):
        load_config(None, ["labels.rhythm.mitdb.classes.junctional=['(NOD']"])
    with pytest.raises(ConfigError, match="listed under"):
        load_config(None, ["labels.rhythm.mitdb.classes.vt=['(VT', '(N']"])
    with pytest.raises(ConfigError, match="no rhythm map"):
        RhythmMapping.from_config(load_config(), "nope")
