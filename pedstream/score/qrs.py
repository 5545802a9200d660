"""Beat-by-beat QRS detection scoring after ANSI/AAMI EC57, on WFDB records.

Matching is wfdb's :func:`wfdb.processing.compare_annotations` (one-to-one, nearest first). Its
``window_width`` is a strict bound (``|test - ref| < window_width``), so the EC57 match window of
+/- 150 ms is ``window_width = round(0.150 * fs) + 1`` samples (55 at 360 Hz: up to 54 samples =
150 ms apart still match).

Rules (as the EC57 ``bxb`` comparator applies them):

- reference beats are the annotations whose symbol is a beat label
  (:meth:`pedstream.data.annotations.Annotations.beat_mask`; rhythm, noise, comment and
  ventricular-flutter-wave ``!`` marks are not beats);
- ventricular flutter/fibrillation episodes (between ``[`` and ``]``) are not scored: reference
  beats and detections inside them are dropped before matching (detections there are counted apart
  as ``det_in_vf``);
- "whole" scores every remaining beat of the record; "ec57" matches over the whole record but counts
  only reference beats (TP, FN) and unmatched detections (FP) from 300 s on (EC57's exclusion of
  the first five minutes, the learning period it allows a detector);
- totals are gross sums of TP, FN, FP over records (EC57 "gross" statistics);
- Se = TP / (TP + FN), +P = TP / (TP + FP) (1.0 when the denominator is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BeatScore", "MatchResult", "RecordLead", "match_beats", "vf_episodes", "load_record_lead", "check_record",
           "detect_stream", "detect_xqrs", "record_entry", "EC57_WINDOW_S", "EC57_EXCLUDE_S"]

EC57_WINDOW_S = 0.150  # match window, +/- seconds
EC57_EXCLUDE_S = 300.0  # EC57: the first five minutes are not scored


@dataclass(frozen=True)
class BeatScore:
    """TP/FN/FP counts with sensitivity and positive predictivity."""

    tp: int = 0
    fn: int = 0
    fp: int = 0

    @property
    def se(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def ppv(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    def __add__(self, other: "BeatScore") -> "BeatScore":
        return BeatScore(self.tp + other.tp, self.fn + other.fn, self.fp + other.fp)

    def as_dict(self) -> dict[str, float | int]:
        return {"tp": self.tp, "fn": self.fn, "fp": self.fp, "se": self.se, "ppv": self.ppv}


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one record's detections against its reference beats."""

    whole: BeatScore
    ec57: BeatScore
    matched: np.ndarray  # (n_ref,) bool: reference beat matched (after the VF exclusion)
    ref_sample: np.ndarray  # scored reference beats
    ref_symbol: np.ndarray
    test_sample: np.ndarray  # scored detections
    unmatched_test: np.ndarray  # detections without a reference beat (false positives)
    det_in_vf: int

    def class_se(self, symbols: str, *, start: int = 0) -> BeatScore:
        """TP/FN over reference beats whose symbol is in ``symbols`` (FP is 0: detections carry no class)."""
        m = np.isin(self.ref_symbol, list(symbols)) & (self.ref_sample >= start)
        tp = int(self.matched[m].sum())
        return BeatScore(tp, int(m.sum()) - tp, 0)


