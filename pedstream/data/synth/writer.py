"""WFDB output in the Leipzig conventions: records, annotations, RECORDS, subject and annotation tables."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Iterable

import numpy as np

from pedstream.data.annotations import write_annotations
from pedstream.data.synth.episodes import SEQUENCE_FILE, SUBJECT_FILE
from pedstream.data.synth.simulate import SimulatedRecord
from pedstream.errors import RecordError

__all__ = ["write_record", "write_folder_files", "SUBJECT_COLUMNS", "describe"]

SUBJECT_COLUMNS = ("subject_id", "file_name", "gender", "age", "diagnosis", "ap_loacation", "ecg_duration")

# Descriptions used by the real annotation table (processed_segments_with_aux.csv).
_DESCRIPTIONS = {
    ("X", "AVRT"): "Atrioventricular reentrant tachycardia", ("X", "AVNRT"): "Atrioventricular nodal reentrant tachycardia",
    ("/", "/A"): "Atrial Paced beats", ("/", "/V"): "Ventricular Paced beats",
    ("A", "A-Prex"): "Preexcitated premature atrial beats", ("J", ""): "Premature junctional beats",
    ("X", "AFIB"): "Atrial Fibrillation", ("+", "(N"): "Sinus rhythm", ("A", ""): "Premature atrial beats",
    ("+", "(/A"): "Atrial Paced rhythm", ("X", "avnrt"): "Aberrated AVNRT", ("+", "(/V"): "Ventricular Paced rhythm",
    ("X", "AVNRT+BII"): "AVNRT with AV-Block 2°",
    ("+", "(AVNRT"): "rhythm of Atrioventricular nodal reentrant tachcardia", ("X", "VT"): "Ventricular tachycardia",
    ("X", "AFL"): "Atrial Flutter", ("+", "(AVRT"): "rhythm of Atrioventricular reentrant tachycardia",
    ("a", ""): "Aberrated premature atrial beats", ("X", "EAT"): "Ectopic atrial tachycardia",
    ("+", "(J"): "Junctional rhythm", ("X", "avrt"): "Aberrated AVRT", ("+", "(AFIB"): "rhythm of Atrial Fibrillation",
    ("+", "(VT"): "rhythm of Ventricular Tachycardia", ("+", "(A"): "Ectopic atrial rhythm",
    ("L", ""): "Complete left bundle branch block", ("+", "(EAT"): "rhythm of Ectopic atrial tachycardia",
    ("+", "(B"): "Ventricular bigeminy rhythm", ("R", ""): "Complete right bundle branch block",
    ("F", ""): "Fusion beats", ("f", ""): "Fusion of Ventricular paced beat and Normal Beat",
    ("+", "(AFL"): "rhythm of Atrial Flutter",
}

README = """SIMULATED SIGNALS - NOT CLINICAL DATA
=====================================

The records in this folder were written by `pedstream data synth` (seed {seed}). They are
simulated electrocardiograms and intracardiac electrograms in the format of the Leipzig Heart
Center ECG-Database (PhysioNet, DOI 10.13026/7a4j-vn37): 977 Hz, WFDB format 16 with explicit ADC
gains (3200 adu/mV = +/-10.24 mV full scale unless the header says otherwise), units mV, 12 surface
leads plus ABL12 / RVA12 / CS12..CS90 (and ART, ABL_uni) in the six channel layouts of the real
files, `.atr` annotations with the real symbols and aux strings, a subject table
({subjects}) and an annotation table ({sequences}) in the real column layout.

No signal in this folder comes from a patient. {follow}
Noise: {noise}. The ART channel is an arterial-pressure monitor output at 0.05 mV per mmHg.
Do not use these files for clinical or diagnostic purposes.
"""


def describe(symbol: str, aux: str) -> str:
    """The description column of the real annotation table."""
    return _DESCRIPTIONS.get((symbol, aux), f"Unknown ({symbol}:{aux})")


def write_record(folder: str | Path, rec: SimulatedRecord) -> Path:
    """Write ``<folder>/<name>.hea/.dat/.atr``; returns the record path (no extension)."""
    import wfdb

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    d = np.rint(rec.signal * rec.gains[None, :])
    np.clip(d, -32767, 32767, out=d)  # -32768 is format 16's "no sample" value
    d = d.astype(np.int16)
    n_ch = len(rec.channels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wfdb.wrsamp(rec.name, fs=rec.fs, units=["mV"] * n_ch, sig_name=list(rec.channels), d_signal=d,
                        fmt=["16"] * n_ch, adc_gain=[float(g) for g in rec.gains], baseline=[0] * n_ch,
                        write_dir=str(folder))
    except Exception as exc:  # wfdb raises bare exceptions
        raise RecordError(rec.name, f"cannot write to {folder}: {exc}") from exc
    write_annotations(folder / rec.name, rec.annotations)
    return folder / rec.name


def write_folder_files(folder: str | Path, *, records: list[SimulatedRecord] | None = None,
                       rows: Iterable[dict[str, str]], sequences: Iterable[tuple[str, str, str]],
                       names: list[str], seed: int, follow_real: str | None, noise: str) -> None:
    """RECORDS, the subject table, the annotation table and README.txt."""
    folder = Path(folder)
    (folder / "RECORDS").write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    with (folder / SUBJECT_FILE).open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(SUBJECT_COLUMNS), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    with (folder / SEQUENCE_FILE).open("w", newline="", encoding="utf-8-sig") as fh:
        w2 = csv.writer(fh, lineterminator="\n")
        w2.writerow(["patient_id", "label_symbol", "dataset_aux_string", "description"])
        for pid, sym, aux in sequences:
            w2.writerow([pid, sym, aux, describe(sym, aux)])
    follow = (f"Each record follows the real beat-by-beat label sequence of one Leipzig child "
              f"(from {follow_real}); the signals themselves are simulated." if follow_real else
              "Rhythms come from a seeded random episode generator with priors derived from the real "
              "Leipzig children's annotations.")
    (folder / "README.txt").write_text(README.format(seed=seed, subjects=SUBJECT_FILE, sequences=SEQUENCE_FILE,
                                                     follow=follow, noise=noise), encoding="utf-8")
