"""Label sequences that drive the simulator: the real Leipzig sequences or a seeded random generator.

A label is a ``(symbol, aux)`` pair exactly as in the Leipzig ``.atr`` files (``("X", "AVRT")``,
``("+", "(N")``, ``("~", "")``...). Two sources yield an endless stream of labels:

- :func:`real_label_stream` plays one child's real beat-by-beat sequence (from
  ``processed_segments_with_aux.csv``) from a random offset, looping at the end;
- :func:`random_label_stream` draws episodes from a Markov chain whose transition counts, episode
  lengths and within-sinus ectopic mix are the real ones (:data:`PRIORS`, derived from the 29
  children by :func:`derive_priors`).
"""

from __future__ import annotations

import csv
import itertools
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np

from pedstream.errors import AnnotationError
from pedstream.data.synth.subject import Subject

__all__ = [
    "Label",
    "PRIORS",
    "SEQUENCE_FILE",
    "SUBJECT_FILE",
    "read_real_sequences",
    "read_real_subjects",
    "real_label_stream",
    "random_label_stream",
    "derive_priors",
]

Label = tuple[str, str]
SEQUENCE_FILE = "processed_segments_with_aux.csv"
SUBJECT_FILE = "children-subject-info.csv"

# Real priors of the 29 Leipzig children, hard-coded so that a fresh clone needs no ../shared.
# Derived with:
#   .venv/bin/python -m pedstream.data.synth.episodes ../shared/data/leipzig-annotations
# (AVRT and AVNRT rhythms are merged into TACHY: a child's own diagnosis picks the mechanism.)
# transitions: counts of rhythm-marker successions "(from" -> "(to";
# run_beats: (median, 10th, 90th percentile) of the beats in a rhythm episode;
# sinus_mix: counts of the beat labels inside "(N" episodes (the unmarked paced "/" and "X" beats there are
# left out: episodes produce those). The single real AFL episode (107 beats) gets a widened spread, and
# R (2 beats, outside "(N" episodes in the real data) is kept in the mix so RBBB beats occur.
PRIORS: dict = {
    "transitions": {
        "N": {"/A": 379, "/V": 109, "N": 100, "TACHY": 92, "J": 12, "VT": 8, "A": 4, "EAT": 3, "AFIB": 3, "B": 1},
        "/A": {"N": 334, "TACHY": 61, "/A": 31, "J": 12, "/V": 6, "AFIB": 4, "EAT": 1, "A": 1},
        "/V": {"N": 142, "TACHY": 41, "/V": 6, "VT": 2, "/A": 2, "B": 1, "A": 1},
        "TACHY": {"N": 97, "/V": 73, "/A": 24, "TACHY": 12, "AFIB": 4, "VT": 2, "J": 1},
        "AFIB": {"/A": 5, "N": 4, "AFL": 1, "AFIB": 1, "TACHY": 1},
        "AFL": {"N": 1},
        "VT": {"N": 9, "TACHY": 3},
        "EAT": {"N": 4},
        "J": {"N": 12, "/A": 10, "TACHY": 3},
        "A": {"N": 4, "A": 1, "TACHY": 1},
        "B": {"/V": 1, "N": 1},
    },
    "run_beats": {
        "N": (8.0, 3.0, 144.8), "/A": (9.0, 7.0, 51.4), "/V": (9.0, 4.0, 49.5),
        "TACHY": (30.0, 5.0, 277.2), "AFIB": (68.5, 32.7, 162.6), "AFL": (107.0, 60.0, 160.0),
        "VT": (6.0, 4.0, 20.1), "EAT": (7.0, 4.9, 11.2), "J": (5.0, 3.0, 22.2), "A": (11.0, 4.0, 92.0),
        "B": (9.0, 7.4, 10.6),
    },
    "sinus_mix": {"N": 49260, "A": 3266, "J": 1326, "V": 563, "Q": 324, "a": 45, "F": 3, "b": 3,
                  "L": 2, "R": 2, "j": 1},
    "quality_pairs_per_beat": 113 / 97785,
}

