"""Few-shot adaptation of one stream's beat classifier from a clinician's beat labels: the labels' bookkeeping.

A clinician confirms or corrects a few beats of *this* patient; each labelled beat keeps its feature
vector, and the stream's later beat calls are adapted by :class:`~pedstream.monitor.adapt_methods.PatientAdapter`
(the methods and their settings: :mod:`pedstream.monitor.adapt_methods`; chosen by record-wise CV,
bench/beat_adapt.py, docs/beats.md).

:class:`BeatMemory` is the stream's recent classified beats (time -> features), where a label's time is
looked up (a label at a time with no beat within ``tolerance_s`` is refused); :class:`BeatLabels` every
stream's labels of an engine, persisted per patient. Nothing here is shared between streams: labels
never reach another patient.
"""

from __future__ import annotations

import json
import os
import re
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from pedstream.errors import ModelError, StreamError
from pedstream.monitor.adapt_methods import (FEATURE_SUBSETS, PREMATURE_MIN_N, AdaptSettings, PatientAdapter,
                                             fit_logistic)

__all__ = ["FEATURE_SUBSETS", "PREMATURE_MIN_N", "AdaptSettings", "BeatLabels", "BeatMemory", "LabelError",
           "PatientAdapter", "beat_labels_for", "default_labels_dir", "fit_logistic", "queue_labels",
           "read_label_file"]

_SAFE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class BeatMemory:
    """A stream's recent classified beats: ``(t_signal, features)``, the newest ``capacity``."""

    def __init__(self, *, capacity: int = 20000, tolerance_s: float = 0.15) -> None:
        self.tolerance_s = float(tolerance_s)
        self._t: deque[float] = deque(maxlen=capacity)
        self._f: deque[np.ndarray] = deque(maxlen=capacity)

    def add(self, t: float, features: np.ndarray) -> None:
        self._t.append(float(t))
        self._f.append(np.asarray(features, dtype=np.float32))

    def find(self, t: float) -> np.ndarray | None:
        """The features of the beat nearest ``t`` within ``tolerance_s``; ``None`` when there is none."""
        if not self._t:
            return None
        ts = np.fromiter(self._t, dtype=np.float64, count=len(self._t))
        i = int(np.argmin(np.abs(ts - t)))
        return self._f[i] if abs(ts[i] - t) <= self.tolerance_s else None


class LabelError(StreamError):
    """A clinician label that cannot be applied (unknown stream or class, no beat at that time)."""


