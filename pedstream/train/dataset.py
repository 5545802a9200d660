"""Window tensors for training and evaluation, built from a folder of WFDB records.

The one preprocessing path (shared with the streaming engine, so there is no train/serve skew):

    open_record -> Record.read (n, 19) mV -> pedstream.dsp.filters.FilterBank (fed in chunks; the bank is
    chunk-size invariant, so this equals ``filter_signal`` on the whole record) -> annotations ->
    LabelGrouping -> make_segments -> cut (19, T) windows -> pedstream.dsp.windowing.normalize_window

Beat mode with ``segments.rr_features``: each window also carries its beat's RR-interval context
(:func:`pedstream.dsp.rr.rr_features` over every annotated beat of the record, the same code the live
engine runs on its detector's beats), stored as ``rr`` (N, K) float32 beside the labels.

Windows that overlap the filter warm-up (``filters.settle_s``) at the start of a record are dropped.
Optionally at most ``train.max_windows_per_class_subject`` windows are kept per (subject, class)
(a seeded random subset) to tame the majority class.

Storage: the normalised windows are stored as **float16** in a ``.npy`` file opened as a memory map
(N x 19 x T x 2 bytes; 30 000 windows at T = 2442 are 2.8 GB on disk, a few MB in RAM). float16 keeps
about 3 significant digits of a z-scored window (|error| < 5e-3 for values within +/-8 SD), well below
the signal noise. They are cast to float32 when batched. The cache is keyed by a SHA-256 over the
record files (.hea/.dat/.atr) and the configuration sections used (signal, filters, the active label
scheme, segments, the subsampling knobs), so repeated runs (``pedstream compare`` plans) reuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pedstream.data.subjects import subject_map
from pedstream.errors import RecordError
from pedstream.train.plan import Plan, plan_record, record_hashes, subsample

if TYPE_CHECKING:  # pragma: no cover
    from pedstream.config import Config

__all__ = [
    "WindowSet",
    "WindowDataset",
    "build_windows",
    "record_hashes",
    "default_cache_dir",
    "CACHE_VERSION",
    "make_loader",
]

#: Bump when the window-building code changes in a way that invalidates old caches.
CACHE_VERSION = 2  # 2: RR features, required leads, beat annotations checked
_CHUNK_S = 60.0  # filter the record in chunks of this many seconds (bounded memory for 2.5 h records)
N_ECG = 12


def default_cache_dir(cfg: "Config") -> Path:
    """``train.cache_dir`` or ``$XDG_CACHE_HOME/pedstream/windows`` (``~/.cache/...``)."""
    if cfg.train.cache_dir:
        return Path(cfg.train.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pedstream" / "windows"


@dataclass
class WindowSet:
    """All windows of one data folder.

    Attributes
    ----------
    x : (N, 19, T) float16 (memory map) — normalised windows, canonical channel order (12 ECG, 7 IEGM)
    mask : (N, 19) bool — channel present (and not flat) in the source record
    labels : (N,) int64 — class index into ``classes``
    subjects : (N,) str — subject id of the window's record
    records : (N,) str — record name
    starts : (N,) int64 — first sample of the window in its record (at ``fs``)
    classes : class names, in index order
    fs : sampling rate (Hz); T = window samples
    hop : hop between windows of one segment run (samples)
    record_info : per record: name, subject, path, sha256 per file, n_samples, n_windows
    key : cache key (hex)
    rr : (N, K) float32 or None — RR-interval features of each window's beat (beat mode, ``rr_features``)
    """

    x: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    records: np.ndarray
    starts: np.ndarray
    classes: list[str]
    fs: float
    window: int
    hop: int
    record_info: list[dict[str, Any]]
    key: str
    cache_path: Path | None = None
    cache_hit: bool = False
    rr: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def ecg(self) -> np.ndarray:
        """(N, 12, T) float16 view."""
        return self.x[:, :N_ECG]

    @property
    def iegm(self) -> np.ndarray:
        """(N, 7, T) float16 view."""
        return self.x[:, N_ECG:]

    def class_counts(self, idx: np.ndarray | None = None) -> np.ndarray:
        """(C,) int64 window count per class (over ``idx`` if given)."""
        lab = self.labels if idx is None else self.labels[idx]
        return np.bincount(lab, minlength=len(self.classes)).astype(np.int64)

    def batch(self, idx: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """Gather windows ``idx`` as float32 arrays: ecg (B,12,T), iegm (B,7,T), mask (B,19), label (B,)
        and, when the set has RR features, rr (B,K)."""
        idx = np.asarray(idx, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        inv = np.empty_like(order)
        inv[order] = np.arange(order.size)
        x = np.asarray(self.x[idx[order]], dtype=np.float32)[inv]  # sorted reads from the memmap
        return {
            "ecg": np.ascontiguousarray(x[:, :N_ECG]),
            "iegm": np.ascontiguousarray(x[:, N_ECG:]),
            "mask": self.mask[idx].astype(np.float32),
            "label": self.labels[idx].astype(np.int64),
            **({"rr": self.rr[idx].astype(np.float32)} if self.rr is not None else {}),
        }


# ------------------------------------------------------------------------------------------ building
def _config_fingerprint(cfg: "Config") -> dict[str, Any]:
    return {
        "version": CACHE_VERSION,
        "signal": cfg.signal.model_dump(mode="json"),
        "filters": cfg.filters.model_dump(mode="json"),
        "labels": {"scheme": cfg.labels.scheme, "active": cfg.labels.active.model_dump(mode="json")},
        "segments": cfg.segments.model_dump(mode="json"),
        "subsample": {"max_per_class_subject": cfg.train.max_windows_per_class_subject, "seed": cfg.train.seed},
    }


def _cut_record(rec: Any, plan: Plan, cfg: "Config", window: int, out: np.ndarray, offset: int) -> np.ndarray:
    """Filter ``rec`` chunk by chunk and write its planned windows into ``out[offset:]``.

    Returns the record's (19,) channel-present mask. ``out`` is (N, 19, T) float16.
    """
    from pedstream.dsp.filters import FilterBank
    from pedstream.dsp.windowing import normalize_window

    present = np.asarray(rec.present, dtype=bool) & ~np.asarray(rec.flat, dtype=bool)  # (19,)
    if plan.starts.size == 0:
        return present
    bank = FilterBank(fs=rec.fs, cfg=cfg.filters)
    chunk = max(int(_CHUNK_S * rec.fs), window)
    last_needed = int(plan.starts[-1]) + window
    buf = np.zeros((0, 19), dtype=np.float32)  # filtered samples [buf_start, buf_start + len(buf))
    buf_start = 0
    pos = 0
    k = 0  # next window of the plan
    while pos < last_needed and k < plan.starts.size:
        stop = min(pos + chunk, int(rec.n_samples))
        sig = rec.read(pos, stop)  # Record.read raises RecordError naming the record and range
        y = bank.process(np.asarray(sig.data, dtype=np.float32))  # (stop-pos, 19) float32
        buf = np.concatenate([buf, y], axis=0) if buf.size else y
        pos = stop
        batch: list[np.ndarray] = []
        while k < plan.starts.size and int(plan.starts[k]) + window <= pos:
            s = int(plan.starts[k]) - buf_start
            batch.append(buf[s:s + window].T)  # (19, T)
            k += 1
        if batch:
            xb = normalize_window(np.stack(batch), present)  # (B, 19, T) float32
            out[offset:offset + len(batch)] = xb.astype(np.float16)
            offset += len(batch)
        drop_to = int(plan.starts[k]) if k < plan.starts.size else pos
        if drop_to > buf_start:
            buf = buf[drop_to - buf_start:]
            buf_start = drop_to
        if stop >= rec.n_samples:
            break
    if k != plan.starts.size:
        raise RecordError(str(plan.path), f"only {k} of {plan.starts.size} windows could be cut (record shorter than its header says?)")
    return present


def _load_cache(path: Path) -> WindowSet:
    meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    arrays = np.load(path / "index.npz", allow_pickle=False)
    x = np.load(path / "x.npy", mmap_mode="r")
    rr = arrays["rr"] if "rr" in arrays.files else None
    return WindowSet(
        x=x, mask=arrays["mask"], labels=arrays["labels"], subjects=arrays["subjects"],
        records=arrays["records"], starts=arrays["starts"], classes=list(meta["classes"]),
        fs=float(meta["fs"]), window=int(meta["window"]), hop=int(meta["hop"]),
        record_info=list(meta["records"]), key=str(meta["key"]), cache_path=path, cache_hit=True, rr=rr,
    )


def build_windows(
    folder: str | Path,
    cfg: "Config",
    *,
    cache_dir: str | Path | None = None,
    records: Sequence[str] | None = None,
    progress: bool = False,
) -> WindowSet:
    """Build (or load from the cache) the windows of every record in ``folder``.

    ``records`` restricts to those record names. ``cache_dir`` defaults to :func:`default_cache_dir`.
    Raises :class:`~pedstream.errors.RecordError` for unreadable records or a folder without records.
    """
    from pedstream.data.labels import LabelGrouping
    from pedstream.data.loader import list_records
    from pedstream.dsp.windowing import window_samples

    folder = Path(folder)
    if not folder.is_dir():
        raise RecordError(str(folder), "is not a folder of WFDB records")
    paths = [Path(p) for p in list_records(folder)]
    if records is not None:
        wanted = set(records)
        paths = [p for p in paths if p.name in wanted]
    paths = [p for p in paths if p.name not in set(cfg.train.exclude_records)]
    if not paths:
        raise RecordError(str(folder), "contains no WFDB records (.hea files)")
    grouping = LabelGrouping(cfg.labels.active)
    window = int(window_samples(cfg.segments.window_s, cfg.signal.fs))
    hop = int(window_samples(cfg.segments.hop_s, cfg.signal.fs))
    subj_map = subject_map(folder)

    plans: list[Plan] = []
    recs: list[Any] = []
    for p in paths:
        plan, rec = plan_record(p, cfg, grouping, subj_map.get(p.name, p.name), window)
        plans.append(plan)
        recs.append(rec)

    fp = _config_fingerprint(cfg)
    fp["records"] = [{"name": pl.name, "subject": pl.subject, "sha256": pl.hashes} for pl in plans]
    key = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:24]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir(cfg)
    target = root / key
    if (target / "meta.json").is_file():
        return _load_cache(target)

    subsample(plans, cfg.train.max_windows_per_class_subject, cfg.train.seed)
    n = int(sum(pl.starts.size for pl in plans))
    if n == 0:
        raise RecordError(str(folder), "no labelled windows after segmentation (check labels.scheme and segments)")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        x = np.lib.format.open_memmap(tmp / "x.npy", mode="w+", dtype=np.float16, shape=(n, 19, window))
        mask = np.zeros((n, 19), dtype=bool)
        offset = 0
        info: list[dict[str, Any]] = []
        it: Iterator[tuple[Plan, Any]] = iter(zip(plans, recs))
        prog = None
        if progress:
            from rich.progress import Progress

            prog = Progress(transient=True)
            prog.start()
            task = prog.add_task("windows", total=len(plans))
        for plan, rec in it:
            present = _cut_record(rec, plan, cfg, window, x, offset)
            mask[offset:offset + plan.starts.size] = present
            offset += plan.starts.size
            info.append({"name": plan.name, "subject": plan.subject, "path": str(plan.path.resolve()),
                         "sha256": plan.hashes, "n_samples": plan.n_samples, "n_windows": int(plan.starts.size)})
            if prog is not None:
                prog.advance(task)
        if prog is not None:
            prog.stop()
        x.flush()
        del x
        labels = np.concatenate([pl.labels for pl in plans])
        np.savez(
            tmp / "index.npz",
            mask=mask,
            labels=labels,
            subjects=np.asarray([pl.subject for pl in plans for _ in range(pl.starts.size)], dtype=str),
            records=np.asarray([pl.name for pl in plans for _ in range(pl.starts.size)], dtype=str),
            starts=np.concatenate([pl.starts for pl in plans]),
            **({"rr": np.concatenate([pl.rr for pl in plans]).astype(np.float32)}
               if cfg.segments.rr_features else {}),
        )
        meta = {"key": key, "classes": list(grouping.classes), "fs": float(cfg.signal.fs), "window": window,
                "hop": hop, "records": info, "storage": "float16", "fingerprint": fp}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same cache first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ws = _load_cache(target)
    ws.cache_hit = False
    return ws


# ------------------------------------------------------------------------------------- torch dataset
class WindowDataset(Dataset):
    """A torch ``Dataset`` over a subset ``indices`` of a :class:`WindowSet`.

    ``ds[i]`` -> dict of float32 tensors ``ecg (12,T)``, ``iegm (7,T)``, ``mask (19,)`` and int64 ``label``.
    ``ds.__getitems__(list)`` gathers a whole batch in one sorted memmap read (used by the DataLoader);
    use :func:`make_loader` for a deterministic loader.
    """

    def __init__(self, windows: WindowSet, indices: np.ndarray | Sequence[int]) -> None:
        self.windows = windows
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.indices.size)

    @property
    def labels(self) -> np.ndarray:
        return self.windows.labels[self.indices]

    def __getitem__(self, i: int) -> dict[str, Any]:
        b = self.__getitems__([i])
        return {k: v[0] for k, v in b.items()}

    def __getitems__(self, items: Sequence[int]) -> dict[str, Any]:
        arr = self.windows.batch(self.indices[np.asarray(items, dtype=np.int64)])
        return {k: torch.from_numpy(v) for k, v in arr.items()}


def _identity(batch: Any) -> Any:
    return batch


def make_loader(
    dataset: WindowDataset,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int,
    balanced: bool = False,
    num_samples: int | None = None,
) -> Any:
    """Deterministic DataLoader (``num_workers=0``, seeded generator) yielding batch dicts.

    ``balanced``: draw with replacement, each class with equal probability (``num_samples`` draws per
    epoch, default ``len(dataset)``). ``num_samples`` without ``balanced`` caps an epoch.
    """
    from torch.utils.data import DataLoader, RandomSampler, SequentialSampler, WeightedRandomSampler

    g = torch.Generator()
    g.manual_seed(int(seed))
    n = len(dataset) if num_samples is None else int(num_samples)
    if balanced:
        lab = dataset.labels
        counts = np.bincount(lab)
        w = 1.0 / counts[lab].astype(np.float64)
        sampler: Any = WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), num_samples=n,
                                             replacement=True, generator=g)
    elif shuffle:
        sampler = RandomSampler(dataset, replacement=False, num_samples=min(n, len(dataset)) if num_samples else None,
                                generator=g)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0, collate_fn=_identity,
                      drop_last=False)

