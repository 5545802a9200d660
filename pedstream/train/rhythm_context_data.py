"""Feature tables of the rhythm-context layer from real sources, cached outside the repository.

Each record goes through what the engine does to a stream, at the record's own rate: the serving
filters (:class:`~pedstream.dsp.filters.FilterBank`) on the first lead, the causal QRS detector fed
one hop at a time (:class:`~pedstream.dsp.qrs.OnlineQRSDetector`, no flush: only beats reported by
then), and at the end of every hop :func:`pedstream.dsp.rhythm_features.context_features` over the
last ``context_s`` of beats and the last ``signal_s`` of the decimated filtered lead. (The engine
detects at the model rate, 977 Hz, after resampling; here at the record's rate: the detector's
constants are in seconds.) Several context lengths are computed in one pass (CV picks one).

- :func:`build_records` (MIT-BIH, vfdb): a row per hop, label = the rhythm annotated at the hop's
  end (``[rhythm_context.labels.<source>]``; -1 excluded), ``age_s`` = time since that rhythm began;
- :func:`build_cinc` (CinC 2017): one row per recording, at its last complete hop.

Tables are ``dict`` of numpy arrays: ``X_<ctx>`` (n, K) float32, ``y`` (n,) int8, ``t`` (n,) s,
``age_s``, ``record`` (n,) str, ``rule_af`` (n,) bool (the RR rule), ``rr_seq`` (n, 64) float32 (the last
64 RR intervals of the last 30 s, zero-padded in front: the sequence models' input), ``source``. Cached as ``.npz`` under ``<cache>/rhythm_context``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from pedstream.dsp.rhythm_features import ALL_FEATURES, context_features_multi, decimation_step
from pedstream.dsp.rr_rule import RRIrregularityRule
from pedstream.errors import RecordError

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = ["CLASSES", "FEATURE_VERSION", "RULE", "build_cinc", "build_records", "label_index", "main", "stream_features"]

CLASSES: tuple[str, ...] = ("sinus", "af_afl", "svt", "vt", "vf", "asystole", "other", "artefact")
FEATURE_VERSION = 3  # 3: + beat-run features (the fast VT path); 2: + multi-scale RR and beat morphology
RULE = -1.0  # key of the RR rule's AF decision per row in stream_features' table
RRSEQ = -2.0  # key of the RR sequence per row (the last SEQ_LEN intervals of the last SEQ_CONTEXT_S, s)
SEQ_LEN = 64
SEQ_CONTEXT_S = 30.0


def label_index(name: str | None) -> int:
    return CLASSES.index(name) if name in CLASSES else -1


def stream_features(x: np.ndarray, fs: float, cfg: "Config", *, hop_s: float, contexts: Sequence[float],
                    signal_s: float, only_last: bool = False) -> tuple[np.ndarray, dict[float, np.ndarray], np.ndarray]:
    """``(t (m,) s, {ctx: (m, K) float32, RULE: (m,) bool}, beat times s)`` of one lead ``x`` (mV) at
    ``fs``: a row at the end of every hop after the filters settled (``only_last``: just the last one);
    ``RULE``: the RR-irregularity rule's AF decision on the beats reported by then."""
    from pedstream.dsp.filters import FilterBank
    from pedstream.dsp.qrs import OnlineQRSDetector

    y = FilterBank(fs=fs, cfg=cfg.filters, n_ecg=1, n_iegm=0, name="rhythm context").process(
        np.asarray(x, dtype=np.float64)[:, None])[:, 0].astype(np.float64)
    det = OnlineQRSDetector(fs=fs)
    hop = max(1, int(round(hop_s * fs)))
    step = decimation_step(fs)
    fsd = fs / step
    nsig = int(round(signal_s * fs))
    settle = int(round(cfg.filters.settle_s * fs))
    beats: list[int] = []
    ends = list(range(hop, y.size + 1, hop))
    last = ends[-1] if ends else 0
    ts: list[float] = []
    rows: dict[float, list[np.ndarray]] = {c: [] for c in contexts}
    rule = RRIrregularityRule()
    rule_af: list[bool] = []
    seqs: list[np.ndarray] = []
    prev = 0
    for end in ends:
        beats.extend(det.process(y[prev:end]))
        prev = end
        if end < settle or (only_last and end != last):
            continue
        a = max(0, end - nsig)
        lead = y[a:end:step]
        bt = np.asarray(beats, dtype=np.float64) / fs
        t = end / fs
        for c, row in context_features_multi(bt, t, tuple(contexts), lead, fsd, lead_t0=a / fs).items():
            rows[c].append(row)
        ts.append(t)
        rule_af.append(rule.is_af(bt))
        rr = np.diff(bt[bt >= t - SEQ_CONTEXT_S])[-SEQ_LEN:]
        seq = np.zeros(SEQ_LEN, np.float32)
        if rr.size:
            seq[-rr.size:] = rr
        seqs.append(seq)
    k = len(ALL_FEATURES)
    feats = {c: (np.stack(r) if r else np.zeros((0, k), np.float32)) for c, r in rows.items()}
    feats[RULE] = np.asarray(rule_af, dtype=bool)
    feats[RRSEQ] = np.stack(seqs) if seqs else np.zeros((0, SEQ_LEN), np.float32)
    return np.asarray(ts), feats, np.asarray(beats, dtype=np.float64) / fs


