"""Lazy re-exports for the subpackage ``__init__`` modules.

A package lists ``{public name: defining module}`` and gets a module-level ``__getattr__`` that
imports the defining module on first access (so ``import pedstream.<pkg>`` stays light: no torch,
no pylsl, no aiomqtt until a name that needs them is used) and a ``__dir__`` that lists the lazy
names too.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, lazy: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``.

    ``lazy`` maps each lazily exported name to the module that defines it; ``namespace`` is the
    package's ``globals()``: a name, once imported, is stored there so later lookups are plain
    attribute reads. Usage in an ``__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
    """

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(lazy))

    return __getattr__, __dir__