_MARKER = {"N": "(N", "/A": "(/A", "/V": "(/V", "AFIB": "(AFIB", "AFL": "(AFL", "VT": "(VT",
           "EAT": "(EAT", "J": "(J", "A": "(A", "B": "(B"}


def _csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError as exc:
        raise AnnotationError(str(path), f"cannot read: {exc.strerror or exc}") from exc


def read_real_sequences(folder: str | Path) -> dict[str, list[Label]]:
    """``{patient_id: [(symbol, aux), ...]}`` from ``folder/processed_segments_with_aux.csv``.

    The file has a UTF-8 BOM and the columns ``patient_id,label_symbol,dataset_aux_string,description``.
    """
    path = Path(folder) / SEQUENCE_FILE
    if not path.is_file():
        raise AnnotationError(str(path), f"{SEQUENCE_FILE} not found (expected the real Leipzig annotation table)")
    rows = _csv_rows(path)
    need = {"patient_id", "label_symbol", "dataset_aux_string"}
    if rows and not need <= set(rows[0]):
        raise AnnotationError(str(path), f"expected columns {sorted(need)}, got {sorted(rows[0])}")
    out: dict[str, list[Label]] = defaultdict(list)
    for r in rows:
        out[r["patient_id"].strip()].append((r["label_symbol"].strip(), (r["dataset_aux_string"] or "").strip()))
    return dict(out)


def read_real_subjects(folder: str | Path) -> dict[str, dict[str, str]]:
    """``{file_name: row}`` from ``folder/children-subject-info.csv`` (empty when the file is absent)."""
    path = Path(folder) / SUBJECT_FILE
    if not path.is_file():
        return {}
    rows = _csv_rows(path)
    if rows and "file_name" not in rows[0]:
        raise AnnotationError(str(path), f"expected a file_name column, got {sorted(rows[0])}")
    return {r["file_name"].strip(): r for r in rows}


def _rhythm_of(label: Label) -> str | None:
    """Rhythm marker aux implied by a beat label, for a stream that starts mid-episode."""
    s, a = label
    if s == "X":
        return "(" + (a.upper() if a.upper() in ("AVRT", "AVNRT") else a.split("+")[0])
    if s == "/":
        return "(" + (a or "/A")
    if s in ("N", "A", "V", "J", "Q", "a", "F", "j", "R", "L", "b"):
        return "(N"
    return None


def real_label_stream(seq: list[Label], rng: np.random.Generator) -> Iterator[Label]:
    """Play ``seq`` from a random offset, looping; starts with the rhythm marker in force there."""
    if not seq:
        raise AnnotationError("(sequence)", "the real label sequence is empty")
    n = len(seq)
    start = int(rng.integers(0, n))
    if seq[start][0] != "+":
        marker = next((seq[i] for i in range(start - 1, -1, -1) if seq[i][0] == "+"), None)
        if marker is None:
            first_beat = next((lab for lab in itertools.chain(seq[start:], seq) if _rhythm_of(lab)), None)
            aux = _rhythm_of(first_beat) if first_beat else "(N"
            marker = ("+", aux or "(N")
        yield marker
    i = start
    while True:
        yield seq[i]
        i += 1
        if i == n:
            i = 0
            if seq[0][0] != "+":  # a loop restarts an episode: say so
                first_beat = next((lab for lab in seq if _rhythm_of(lab)), ("N", ""))
                yield ("+", _rhythm_of(first_beat) or "(N")


def _lognormal_beats(rng: np.random.Generator, q: tuple[float, float, float]) -> int:
    med, p10, p90 = q
    sigma = max((math.log(p90) - math.log(p10)) / 2.563, 0.1)
    return max(1, int(round(med * math.exp(rng.normal(0.0, sigma)))))