class BeatLabels:
    """Few-shot adaptation of every stream of an engine: one :class:`PatientAdapter` per stream.

    ``observe(sid, t, features)`` records each classified beat; ``adjust(sid, features, probs)`` is
    the adapted call; ``label(sid, [(t_signal, "S"), ...], who=...)`` checks every label first (an
    unknown stream or class, or a time with no beat within the tolerance, is one :class:`LabelError`
    and changes nothing), then adds them. Each stream's labels are a JSON file ``<folder>/<patient>.json``
    (``patient`` defaults to the stream id): every label with ``id``, ``t_signal``, ``label``, ``who``,
    ``when`` (UTC), its feature vector, and ``undone`` (``undo`` marks labels undone: reversible, nothing
    is erased). A stream that starts with the same patient id reloads its labels.

    Labels queued before the beats exist (``pedstream label STREAM --beats FILE``, :func:`queue_labels`)
    are entries with ``pending: true`` and no feature vector: read when the stream starts, each is
    applied to the beat classified within the tolerance of its time (``observe`` returns it, the
    engine writes a ``beat_label`` event), or marked ``unmatched`` once the stream's beats have passed
    its time without one.
    """

    def __init__(self, *, classes: tuple[str, ...], scale: np.ndarray, settings: AdaptSettings = AdaptSettings(),
                 columns: np.ndarray | None = None, folder: str | Path | None = None,
                 tolerance_s: float = 0.15) -> None:
        self.classes, self.scale, self.settings, self.columns = tuple(classes), scale, settings, columns
        self.folder = None if folder is None else Path(folder)
        self.tolerance_s = float(tolerance_s)
        self._streams: dict[str, tuple[str, BeatMemory, PatientAdapter, list[dict]]] = {}
        self._pending: dict[str, list[dict]] = {}  # per stream: queued labels still waiting for their beat

    def add_stream(self, sid: str, *, patient: str | None = None) -> None:
        patient = patient or sid
        if not _SAFE.fullmatch(patient):
            raise LabelError(sid, f"patient id {patient!r}: use letters, digits, '.', '_' or '-' (64 at most)")
        entries = self._load(patient)
        ad = PatientAdapter(classes=self.classes, scale=self.scale, settings=self.settings, columns=self.columns)
        self._streams[sid] = (patient, BeatMemory(tolerance_s=self.tolerance_s), ad, entries)
        self._pending[sid] = sorted((e for e in entries if e.get("pending")), key=lambda e: e["t_signal"])
        self._refit(sid)

    def remove_stream(self, sid: str) -> None:
        self._streams.pop(sid, None)
        self._pending.pop(sid, None)

    def observe(self, sid: str, t: float, features: np.ndarray) -> list[dict]:
        """Record a classified beat; returns the queued labels this beat resolved (applied to it, or
        ``unmatched``: their time has passed without a beat), usually none."""
        s = self._streams.get(sid)
        if s is None:
            return []
        s[1].add(t, features)
        pend = self._pending.get(sid)
        if not pend or pend[0]["t_signal"] > t + self.tolerance_s:
            return []
        done = []
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        while pend and pend[0]["t_signal"] <= t + self.tolerance_s:
            e = pend.pop(0)
            if abs(e["t_signal"] - t) <= self.tolerance_s:
                e.update(pending=False, features=[float(v) for v in features], applied_when=now)
            elif e["t_signal"] < t - self.tolerance_s:
                e.update(pending=False, unmatched=True, applied_when=now)
            else:  # pragma: no cover - excluded by the loop condition
                pend.insert(0, e)
                break
            done.append(e)
        if done:
            self._save(sid)
            self._refit(sid)
        return done

    def adjust(self, sid: str, features: np.ndarray, probs: np.ndarray) -> np.ndarray:
        s = self._streams.get(sid)
        if s is None or not len(s[2]):
            return probs
        return s[2].adapt(probs[None], features[None])[0]

    def entries(self, sid: str) -> list[dict]:
        """Every label entry of stream ``sid``'s patient (applied, pending, undone), oldest first."""
        s = self._streams.get(sid)
        return [] if s is None else list(s[3])

    def n_labels(self, sid: str) -> int:
        s = self._streams.get(sid)
        return 0 if s is None else len(s[2])

    def label(self, sid: str, labels: list[tuple[float, str]], *, who: str) -> list[dict]:
        """Apply ``labels`` to stream ``sid`` (all or none); returns the new entries."""
        s = self._streams.get(sid)
        if s is None:
            raise LabelError(sid, f"no such stream (streams: {sorted(self._streams) or 'none'})")
        new = []
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for t, cls in labels:
            if cls not in self.classes:
                raise LabelError(sid, f"label {cls!r} at t={t}: not a class of the beat model {list(self.classes)}")
            try:
                tf = float(t)
            except (TypeError, ValueError) as exc:
                raise LabelError(sid, f"label time {t!r} is not a number of seconds") from exc
            f = s[1].find(tf) if np.isfinite(tf) else None
            if f is None:
                raise LabelError(sid, f"no classified beat within {self.tolerance_s:g} s of t={tf:g}")
            new.append({"id": len(s[3]) + len(new) + 1, "t_signal": tf, "label": cls, "who": str(who), "when": now,
                        "undone": False, "features": [float(v) for v in f]})
        s[3].extend(new)
        self._save(sid)
        self._refit(sid)
        return new

    def undo(self, sid: str, ids: list[int] | None = None, *, who: str) -> int:
        """Mark labels ``ids`` (default: the newest active one) undone; returns how many."""
        s = self._streams.get(sid)
        if s is None:
            raise LabelError(sid, f"no such stream (streams: {sorted(self._streams) or 'none'})")
        active = [e for e in s[3] if not e["undone"]]
        targets = active[-1:] if ids is None else [e for e in active if e["id"] in set(ids)]
        if ids is not None and len(targets) != len(set(ids)):
            raise LabelError(sid, f"labels {sorted(set(ids) - {e['id'] for e in targets})} are not active labels")
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for e in targets:
            e.update(undone=True, undone_by=str(who), undone_when=now)
        self._save(sid)
        self._refit(sid)
        return len(targets)

    def _refit(self, sid: str) -> None:
        _, _, ad, entries = self._streams[sid]
        active = [e for e in entries if not e["undone"] and e["label"] in self.classes and e.get("features")]
        ad.set_labels(np.asarray([e["features"] for e in active], dtype=np.float64),
                      [self.classes.index(e["label"]) for e in active])

    def _path(self, patient: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{patient}.json"

    def _load(self, patient: str) -> list[dict]:
        p = self._path(patient)
        if p is None or not p.is_file():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
            return [dict(e) for e in doc["labels"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabelError(patient, f"label file {p} unreadable: {exc}") from exc

    def _save(self, sid: str) -> None:
        patient, _, _, entries = self._streams[sid]
        p = self._path(patient)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"patient": patient, "classes": list(self.classes), "labels": entries}, indent=1),
                       encoding="utf-8")
        os.replace(tmp, p)


