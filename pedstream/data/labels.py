"""Label grouping: (symbol, aux) annotation pairs -> named classes, from configuration.

A scheme (``[labels.schemes.<name>]`` in ``config.toml``) lists, per class, patterns of three kinds:

- ``"SYM"``      the symbol with an empty aux string (``"N"`` is a plain normal beat);
- ``"SYM:AUX"``  the symbol with exactly that aux string (``"N:N-Prex"``, ``"X:AVRT"``);
- ``"SYM:*"``    the symbol with any aux string.

Exact patterns (the first two kinds) win over wildcards, so ``"X:AVRT"`` in one class and
``"X:*"`` in another send AVRT beats to the first and every other X to the second. The ``ignore``
list uses the same patterns (ignored pairs get no label). A pair that matches nothing goes to the
class ``other`` when ``unmatched = "other"``, else it is ignored. Matching is case-sensitive
(``X:avnrt``, the aberrant form, differs from ``X:AVNRT``).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np

from pedstream.config import Config, LabelScheme
from pedstream.errors import ConfigError

__all__ = ["LabelGrouping", "parse_pattern"]

_IGNORE = -1


def parse_pattern(pattern: str, *, where: str = "labels") -> tuple[str, str | None]:
    """``"X:AVRT"`` -> ("X", "AVRT"); ``"N"`` -> ("N", ""); ``"+:*"`` -> ("+", None) (any aux)."""
    sym, sep, aux = pattern.partition(":")
    sym = sym.strip()
    if not sym:
        raise ConfigError([(where, f"pattern {pattern!r} has no symbol (expected SYM, SYM:AUX or SYM:*)")])
    if not sep:
        return sym, ""
    aux = aux.strip()
    return sym, (None if aux == "*" else aux)


class LabelGrouping:
    """Compiled label scheme. ``classes``: class names in index order."""

    def __init__(self, scheme: LabelScheme, *, name: str = "scheme") -> None:
        self.scheme = scheme
        self.name = name
        self.classes: list[str] = list(scheme.classes)
        where = f"labels.schemes.{name}"
        self._exact: dict[tuple[str, str], int] = {}
        self._wild: dict[str, int] = {}
        problems: list[tuple[str, str]] = []
        owner: dict[tuple[str, str | None], str] = {}
        entries = [(k, cname, p) for k, (cname, pats) in enumerate(scheme.classes.items()) for p in pats]
        entries += [(_IGNORE, "ignore", p) for p in scheme.ignore]
        for idx, cname, pat in entries:
            key_path = f"{where}.ignore" if idx == _IGNORE else f"{where}.classes.{cname}"
            try:
                sym, aux = parse_pattern(pat, where=key_path)
            except ConfigError as exc:
                problems.extend(exc.problems)
                continue
            if (sym, aux) in owner and owner[(sym, aux)] != cname:
                problems.append((key_path, f"pattern {pat!r} is also listed under {owner[(sym, aux)]!r}"))
                continue
            owner[(sym, aux)] = cname
            if aux is None:
                self._wild[sym] = idx
            else:
                self._exact[(sym, aux)] = idx
        if problems:
            raise ConfigError(problems)
        self._other = self.classes.index("other") if scheme.unmatched == "other" else None
        # class indices of scheme.window_priority, in priority order (validated by the config)
        self.priority_indices: tuple[int, ...] = tuple(self.classes.index(c) for c in scheme.window_priority)
        self._cache: dict[tuple[str, str], int | None] = {}

    @classmethod
    def from_config(cls, cfg: Config) -> "LabelGrouping":
        """The active scheme of ``cfg.labels`` (every scheme is compiled, so a bad pattern anywhere is
        reported as a :class:`ConfigError` with all its key paths)."""
        problems: list[tuple[str, str]] = []
        for name, scheme in cfg.labels.schemes.items():
            if name == cfg.labels.scheme:
                continue
            try:
                cls(scheme, name=name)
            except ConfigError as exc:
                problems.extend(exc.problems)
        try:
            active = cls(cfg.labels.active, name=cfg.labels.scheme)
        except ConfigError as exc:
            problems = exc.problems + problems
            active = None
        if problems or active is None:
            raise ConfigError(problems)
        return active

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def label(self, symbol: str, aux: str = "") -> int | None:
        """Class index of one (symbol, aux) pair, or None when it is ignored."""
        key = (symbol, (aux or "").strip())
        hit = self._cache.get(key, _IGNORE - 1)
        if hit != _IGNORE - 1:
            return hit  # type: ignore[return-value]
        idx = self._exact.get(key)
        if idx is None:
            idx = self._wild.get(symbol)
        if idx is None:
            out: int | None = self._other
        else:
            out = None if idx == _IGNORE else idx
        self._cache[key] = out
        return out

    def class_name(self, symbol: str, aux: str = "") -> str | None:
        k = self.label(symbol, aux)
        return None if k is None else self.classes[k]

    def labels(self, symbols: Iterable[str], auxes: Iterable[str]) -> np.ndarray:
        """(n,) int64 class indices, -1 where ignored."""
        return np.asarray([(-1 if (k := self.label(s, a)) is None else k) for s, a in zip(symbols, auxes)],
                          dtype=np.int64)

    def counts(self, symbols: Iterable[str], auxes: Iterable[str]) -> dict[str, int]:
        """Count per class (every class present, zeros included), ignoring ignored pairs."""
        c = Counter(k for s, a in zip(symbols, auxes) if (k := self.label(s, a)) is not None)
        return {name: int(c.get(i, 0)) for i, name in enumerate(self.classes)}

    def __repr__(self) -> str:
        return f"LabelGrouping({self.name!r}, classes={self.classes})"
