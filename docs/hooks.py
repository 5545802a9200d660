"""mkdocs hook: the API reference lists whatever ``import pedstream`` exports.

``<!-- public-api -->`` in a page becomes one mkdocstrings ``::: module.name`` block per name of
``pedstream.__all__``, each resolved through the package's own lazy-export table, so the page follows
the code when a name moves to another module; ``{module of NAME}`` is the module that exports NAME.
"""

from __future__ import annotations

import importlib
import re

PLACEHOLDER = "<!-- public-api -->"
MODULE_OF = re.compile(r"\{module of (\w+)\}")  # "::: {module of MonitorEvent}": where that export lives


def public_api_blocks() -> str:
    """One ``::: module.name`` line per public name of ``pedstream`` (in ``__all__`` order)."""
    pkg = importlib.import_module("pedstream")
    lazy = _lazy()
    blocks = [f"::: {lazy[name]}.{name}\n" for name in pkg.__all__ if name in lazy]
    return "\n".join(blocks)


def _lazy() -> dict[str, str]:
    return dict(getattr(importlib.import_module("pedstream"), "_LAZY", {}))


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, public_api_blocks())
    return MODULE_OF.sub(lambda m: _lazy()[m.group(1)], markdown)
