"""Keep ONNX Runtime's own printing off stdout while a session is created.

When a GPU execution provider cannot start (no CUDA/cuDNN libraries, no device), ONNX Runtime's
Python wrapper prints ``EP Error ... Falling back to ['CPUExecutionProvider'] and retrying.`` with
``print()`` and its C++ logger writes warnings to the process's file descriptors 1/2. Headless
output (``pedstream run --headless``: JSON lines on stdout) must stay machine-readable, so
:func:`capture_output` redirects ``sys.stdout``/``sys.stderr`` **and** file descriptors 1 and 2 into a
temporary file for the duration of the block. Afterwards the captured text is sorted:

- the fallback (``EP Error``/``Falling back``) becomes ONE warning line through the logger;
- other ONNX Runtime lines (``[W:onnxruntime...`` and the like) are logged at debug level;
- anything else (a line another thread printed meanwhile) is written back where it was going.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Iterator

__all__ = ["CapturedOutput", "capture_output", "fallback_line"]

log = logging.getLogger("pedstream.model.runtime")

_ORT_LINE = re.compile(r"onnxruntime|EP Error|Falling back|\*{5,}|^\s*$|TensorRT|CUDA|cudnn|libcu", re.I)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class CapturedOutput:
    """What was printed during the block: ``stdout`` and ``stderr`` text (Python and C++ writes)."""

    stdout: str = ""
    stderr: str = ""
    logged: list[str] = field(default_factory=list)  # the lines sent to the logger

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def fallback_line(text: str) -> str | None:
    """One line summing up ONNX Runtime's provider fallback message in ``text`` (None: no fallback)."""
    if "Falling back" not in text and "EP Error" not in text:
        return None
    err = re.search(r"EP Error:?\s*(.*?)(?: when using| using)\s*(\[.*?\])", text, re.S)
    back = re.search(r"Falling back to (\[.*?\])", text)
    reason = " ".join(err.group(1).split())[:300] if err else "execution provider error"
    tried = err.group(2) if err else "the requested providers"
    return (f"ONNX Runtime could not use {tried} ({reason}); falling back to "
            f"{back.group(1) if back else 'the CPU'}")


def _read(f: io.BufferedRandom) -> str:
    f.flush()
    f.seek(0)
    return _ANSI.sub("", f.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def capture_output() -> Iterator[CapturedOutput]:
    """Capture everything written to stdout/stderr (Python objects and fds 1/2) in the block; then log
    the ONNX Runtime part (see the module docstring) and give the rest back."""
    result = CapturedOutput()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: dict[int, int] = {}
    files: dict[int, io.BufferedRandom] = {}
    try:
        for fd in (1, 2):
            try:
                saved[fd] = os.dup(fd)
            except OSError:  # no such fd (a daemon without stdio): nothing to redirect
                continue
            files[fd] = tempfile.TemporaryFile()
            os.dup2(files[fd].fileno(), fd)
        py_out, py_err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(py_out), contextlib.redirect_stderr(py_err):
            yield result
    finally:
        for fd, dup in saved.items():
            os.dup2(dup, fd)
            os.close(dup)
        texts = {fd: _read(f) for fd, f in files.items()}
        for f in files.values():
            f.close()
    result.stdout = py_out.getvalue() + texts.get(1, "")
    result.stderr = py_err.getvalue() + texts.get(2, "")
    _sort(result)


def _sort(result: CapturedOutput) -> None:
    line = fallback_line(result.text)
    if line is not None:
        log.warning("%s", line)
        result.logged.append(line)
    skip_fallback = line is not None
    for text, target in ((result.stdout, sys.stdout), (result.stderr, sys.stderr)):
        back = []
        for raw in text.splitlines():
            if _ORT_LINE.search(raw):
                if raw.strip() and not (skip_fallback and ("EP Error" in raw or "Falling back" in raw or "*****" in raw)):
                    log.debug("onnxruntime: %s", raw.strip())
            else:
                back.append(raw)
        if back:
            with contextlib.suppress(Exception):
                target.write("\n".join(back) + "\n")
                target.flush()
