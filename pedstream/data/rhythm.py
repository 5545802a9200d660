"""Rhythm episodes from a record's rhythm annotations, mapped onto label classes by configuration.

WFDB rhythm annotations are ``+`` annotations whose aux string names the rhythm that starts there
(``"(N"``, ``"(AFIB"``, ``"(VT"``, ``"(P"``...; MIT-BIH and the Leipzig files use the same
convention). A rhythm lasts until the next ``+`` annotation, the last one until the end of the
record. A map (``[labels.rhythm.<name>]`` in ``config.toml``, :class:`~pedstream.config.RhythmMap`)
sends each aux string to a class of a label scheme; an aux it lists under ``ignore`` or does not
list at all has no class (``label`` is ``None``): such an episode is *excluded* (no training
windows, neither a hit nor a false alarm in episode scoring) but kept in the list, so a caller
knows which spans are unknown.

API::

    mapping = RhythmMapping.from_config(cfg, "mitdb")
    episodes = rhythm_episodes("../shared/data/mitdb/203", mapping)   # list[Episode]
    labels = labels_at(episodes, beat_samples)                          # class per sample (None: excluded/none)

The reference rhythm of a record (what ``pedstream score episodes`` scores against, the "truth" of
replayed calls and ``pedstream data inspect`` use): :func:`reference_for` (a record path) or
:func:`reference_episodes` (its annotations), with the map :func:`choose_map` picks.

A record without rhythm annotations raises :class:`NoRhythmAnnotations` (an
:class:`~pedstream.errors.AnnotationError`, exit code 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from pedstream.config import Config, RhythmMap
from pedstream.data.annotations import Annotations, read_annotations
from pedstream.errors import AnnotationError, ConfigError, RecordError

__all__ = [
    "Episode",
    "NoRhythmAnnotations",
    "RhythmMapping",
    "choose_map",
    "episodes_from_annotations",
    "labels_at",
    "merge_episodes",
    "reference_episodes",
    "reference_for",
    "rhythm_auxes",
    "rhythm_episodes",
    "scheme_reference",
]


class NoRhythmAnnotations(AnnotationError):
    """The record's annotation file holds no rhythm (``+``) annotation with an aux string."""

    def __init__(self, record: str, path: str = "") -> None:
        where = f" ({path})" if path else ""
        super().__init__(record, f"no rhythm annotations{where}: no '+' annotation with an aux such as '(N'; "
                                 "episode scoring and rhythm windows need them")


@dataclass(frozen=True, slots=True)
class Episode:
    """Record samples ``[start, end)`` in one rhythm. ``label``: class name, ``None`` = excluded."""

    start: int
    end: int
    label: str | None
    aux: str
    fs: float

    @property
    def start_s(self) -> float:
        return self.start / self.fs

    @property
    def end_s(self) -> float:
        return self.end / self.fs

    @property
    def duration_s(self) -> float:
        return (self.end - self.start) / self.fs


class RhythmMapping:
    """A compiled :class:`~pedstream.config.RhythmMap`: ``label(aux)`` -> class name or ``None``."""

    def __init__(self, rmap: RhythmMap, *, name: str = "rhythm") -> None:
        self.name = name
        self.scheme = rmap.scheme
        self.classes: list[str] = list(rmap.classes)
        self._to: dict[str, str] = {}
        for cname, auxes in rmap.classes.items():
            for aux in auxes:
                self._to[aux.strip()] = cname
        self.ignored: frozenset[str] = frozenset(a.strip() for a in rmap.ignore)

    @classmethod
    def from_config(cls, cfg: Config, name: str) -> "RhythmMapping":
        maps = cfg.labels.rhythm
        if name not in maps:
            raise ConfigError([("labels.rhythm", f"no rhythm map {name!r} (maps: {sorted(maps) or 'none'})")])
        return cls(maps[name], name=name)

    @classmethod
    def from_dict(cls, classes: dict[str, list[str]], *, ignore: Sequence[str] = (), name: str = "rhythm",
                  scheme: str = "leipzig") -> "RhythmMapping":
        return cls(RhythmMap(scheme=scheme, classes=classes, ignore=list(ignore)), name=name)

    def label(self, aux: str) -> str | None:
        """The class of rhythm ``aux`` (``"(AFIB"``), ``None`` when ignored or unknown."""
        return self._to.get(_clean(aux))

    def knows(self, aux: str) -> bool:
        """True when ``aux`` is mapped or deliberately ignored."""
        a = _clean(aux)
        return a in self._to or a in self.ignored

    def __repr__(self) -> str:
        return f"RhythmMapping({self.name!r}, {dict(self._to)})"