def vf_episodes(samples: np.ndarray, symbols: list[str] | np.ndarray, n_samples: int | None = None) -> list[tuple[int, int]]:
    """``[start, stop)`` sample ranges between ``[`` and ``]`` marks (an open ``[`` runs to the end)."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    for s, sym in zip(np.asarray(samples).tolist(), list(symbols)):
        if sym == "[" and start is None:
            start = int(s)
        elif sym == "]" and start is not None:
            out.append((start, int(s) + 1))
            start = None
    if start is not None:
        out.append((start, int(n_samples) if n_samples is not None else np.iinfo(np.int64).max))
    return out


def _outside(x: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    keep = np.ones(len(x), dtype=bool)
    for a, b in spans:
        keep &= ~((x >= a) & (x < b))
    return keep


def match_beats(ref_sample: np.ndarray, ref_symbol: list[str] | np.ndarray, test_sample: np.ndarray | list[int], *,
                fs: float, window_s: float = EC57_WINDOW_S, exclude_s: float = EC57_EXCLUDE_S,
                vf: list[tuple[int, int]] = ()) -> MatchResult:
    """Match detections ``test_sample`` to reference beats (already restricted to beat labels).

    Returns whole-record and EC57 (first ``exclude_s`` seconds not counted) scores; see the module
    docstring for the rules.
    """
    from wfdb.processing import compare_annotations

    ref = np.asarray(ref_sample, dtype=np.int64).reshape(-1)
    sym = np.asarray(list(ref_symbol), dtype=object).reshape(-1)
    test = np.unique(np.asarray(test_sample, dtype=np.int64).reshape(-1))  # sorted, no duplicates
    order = np.argsort(ref, kind="stable")
    ref, sym = ref[order], sym[order]
    keep_r, keep_t = _outside(ref, list(vf)), _outside(test, list(vf))
    det_in_vf = int((~keep_t).sum())
    ref, sym, test = ref[keep_r], sym[keep_r], test[keep_t]
    width = int(round(window_s * fs)) + 1  # compare_annotations matches |d| < width
    matched = np.zeros(len(ref), dtype=bool)
    test_used = np.zeros(len(test), dtype=bool)
    if len(ref) and len(test):
        cmp = compare_annotations(ref, test, width)
        matched[cmp.matched_ref_inds] = True
        test_used[np.asarray(cmp.matched_test_inds, dtype=np.int64)] = True
    start = int(round(exclude_s * fs))
    unmatched = test[~test_used]
    tp = int(matched.sum())
    whole = BeatScore(tp, len(ref) - tp, len(unmatched))
    late = ref >= start
    tp_l = int(matched[late].sum())
    ec57 = BeatScore(tp_l, int(late.sum()) - tp_l, int((unmatched >= start).sum()))
    return MatchResult(whole=whole, ec57=ec57, matched=matched, ref_sample=ref, ref_symbol=sym, test_sample=test,
                       unmatched_test=unmatched, det_in_vf=det_in_vf)


# ---------------------------------------------------------------------------------------- records
DEFAULT_LEADS = ("MLII", "II")


@dataclass(frozen=True)
class RecordLead:
    name: str
    fs: float
    lead: str
    signal: np.ndarray  # (n,) mV
    ref_sample: np.ndarray  # beat annotations
    ref_symbol: np.ndarray
    vf: list[tuple[int, int]]


def load_record_lead(path, *, signal_cfg, lead: str | None = None) -> RecordLead:
    """One lead (by name; default the first of MLII, II, else the first channel) and the beat annotations.

    Raises :class:`RecordError` (unreadable record, lead not in it) or :class:`AnnotationError` (no
    ``.atr`` file, or one without beat annotations), each naming the record.
    """
    import wfdb

    from pedstream.data.loader import _quiet_wfdb, open_record
    from pedstream.errors import AnnotationError, RecordError

    rec = open_record(path, signal_cfg)  # header, signal files, lengths: clear errors naming the record
    ann = rec.annotations("atr")
    if ann is None:
        raise AnnotationError(rec.name, f"no reference annotation file {rec.path}.atr (beat-by-beat scoring needs one)")
    beats = ann.beat_mask()
    if not beats.any():
        raise AnnotationError(rec.name, f"{rec.path}.atr holds no beat annotations ({len(ann)} other marks)")
    names = [n.lower() for n in rec.sig_names]
    if lead is not None:
        if lead.lower() not in names:
            raise RecordError(rec.name, f"lead {lead!r} is not in the record (it has {', '.join(rec.sig_names)})")
        j = names.index(lead.lower())
    else:
        j = next((names.index(c.lower()) for c in DEFAULT_LEADS if c.lower() in names), 0)
    try:
        with _quiet_wfdb():
            w = wfdb.rdrecord(str(rec.path), channels=[j], physical=False, return_res=32)
    except Exception as exc:
        raise RecordError(rec.name, f"cannot read lead {rec.sig_names[j]}: {exc}") from exc
    gain = float(w.adc_gain[0]) or 200.0
    x = (w.d_signal[:, 0].astype(np.float64) - float(w.baseline[0] or 0)) / gain
    sym = np.asarray(ann.symbol, dtype=object)
    return RecordLead(name=rec.name, fs=rec.fs, lead=rec.sig_names[j], signal=x, ref_sample=ann.sample[beats],
                      ref_symbol=sym[beats], vf=vf_episodes(ann.sample, ann.symbol, rec.n_samples))


def detect_stream(x: np.ndarray, fs: float, *, chunk: int) -> np.ndarray:
    """Our streaming detector fed ``chunk`` samples at a time, flushed at the end."""
    from pedstream.dsp.qrs import OnlineQRSDetector

    det = OnlineQRSDetector(fs=fs)
    out: list[int] = []
    for s in range(0, len(x), chunk):
        out.extend(det.process(x[s : s + chunk]))
    out.extend(det.flush())
    return np.asarray(out, dtype=np.int64)


def detect_xqrs(x: np.ndarray, fs: float) -> np.ndarray:
    """wfdb's XQRS on the whole lead (offline, default settings)."""
    import logging

    from wfdb.processing import XQRS

    logging.getLogger("wfdb").setLevel(logging.WARNING)
    xq = XQRS(sig=x, fs=fs)
    xq.detect(verbose=False)
    return np.asarray(xq.qrs_inds, dtype=np.int64)


PEERS = {"xqrs": detect_xqrs}


def record_entry(res: MatchResult, *, fs: float, lead: str, n_samples: int) -> dict:
    """JSON entry of one record: whole-record tp/fn/fp/se/ppv, ``ec57`` and ventricular sensitivity."""
    v = res.class_se("V")
    return {**res.whole.as_dict(), "ec57": res.ec57.as_dict(), "v_tp": v.tp, "v_fn": v.fn, "se_v": v.se,
            "lead": lead, "fs": fs, "seconds": n_samples / fs, "det_in_vf": res.det_in_vf}


def check_record(path, *, signal_cfg, lead: str | None = None) -> None:
    """Cheap pre-flight of :func:`load_record_lead` (header, signal files, annotations, lead); no samples read."""
    from pedstream.data.loader import open_record
    from pedstream.errors import AnnotationError, RecordError

    rec = open_record(path, signal_cfg)
    ann = rec.annotations("atr")
    if ann is None:
        raise AnnotationError(rec.name, f"no reference annotation file {rec.path}.atr (beat-by-beat scoring needs one)")
    if not ann.beat_mask().any():
        raise AnnotationError(rec.name, f"{rec.path}.atr holds no beat annotations ({len(ann)} other marks)")
    if lead is not None and lead.lower() not in [n.lower() for n in rec.sig_names]:
        raise RecordError(rec.name, f"lead {lead!r} is not in the record (it has {', '.join(rec.sig_names)})")
