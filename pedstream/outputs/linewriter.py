"""Append-only text lines to a file from a thread of its own: the event loop never opens the file or
waits on it, so a FIFO without a reader, a hung network path, a full or read-only disk cannot stall
the monitor or keep it from ending. Once the thread has opened a regular file on a local file system
(per /proc/self/mountinfo) and while it is healthy and nothing waits, :meth:`LineWriter.write` writes
the line at once (one ``os.write``, as a flushed line was: what a reader of stdout saw is already in
the file when the process is killed); on any error, and for FIFOs, devices and network file systems,
the thread does the writing.

:class:`LineWriter` takes lines with :meth:`LineWriter.write` (non-blocking; a bounded backlog of
``backlog`` lines, beyond which lines are counted as not written) and appends them with ``os.write``
(no user-space buffer: a line is in the file once written, a crash loses nothing written, and a
close cannot fail on data still buffered). A storage fault (``ENOSPC``, ``EROFS``, a vanished
folder, a file where a folder should be...) is reported once through ``on_fault(message)``; the
thread keeps the unwritten lines and retries every ``retry_s``, and reports ``on_fault(None)`` once
writing works again (nothing is lost unless the backlog overflowed). A target that cannot be opened
within ``open_timeout_s`` (a FIFO nobody reads, a hung mount) is reported the same way. At exit
:meth:`LineWriter.close` waits at most ``timeout_s`` for the backlog; what is left is counted in
``not_written``. The thread is a daemon: a write stuck in the kernel never holds the process.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Callable

__all__ = ["LineWriter", "in_daemon_thread"]

log = logging.getLogger(__name__)

_STOP = object()


class LineWriter:
    """Lines appended to ``path`` by a daemon thread (module docstring)."""

    def __init__(self, path: str | Path, *, on_fault: Callable[[str | None], None] | None = None,
                 backlog: int = 100_000, retry_s: float = 1.0, open_timeout_s: float = 5.0) -> None:
        self.path = Path(path)
        self.on_fault = on_fault
        self.retry_s = float(retry_s)
        self.open_timeout_s = float(open_timeout_s)
        self._q: queue.Queue = queue.Queue(maxsize=backlog)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._progress: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._opened = threading.Event()
        self._closing = False
        self.queued = 0  # lines handed to the thread
        self._thread_written = 0  # ... and written by it
        self._direct_written = 0  # lines written at once by write() (a healthy local file, nothing queued)
        self._direct: int | None = None  # the thread's fd while write() may use it directly
        self.overflow = 0  # lines refused because the backlog was full
        self.fault: str | None = None  # the current fault, None when writing works
        self.faults = 0  # faults reported (each one once)

    @property
    def written(self) -> int:
        """Lines in the file."""
        return self._thread_written + self._direct_written

    @property
    def not_written(self) -> int:
        """Lines that did not reach the file (overflowed, or still waiting at exit)."""
        return self.overflow + (self.queued - self._thread_written if self._done.is_set() or self._closing else 0)

    def start(self) -> None:
        """Start the writer thread (call from the event loop the faults are reported on)."""
        self._loop = asyncio.get_running_loop()
        self._progress = asyncio.Event()
        self._q.put_nowait(b"")  # the thread opens the file at once (then write() may go direct)
        self._thread = threading.Thread(target=self._main, name=f"lines-{self.path.name}", daemon=True)
        self._thread.start()
        self._loop.call_later(self.open_timeout_s, self._check_opened)

    def write(self, line: str) -> None:
        """Write one line (``\\n`` appended): at once when the file is a healthy regular file on a local
        file system and nothing waits (so a line is in the file when ``write`` returns, as a flushed
        line would be), else through the thread; never blocks on a FIFO, a network path or a fault."""
        data = (line + "\n").encode("utf-8")
        fd = self._direct
        if fd is not None and self.fault is None and not self._closing and self.queued == self._thread_written:
            try:
                k = os.write(fd, data)
            except OSError:
                k = 0
            if k == len(data):
                self._direct_written += 1
                return
            self._direct = None  # the thread takes over (it reports and retries); the rest of the line goes to it
            data = data[k:]
        try:
            self._q.put_nowait(data)
            self.queued += 1
        except queue.Full:
            self.overflow += 1

    async def wait_open(self, timeout: float) -> None:
        """Wait until the thread has opened the file (or reported why it cannot)."""
        async with asyncio.timeout(timeout):
            while not self._opened.is_set() and self.fault is None:
                self._progress.clear()
                await self._progress.wait()

    async def wait_written(self, n: int, timeout: float) -> None:
        """Wait until ``n`` lines are in the file (TimeoutError after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while self.written < n:
                self._progress.clear()
                await self._progress.wait()

    async def close(self, timeout_s: float = 3.0) -> None:
        """Let the thread write the backlog for at most ``timeout_s``; the rest counts as not written."""
        if self._thread is None:
            return
        self._closing = True
        try:
            self._q.put_nowait(_STOP)
        except queue.Full:
            pass
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        threading.Thread(target=lambda: (self._done.wait(), loop.call_soon_threadsafe(done.set)),
                         daemon=True).start()
        try:
            async with asyncio.timeout(timeout_s):
                await done.wait()
        except TimeoutError:
            log.error("%s: %d line(s) not written at exit (%s)", self.path, self.queued - self._thread_written,
                      self.fault or "the file did not take them in time")

    # -- the thread ---------------------------------------------------------------------------------------------
    def _report(self, message: str | None) -> None:
        if (message is None) == (self.fault is None):
            return  # already reported
        self._signal()
        self.fault = message
        if message is not None:
            self.faults += 1
        if self._loop is not None and self.on_fault is not None:
            try:
                self._loop.call_soon_threadsafe(self.on_fault, message)
            except RuntimeError:  # the loop is gone (exit)
                pass

    def _signal(self) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._progress.set)
            except RuntimeError:  # the loop is gone (exit)
                pass

    def _check_opened(self) -> None:
        if not self._opened.is_set() and not self._done.is_set() and self.fault is None:
            what = "a FIFO without a reader?" if _is_fifo(self.path) else "a hung or unreachable path?"
            self._report(f"{self.path}: not open after {self.open_timeout_s:g} s ({what}); lines wait")

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        self._opened.set()
        return fd

    def _main(self) -> None:
        fd: int | None = None
        pending = b""
        stop = False
        direct_ok = False
        try:
            while True:
                if not pending:
                    if stop:
                        return
                    item = self._q.get()
                    parts = [item]
                    while len(parts) < 1000:  # write what is queued in one call
                        try:
                            parts.append(self._q.get_nowait())
                        except queue.Empty:
                            break
                    stop = any(p is _STOP for p in parts)
                    pending = b"".join(p for p in parts if p is not _STOP)
                    n_lines = sum(1 for p in parts if p is not _STOP and p)
                    if not pending and (fd is not None or stop):
                        continue
                try:
                    if fd is None:
                        fd = self._open()
                        direct_ok = _local_regular_file(fd, self.path)
                    while pending:
                        k = os.write(fd, pending)
                        pending = pending[k:]
                    self._thread_written += n_lines
                    self._report(None)
                    if direct_ok and not self._closing:
                        self._direct = fd  # write() may write at once again
                    self._signal()
                except OSError as exc:
                    self._report(f"{self.path}: {_why(exc)}")
                    if fd is not None and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                        self._direct = None
                        os.close(fd)  # reopen: the file or its folder may have been replaced
                        fd = None
                    if self._closing:
                        return
                    self._done.wait(self.retry_s)  # a pause between retries (never set while running)
        finally:
            self._direct = None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._done.set()