def _clean(aux: str) -> str:
    return (aux or "").rstrip("\x00").strip()


def episodes_from_annotations(ann: Annotations, mapping: RhythmMapping, *, n_samples: int,
                              fs: float | None = None, record: str = "") -> list[Episode]:
    """Episodes of one record's annotations (record samples ``[0, n_samples)``), in time order.

    Each ``+`` annotation with a non-empty aux starts an episode that ends at the next one (or at
    ``n_samples``). Raises :class:`NoRhythmAnnotations` when there is none."""
    rate = fs if fs is not None else ann.fs
    name = record or ann.record or "(in memory)"
    if rate is None or not rate > 0:
        raise AnnotationError(name, "sampling rate unknown: cannot place rhythm episodes in time")
    marks = [(int(s), _clean(a)) for s, sym, a in zip(ann.sample, ann.symbol, ann.aux) if sym == "+" and _clean(a)]
    if not marks:
        raise NoRhythmAnnotations(name)
    out: list[Episode] = []
    for i, (s, aux) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else int(n_samples)
        s, end = max(0, s), min(int(n_samples), end)
        if end > s:
            out.append(Episode(start=s, end=end, label=mapping.label(aux), aux=aux, fs=float(rate)))
    return out


def rhythm_episodes(record_path: str | os.PathLike[str], mapping: RhythmMapping, *, extension: str = "atr",
                    n_samples: int | None = None) -> list[Episode]:
    """Episodes of the WFDB record at ``record_path`` (``<path>.hea`` + ``<path>.<extension>``).

    ``n_samples`` (the record's length) is read from the header when not given. Raises
    :class:`~pedstream.errors.AnnotationError` (no annotation file; :class:`NoRhythmAnnotations` when it
    holds no rhythm annotation) or :class:`~pedstream.errors.RecordError` (unreadable header)."""
    p = Path(record_path)
    if p.suffix in (".hea", ".dat", f".{extension}"):
        p = p.with_suffix("")
    ann = read_annotations(p, extension)
    fs = ann.fs
    if n_samples is None or fs is None:
        import wfdb

        try:
            hdr = wfdb.rdheader(str(p))
        except Exception as exc:  # wfdb raises bare exceptions on bad headers
            raise RecordError(p.name, f"cannot read header {p}.hea: {exc}") from exc
        fs = fs if fs is not None else float(hdr.fs)
        if n_samples is None:
            n_samples = int(hdr.sig_len or 0)
    try:
        return episodes_from_annotations(ann, mapping, n_samples=int(n_samples), fs=fs, record=p.name)
    except NoRhythmAnnotations as exc:
        raise NoRhythmAnnotations(p.name, f"{p}.{extension}") from exc


def merge_episodes(episodes: Iterable[Episode]) -> list[Episode]:
    """Adjacent episodes of the same label (and touching spans) joined into one, in time order; the
    first one's aux is kept."""
    out: list[Episode] = []
    for ep in sorted(episodes, key=lambda e: e.start):
        if out and out[-1].label == ep.label and out[-1].end >= ep.start:
            last = out[-1]
            out[-1] = Episode(start=last.start, end=max(last.end, ep.end), label=last.label, aux=last.aux, fs=last.fs)
        else:
            out.append(ep)
    return out