def random_label_stream(subject: Subject, rng: np.random.Generator, *,
                        max_episode_beats: int = 400, start: str = "N") -> Iterator[Label]:
    """Endless labels from the real-prior episode Markov chain, specialised to ``subject``.

    The tachycardia is the subject's own (AVRT for AVRT diagnoses, AVNRT otherwise); sinus beats are
    ``N-Prex`` for manifest WPW. ``max_episode_beats`` caps one episode (short records still visit
    several episodes).
    """
    trans = PRIORS["transitions"]
    mix = PRIORS["sinus_mix"]
    mix_syms = list(mix)
    mix_p = np.array([mix[s] for s in mix_syms], dtype=float)
    mix_p /= mix_p.sum()
    q_rate = PRIORS["quality_pairs_per_beat"]
    mech = subject.mechanism
    nprex = "N-Prex" if subject.wpw else ""
    state = start
    while True:
        n = min(_lognormal_beats(rng, PRIORS["run_beats"][state]), max_episode_beats)
        if state == "N":
            n = max(n, 6)  # a sinus stretch long enough to carry its ectopic beats
        marker = f"({mech}" if state == "TACHY" else _MARKER[state]
        yield ("+", marker)
        prev_ectopic = False
        for k in range(n):
            if rng.random() < q_rate:
                yield ("~", "")
                yield ("~", "")
            if state == "N":
                s = "N" if prev_ectopic or k == 0 else str(rng.choice(mix_syms, p=mix_p))
                prev_ectopic = s != "N"
                aux = nprex if s == "N" else ("A-Prex" if s == "A" and subject.wpw else ("BI" if s == "b" else ""))
                yield (s, aux)
            elif state == "/A":
                yield ("/", "/A")
            elif state == "/V":
                yield ("f", "") if k == 0 and rng.random() < 0.05 else ("/", "/V")
            elif state == "TACHY":
                if k < 3 and rng.random() < 0.1:
                    yield ("X", mech.lower())
                elif mech == "AVNRT" and rng.random() < 0.02:
                    yield ("X", "AVNRT+BII")
                elif rng.random() < 0.01:
                    yield ("Q", "")
                else:
                    yield ("X", mech)
            elif state in ("AFIB", "AFL", "VT", "EAT"):
                yield ("X", state)
            elif state == "J":
                yield ("J", "")
            elif state == "A":
                yield ("A", "") if k % 3 == 0 else ("N", nprex)
            elif state == "B":
                yield ("V", "") if k % 2 else ("N", nprex)
        row = trans[state]
        keys = list(row)
        p = np.array([row[k] for k in keys], dtype=float)
        state = str(rng.choice(keys, p=p / p.sum()))


def derive_priors(folder: str | Path) -> dict:
    """Recompute :data:`PRIORS` from the real children's sequences (x001..x0029) in ``folder``."""
    seqs = read_real_sequences(folder)

    def kind(aux: str) -> str:
        k = aux.lstrip("(")
        return "TACHY" if k in ("AVRT", "AVNRT") else k

    trans: dict[str, Counter] = defaultdict(Counter)
    runs: dict[str, list[int]] = defaultdict(list)
    mix: Counter = Counter()
    n_beats = n_quality = 0
    for pid, seq in seqs.items():
        if int(pid[1:]) >= 100:  # adults
            continue
        cur, n = None, 0
        for s, a in seq:
            if s == "+":
                if cur is not None:
                    runs[cur].append(n)
                    trans[cur][kind(a)] += 1
                cur, n = kind(a), 0
            elif s == "~":
                n_quality += 1
            else:
                n += 1
                n_beats += 1
                if cur == "N":
                    mix[s] += 1
        if cur is not None:
            runs[cur].append(n)
    return {
        "transitions": {k: dict(v.most_common()) for k, v in trans.items()},
        "run_beats": {k: tuple(float(x) for x in np.percentile(v, [50, 10, 90])) for k, v in runs.items()},
        "sinus_mix": dict(mix.most_common()),
        "quality_pairs_per_beat": f"{n_quality // 2} / {n_beats}",
    }


if __name__ == "__main__":  # pragma: no cover - the derivation command quoted above
    import pprint

    pprint.pprint(derive_priors(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/leipzig-annotations"),
                  width=110, sort_dicts=False)
