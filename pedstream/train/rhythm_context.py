"""The learned rhythm-context model: scikit-learn's HistGradientBoostingClassifier over the context
features (:mod:`pedstream.dsp.rhythm_features`), with class-balanced sample weights, and its scores.

- :func:`training_rows` selects training rows of a feature table: labelled, the rhythm in effect for
  at least ``min_age_s``, every ``stride``-th row of a record (consecutive hops share most context);
- :func:`fit` / :func:`predict_proba` (``(n, len(CLASSES))`` in :data:`CLASSES` order, whatever
  classes the fold had);
- :func:`record_calls` / :func:`score_records`: per-record alarm episodes through the engine's own
  alarm logic (:class:`pedstream.monitor.rhythm_alarms.RhythmAlarmLogic`), scored with
  :func:`pedstream.score.episodes.score_record` against the annotated rhythm spans;
- :func:`rule_probs`: the RR-irregularity rule's decisions as one-hot "probabilities" (AF or sinus),
  so it is scored by the same alarm logic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from pedstream.train.rhythm_context_data import CLASSES

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["ALARM_CLASSES", "DEFAULT_PARAMS", "alarm_inputs", "fit", "predict_proba", "record_calls", "rr_rule_calls",
           "rule_probs", "run_columns", "score_records",
           "training_rows"]

ALARM_CLASSES = ("af_afl", "svt", "vt", "vf", "asystole")
DEFAULT_PARAMS: dict[str, Any] = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 15, "l2_regularization": 1.0}


def training_rows(table: dict[str, np.ndarray], *, min_age_s: float = 2.0, stride: int = 4,
                  records: set[str] | None = None) -> np.ndarray:
    y, rec = table["y"], table["record"]
    ok = (y >= 0) & (table["age_s"] >= min_age_s)
    if records is not None:
        ok &= np.isin(rec, list(records))
    idx = np.flatnonzero(ok)
    if stride > 1 and idx.size:
        pos = np.zeros(idx.size, np.int64)  # position of each row within its record
        starts = np.r_[0, np.flatnonzero(rec[idx][1:] != rec[idx][:-1]) + 1]
        for a, b in zip(starts, np.r_[starts[1:], idx.size]):
            pos[a:b] = np.arange(b - a)
        idx = idx[pos % stride == 0]
    return idx


def fit(X: np.ndarray, y: np.ndarray, *, params: dict[str, Any] | None = None, seed: int = 0,
        source_weight: np.ndarray | None = None) -> Any:
    """A fitted classifier; every class present gets the same total weight."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=len(CLASSES)).astype(np.float64)
    w = (y.size / (np.count_nonzero(counts) * counts[y]))
    if source_weight is not None:
        w = w * source_weight
    clf = HistGradientBoostingClassifier(**{**DEFAULT_PARAMS, **(params or {})}, early_stopping=False, random_state=seed)
    clf.fit(np.asarray(X, dtype=np.float32), y, sample_weight=w)
    return clf


def predict_proba(clf: Any, X: np.ndarray) -> np.ndarray:
    p = clf.predict_proba(np.asarray(X, dtype=np.float32))
    out = np.zeros((p.shape[0], len(CLASSES)))
    out[:, np.asarray(clf.classes_, dtype=np.int64)] = p
    return out


def rule_probs(rule_af: np.ndarray) -> np.ndarray:
    """The RR rule's AF / not-AF as probabilities (AF -> af_afl 1, else sinus 1)."""
    p = np.zeros((rule_af.size, len(CLASSES)))
    p[np.arange(rule_af.size), np.where(rule_af, CLASSES.index("af_afl"), CLASSES.index("sinus"))] = 1.0
    return p


def _logic(cfg: "Config", hop_s: float = 1.25):  # type: ignore[no-untyped-def]
    from pedstream.monitor.rhythm_alarms import RhythmAlarmLogic

    return RhythmAlarmLogic.from_section(cfg.rhythm_context, classes=CLASSES, hop_s=hop_s)


def rr_rule_calls(rr_seq: np.ndarray) -> np.ndarray:
    """``(n,)`` bool: the RR rule on each row's context RR intervals (``rr_seq``, the last 64 of the last 30 s,
    zero-padded in front): what the engine's rule sees in a 30 s context (the alarm logic's ``rr_af``)."""
    from pedstream.dsp.rr_rule import RRIrregularityRule

    rule = RRIrregularityRule()
    out = np.zeros(len(rr_seq), dtype=bool)
    for k, rr in enumerate(np.asarray(rr_seq, dtype=np.float64)):
        rr = rr[rr > 0]
        out[k] = bool(rr.size) and rule.is_af(np.r_[0.0, np.cumsum(rr)])
    return out


def alarm_inputs(table: dict[str, np.ndarray], rows: np.ndarray, cfg: "Config") -> dict[str, np.ndarray]:
    """The alarm logic's per-call inputs beyond the probabilities, for ``rows`` of ``table``: ``vt_run_rate_bpm``
    (the beat-run column), ``amp_mv`` (``amp_range``) and, with ``[rhythm_context] af_rr_confirm``, ``rr_af``
    (:func:`rr_rule_calls`; cached in ``table["rr_af"]``)."""
    from pedstream.dsp.rhythm_features import BEAT_RUN_FEATURES, V1_FEATURES

    out = {"amp_mv": table["X"][rows, V1_FEATURES.index("amp_range")]}
    if "runs" in table:
        out["vt_run_rate_bpm"] = table["runs"][rows, BEAT_RUN_FEATURES.index("vt_run_rate_bpm")]
    if cfg.rhythm_context.af_rr_confirm and "rr_seq" in table:
        if "rr_af" not in table:
            table["rr_af"] = rr_rule_calls(table["rr_seq"])
        out["rr_af"] = table["rr_af"][rows]
    return out