def _cache_path(cache: Path, kind: str, spec: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps({"v": FEATURE_VERSION, **spec}, sort_keys=True).encode()).hexdigest()[:20]
    return cache / "rhythm_context" / f"{kind}-{key}.npz"


def _save(path: Path, table: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
    os.close(fd)
    np.savez_compressed(tmp, **table)
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _spec(cfg: "Config", hop_s: float, contexts: Sequence[float], signal_s: float) -> dict[str, Any]:
    return {"filters": cfg.filters.model_dump(mode="json"), "hop_s": hop_s, "contexts": list(contexts),
            "signal_s": signal_s, "features": list(ALL_FEATURES), "seq": [SEQ_LEN, SEQ_CONTEXT_S]}


def _stack(parts: list[dict[str, Any]], contexts: Sequence[float]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {f"X_{c:g}": np.concatenate([p["X"][c] for p in parts]) for c in contexts}
    out["rule_af"] = np.concatenate([p["X"][RULE] for p in parts])
    out["rr_seq"] = np.concatenate([p["X"][RRSEQ] for p in parts])
    for f in ("y", "t", "age_s", "record"):
        out[f] = np.concatenate([p[f] for p in parts])
    return out


def build_records(folder: str | os.PathLike[str], source: str, cfg: "Config", *, cache: str | os.PathLike[str],
                  hop_s: float, contexts: Sequence[float], signal_s: float, records: Sequence[str] | None = None,
                  log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """Rows of every hop of the rhythm-annotated records in ``folder`` (see the module docstring)."""
    from pedstream.data.loader import list_records
    from pedstream.data.rhythm_sources import read_lead, rhythm_spans

    table = cfg.rhythm_context.labels.get(source)
    if table is None:
        raise RecordError(str(folder), f"no [rhythm_context.labels.{source}] label map in the configuration")
    folder = Path(folder)
    paths = [Path(p) for p in list_records(folder)] if folder.is_dir() else []
    if records is not None:
        paths = [p for p in paths if p.name in set(records)]
    if not paths:
        raise RecordError(str(folder), "contains no WFDB records (.hea files)")
    spec = {**_spec(cfg, hop_s, contexts, signal_s), "source": source, "labels": table,
            "records": [(p.name, (p.with_suffix(".dat")).stat().st_size if p.with_suffix(".dat").is_file() else 0)
                        for p in paths]}
    path = _cache_path(Path(cache), source, spec)
    if path.is_file():
        return _load(path)
    parts = []
    for p in paths:
        t0 = time.time()
        x, fs = read_lead(p)
        spans = rhythm_spans(p, table, n_samples=x.size)
        t, feats, _ = stream_features(x, fs, cfg, hop_s=hop_s, contexts=contexts, signal_s=signal_s)
        y = np.full(t.size, -1, np.int8)
        age = np.zeros(t.size)
        for s0, s1, lab in spans:
            m = (t > s0) & (t <= s1)
            y[m] = label_index(lab)
            age[m] = t[m] - s0
        parts.append({"X": feats, "y": y, "t": t, "age_s": age, "record": np.full(t.size, f"{source}:{p.name}")})
        log(f"{source} {p.name}: {t.size} rows, {time.time() - t0:.1f} s")
    out = _stack(parts, contexts)
    out["source"] = np.asarray(source)
    _save(path, out)
    return out


def build_cinc(archive: str | os.PathLike[str], cfg: "Config", *, cache: str | os.PathLike[str], hop_s: float,
               contexts: Sequence[float], signal_s: float, limit: int | None = None,
               log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
    """One row per CinC 2017 recording, at its last complete hop."""
    from pedstream.data.cinc2017 import extract_archive, read_recording, read_reference

    table = cfg.rhythm_context.labels.get("cinc2017")
    if table is None:
        raise RecordError(str(archive), "no [rhythm_context.labels.cinc2017] label map in the configuration")
    folder = extract_archive(archive, cache)
    ref = read_reference(folder)
    if limit is not None:
        ref = ref[:limit]
    lab_of = {src: cls for cls, srcs in table.items() for src in srcs}
    spec = {**_spec(cfg, hop_s, contexts, signal_s), "source": "cinc2017", "labels": table,
            "n": len(ref), "archive": folder.parent.name}
    path = _cache_path(Path(cache), "cinc2017", spec)
    if path.is_file():
        return _load(path)
    parts = []
    t0 = time.time()
    for i, (name, lab) in enumerate(ref):
        x, fs = read_recording(folder, name)
        t, feats, _ = stream_features(x, fs, cfg, hop_s=hop_s, contexts=contexts, signal_s=signal_s, only_last=True)
        if t.size == 0:
            continue
        parts.append({"X": feats, "y": np.asarray([label_index(lab_of.get(lab))], np.int8), "t": t,
                      "age_s": t.copy(), "record": np.asarray([f"cinc2017:{name}"])})
        if (i + 1) % 1000 == 0:
            log(f"cinc2017: {i + 1}/{len(ref)} recordings, {time.time() - t0:.0f} s")
    out = _stack(parts, contexts)
    out["source"] = np.asarray("cinc2017")
    _save(path, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pedstream.train.rhythm_context_data (--cinc ARCHIVE | --records DIR --source NAME)``:
    build (or load) a feature table and print its class counts; bad input -> one line, exit 2."""
    import argparse
    import sys

    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.errors import PedstreamError

    ap = argparse.ArgumentParser(description="rhythm-context feature table of a CinC 2017 archive or a record folder")
    ap.add_argument("--cinc", help="training2017.tar.xz (or its extracted folder)")
    ap.add_argument("--records", help="folder of rhythm-annotated WFDB records")
    ap.add_argument("--source", default="vfdb", help="[rhythm_context.labels.<source>] map of --records")
    ap.add_argument("--limit", type=int, default=None, help="CinC: the first N recordings only")
    ap.add_argument("--context-s", type=float, default=30.0)
    ap.add_argument("--cache", default=None)
    a = ap.parse_args(argv)
    if bool(a.cinc) == bool(a.records):
        print("error: give exactly one of --cinc ARCHIVE or --records DIR", file=sys.stderr)
        return 2
    try:
        cfg = load_config()
        kw = dict(cache=a.cache or default_cache(), hop_s=cfg.segments.hop_s, contexts=(a.context_s,),
                  signal_s=cfg.rhythm_context.signal_s, log=lambda m: None)
        tab = (build_cinc(a.cinc, cfg, limit=a.limit, **kw) if a.cinc
               else build_records(a.records, a.source, cfg, **kw))
    except PedstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    counts = {c: int(np.sum(tab["y"] == k)) for k, c in enumerate(CLASSES)}
    print(f"{tab['y'].size} rows; {counts}; excluded {int(np.sum(tab['y'] < 0))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
