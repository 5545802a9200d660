"""mkdocs hook: the API reference lists whatever ``import pedstream`` exports.

``<!-- public-api -->`` in a page becomes one mkdocstrings ``::: module.name`` block per name of
``pedstream.__all__``, each resolved through the package's own lazy-export table, so the page follows
the code when a name moves to another module; ``{module of NAME}`` is the module that exports NAME.
In the rendered API pages, the docstrings' Sphinx roles (``:class:`` before a name) and ``::`` literal-block
markers are dropped (the docstrings are written for ``help()`` and Sphinx alike).
"""

from __future__ import annotations

import importlib
import re

PLACEHOLDER = "<!-- public-api -->"
MODULE_OF = re.compile(r"\{module of (\w+)\}")  # "::: {module of MonitorEvent}": where that export lives
RST_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):(?=<code>)")  # docstrings' Sphinx roles


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


def on_page_content(html: str, page, config, files) -> str:  # noqa: ARG001 (mkdocs hook signature)
    if "doc-contents" not in html:  # only pages with mkdocstrings output
        return html
    return RST_ROLE.sub("", html).replace("::</p>", ":</p>")