def run_columns(table: dict[str, np.ndarray], rows: np.ndarray, cfg: "Config") -> np.ndarray:
    """``(len(rows), 3)``: the VT fast path's inputs (run length at ``[rhythm_context] vt_run_corr``, age of the
    run's last beat, its length) of ``table["runs"]`` (the :data:`~pedstream.dsp.rhythm_features.BEAT_RUN_FEATURES`
    columns)."""
    from pedstream.dsp.rhythm_features import BEAT_RUN_FEATURES

    col = BEAT_RUN_FEATURES.index("vt_run_70" if cfg.rhythm_context.vt_run_corr >= 0.7 else "vt_run_50")
    r = table["runs"][rows]
    return np.stack([r[:, col], r[:, BEAT_RUN_FEATURES.index("vt_run_end_s")], r[:, BEAT_RUN_FEATURES.index("vt_run_len_s")]],
                    axis=1)


def record_calls(t: np.ndarray, probs: np.ndarray, since_beat: np.ndarray, readable: np.ndarray, cfg: "Config",
                 *, hop_s: float, labels: Sequence[str] = ALARM_CLASSES + ("artefact",),
                 runs: np.ndarray | None = None, extra: dict[str, np.ndarray] | None = None) -> list[Any]:
    """Alarm episodes (:class:`pedstream.score.episodes.AlarmEpisode`) of one record's calls. ``runs``:
    ``(n, 3)`` the VT fast path's run length, the age of its last beat and its length per call (the beat-run
    columns ``vt_run_70``/``vt_run_50`` by ``[rhythm_context] vt_run_corr``, ``vt_run_end_s``, ``vt_run_len_s``);
    ``extra``: more per-call inputs of the logic's ``step`` (:func:`alarm_inputs`)."""
    from pedstream.score.episodes import AlarmEpisode

    logic = _logic(cfg, hop_s)
    open_: dict[str, tuple[float, float]] = {}
    out = []
    for i in range(t.size):
        kw = {} if runs is None else {"vt_run": float(runs[i, 0]), "vt_run_end_s": float(runs[i, 1]),
                                      "vt_run_len_s": float(runs[i, 2])}
        for k, v in (extra or {}).items():
            kw[k] = bool(v[i]) if v.dtype == bool else float(v[i])
        for kind, label, _prio, back in logic.step(probs[i], since_beat_s=float(since_beat[i]), readable=bool(readable[i]),
                                                   **kw):
            if label not in labels:
                continue
            if kind == "alarm_on":
                open_[label] = (max(0.0, t[i] - back * hop_s), float(t[i]))
            elif label in open_:
                s, raised = open_.pop(label)
                out.append(AlarmEpisode(label, s, raised, float(t[i])))
    end = float(t[-1]) if t.size else 0.0
    out.extend(AlarmEpisode(lab, s, r, max(r, end)) for lab, (s, r) in open_.items())
    return sorted(out, key=lambda a: (a.start, a.label))


def score_records(table: dict[str, np.ndarray], probs: np.ndarray, rows: np.ndarray, spans: dict[str, list],
                  cfg: "Config", *, hop_s: float, since_col: int, flat_col: int,
                  classes: Sequence[str] = ALARM_CLASSES) -> dict[str, Any]:
    """Episode scores summed over the records of ``rows`` (rows of ``table``; ``probs`` aligned with
    ``rows``). ``spans[record]``: ``[(start_s, end_s, label | None)]``. The VT fast path reads ``table["runs"]``
    (:func:`pedstream.train.rhythm_tables.merge`) when the table has it."""
    from pedstream.score.episodes import RecordScore, Span, score_record, summarize

    total: RecordScore | None = None
    per: dict[str, Any] = {}
    recs = table["record"][rows]
    for r in dict.fromkeys(recs.tolist()):
        m = recs == r
        i = rows[m]
        t = table["t"][i]
        X = table["X"][i]
        readable = X[:, flat_col] < 0.95
        runs = run_columns(table, i, cfg) if "runs" in table else None
        eps = record_calls(t, probs[m], X[:, since_col], readable, cfg, hop_s=hop_s, runs=runs,
                           extra=alarm_inputs(table, i, cfg))
        ref = [Span(s0, s1, lab if lab in classes or lab is None else "_" + lab) for s0, s1, lab in spans[r]]
        sc = score_record(ref, [e for e in eps if e.label in classes], list(classes), start_s=float(t[0]),
                          end_s=float(t[-1]))
        per[r] = {"false_alarms": sc.false_alarms, "alarms": [(e.label, round(e.start, 1), round(e.raised, 1),
                                                               round(e.end, 1)) for e in eps][:50]}
        total = sc if total is None else total + sc
    out = summarize(total) if total is not None else {}
    out["records"] = per
    return out