async def in_daemon_thread(fn: Callable[..., object], *args: object, **kwargs: object) -> object:
    """``await fn(*args, **kwargs)`` run in a daemon thread of its own. Unlike ``asyncio.to_thread`` (the
    loop's default executor, joined when ``asyncio.run`` ends), a call stuck in the kernel on a hung
    path can be abandoned: the run still ends."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def settle(ok: bool, value: object) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)  # type: ignore[arg-type]

    def main() -> None:
        try:
            out = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task
            result: tuple[bool, object] = (False, exc)
        else:
            result = (True, out)
        try:
            loop.call_soon_threadsafe(settle, *result)
        except RuntimeError:  # the loop is gone: nobody waits any more
            pass

    threading.Thread(target=main, name=f"io-{getattr(fn, '__name__', 'call')}", daemon=True).start()
    return await fut


_REMOTE_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs", "davfs", "ncpfs"}


def _local_regular_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is a regular file on a local file system (per /proc/self/mountinfo; False when
    that cannot be told): only such a file is written at once from the event loop."""
    import stat

    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        real = os.path.realpath(path)
        best, fstype = "", ""
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                mount = left.split()[4].replace("\\040", " ")
                inside = real == mount or real.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, fstype = mount, right.split()[0]
    except (OSError, IndexError):
        return False
    return bool(fstype) and fstype not in _REMOTE_FS and not fstype.startswith("fuse")


def _why(exc: OSError) -> str:
    return f"{os.strerror(exc.errno)} (errno {errno.errorcode.get(exc.errno, exc.errno)})" if exc.errno else str(exc)


def _is_fifo(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False