def labels_at(episodes: Sequence[Episode], samples: np.ndarray) -> list[str | None]:
    """The class of the episode holding each record sample in ``samples`` ((n,) int); ``None``
    where the episode is excluded or no episode covers it (before the first rhythm annotation)."""
    samples = np.asarray(samples, dtype=np.int64).reshape(-1)
    if not episodes:
        return [None] * samples.size
    eps = sorted(episodes, key=lambda e: e.start)
    starts = np.asarray([e.start for e in eps], dtype=np.int64)
    idx = np.searchsorted(starts, samples, side="right") - 1
    return [eps[i].label if i >= 0 and s < eps[i].end else None for i, s in zip(idx.tolist(), samples.tolist())]


def rhythm_auxes(ann: Annotations) -> list[str]:
    """The aux strings of the rhythm (``+``) annotations, in file order."""
    return [_clean(a) for s, a in zip(ann.symbol, ann.aux) if s == "+" and _clean(a)]


def choose_map(cfg: Config, auxes: Sequence[str], name: str = "auto") -> RhythmMapping:
    """``[labels.rhythm.<name>]``, or with ``auto`` the map that knows (maps or ignores) most of the
    record's rhythm annotations ``auxes`` (the first in the file on a tie)."""
    if name != "auto":
        return RhythmMapping.from_config(cfg, name)
    maps = [RhythmMapping.from_config(cfg, n) for n in cfg.labels.rhythm]
    if not maps:
        raise ConfigError([("labels.rhythm", "no rhythm map configured ([labels.rhythm.<name>])")])
    return max(maps, key=lambda m: sum(m.knows(a) for a in auxes))  # max keeps the first of equals


def reference_episodes(cfg: Config, ann: Annotations, *, n_samples: int, fs: float | None = None, record: str = "",
                       rhythm_map: str = "auto") -> tuple[str, list[Episode]]:
    """``(map name, episodes)`` of one record's annotations ``ann`` (:func:`choose_map`); raises
    :class:`NoRhythmAnnotations` when it has no rhythm annotation."""
    auxes = rhythm_auxes(ann)
    if not auxes:
        raise NoRhythmAnnotations(record or ann.record or "(in memory)")
    mapping = choose_map(cfg, auxes, rhythm_map)
    return mapping.name, episodes_from_annotations(ann, mapping, n_samples=n_samples, fs=fs, record=record)


def reference_for(cfg: Config, path: str | os.PathLike[str], rhythm_map: str = "auto") -> tuple[str, list[Episode]]:
    """``(map name, episodes)`` of the record at ``path``. Raises ``NoRhythmAnnotations`` (exit 2) when
    the record has no rhythm annotation, ``AnnotationError``/``RecordError`` when it cannot be read."""
    p = Path(path)
    p = p.with_suffix("") if p.suffix == ".hea" else p
    ann = read_annotations(p)
    if not rhythm_auxes(ann):
        raise NoRhythmAnnotations(p.name, f"{p}.atr")
    mapping = choose_map(cfg, rhythm_auxes(ann), rhythm_map)
    return mapping.name, rhythm_episodes(p, mapping)


def scheme_reference(cfg: Config, ann: Annotations, *, n_samples: int, fs: float | None = None,
                     record: str = "") -> tuple[str, list[Episode]] | None:
    """The rhythm reference of a record for the configured label scheme: :func:`reference_episodes`,
    or None when the record has no rhythm annotation or the chosen map names the classes of another
    scheme than ``[labels] scheme`` (the beat labels are the reference then)."""
    try:
        name, episodes = reference_episodes(cfg, ann, n_samples=n_samples, fs=fs, record=record)
    except NoRhythmAnnotations:
        return None
    if cfg.labels.rhythm[name].scheme != cfg.labels.scheme:
        return None
    return name, episodes