def default_labels_dir() -> Path:
    """``$PEDSTREAM_LABELS_DIR``, else ``$XDG_DATA_HOME/pedstream/beat_labels`` (``~/.local/share/...``)."""
    env = os.environ.get("PEDSTREAM_LABELS_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pedstream" / "beat_labels"


def beat_labels_for(session: object, *, folder: str | Path | None = None) -> BeatLabels | None:
    """The engine's :class:`BeatLabels` for a feature beat model (``None`` for other beat models): the
    model's classes, every feature of the beat divided by the model's feature scale, and the adaptation
    settings its metadata carries."""
    meta = dict(getattr(session, "metadata", {}) or {})
    seg = meta.get("segments") or {}
    if not seg.get("features") or not meta.get("feature_scale"):
        return None
    cols = np.arange(len(meta["feature_scale"]), dtype=np.int64)  # every feature of the beat (as bench/beat_adapt.py)
    try:
        settings = AdaptSettings(**{k: v for k, v in (meta.get("adapt_settings") or {}).items()
                                    if k in AdaptSettings.__dataclass_fields__})
    except (TypeError, ValueError) as exc:
        raise ModelError(str(getattr(session, "path", "beat model")), str(exc)) from exc
    return BeatLabels(classes=tuple(meta["class_names"]), scale=np.asarray(meta["feature_scale"], dtype=np.float64)[cols],
                      settings=settings, columns=cols, folder=default_labels_dir() if folder is None else folder)


def read_label_file(path: str | Path) -> list[tuple[float, str]]:
    """Beat labels of a text file: one ``t_signal,class`` (or whitespace-separated) per line, ``#``
    comments and a ``t_signal,label`` header allowed. A line that is not a time and a class is an error
    naming the line."""
    out = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [p for p in re.split(r"[,;\s]+", line) if p]
        if i == 1 and parts and parts[0].lower() in ("t", "t_signal", "time", "beat_t"):
            continue
        try:
            t = float(parts[0])
            if len(parts) != 2 or not np.isfinite(t):
                raise ValueError
        except (ValueError, IndexError) as exc:
            raise LabelError(str(path), f"line {i}: {line!r} is not 't_signal,class'") from exc
        out.append((t, parts[1]))
    return out


def queue_labels(folder: str | Path, patient: str, labels: list[tuple[float, str]], *, classes: tuple[str, ...],
                 who: str) -> list[dict]:
    """Queue ``labels`` for the stream of ``patient`` (all or none): appended to ``<folder>/<patient>.json``
    as pending entries, applied to the stream's beats at those times when it runs (see :class:`BeatLabels`).
    An unknown class or a time that is not a finite number is one :class:`LabelError` and writes nothing."""
    if not _SAFE.fullmatch(patient):
        raise LabelError(patient, f"patient id {patient!r}: use letters, digits, '.', '_' or '-' (64 at most)")
    if not labels:
        raise LabelError(patient, "no labels given")
    for t, cls in labels:
        if cls not in classes:
            raise LabelError(patient, f"label {cls!r} at t={t}: not a class of the beat model {list(classes)}")
        if not np.isfinite(float(t)):
            raise LabelError(patient, f"label time {t!r} is not a finite number of seconds")
    book = BeatLabels(classes=classes, scale=np.ones(1), folder=folder)
    entries = book._load(patient)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new = [{"id": len(entries) + i + 1, "t_signal": float(t), "label": cls, "who": str(who), "when": now,
            "undone": False, "pending": True, "features": None} for i, (t, cls) in enumerate(labels)]
    book._streams[patient] = (patient, BeatMemory(), PatientAdapter(classes=classes, scale=np.ones(1)), entries + new)
    book._save(patient)
    return new


def label_command(*, stream: str, beats_file: Path, who: str | None = None, labels_dir: Path | None = None,
                  model: Path | None = None) -> list[dict]:
    """``pedstream label STREAM --beats FILE``: queue the labels of FILE (:func:`read_label_file`) for
    the stream (patient) ``stream`` in the labels folder the monitor reads (:func:`default_labels_dir`);
    a monitor that starts the stream applies them to its beats at those times (:class:`BeatLabels`).
    The classes are those of ``model`` (a feature beat model; default the shipped ``models/mitdb-beats``
    classes N, S, V, F)."""
    import getpass

    classes: tuple[str, ...] = ("N", "S", "V", "F")
    if model is not None:
        from pedstream.model.runtime import read_metadata

        classes = tuple(str(c) for c in read_metadata(model).get("class_names", classes))
    who = who or getpass.getuser()
    folder = Path(labels_dir) if labels_dir is not None else default_labels_dir()
    new = queue_labels(folder, stream, read_label_file(beats_file), classes=classes, who=who)
    counts = {c: sum(1 for e in new if e["label"] == c) for c in classes}
    print(f"queued {len(new)} beat labels for {stream} ({', '.join(f'{c} {n}' for c, n in counts.items() if n)}) "
          f"in {folder / (stream + '.json')}: applied when the monitor classifies beats at those times")
    return new
