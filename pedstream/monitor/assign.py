"""Stream -> worker assignment: one function for the multi-core engine and for Ray workers.

Rendezvous (highest-random-weight) hashing: each stream goes to the worker with the highest
hash of ``(worker, stream)``. When a worker leaves, only its streams move; when one joins, only
the streams it now wins move (about 1/N of them). No library in our dependency set does this
for arbitrary worker names, and it is ten lines, so it is written here.

The hash is BLAKE2b (stable across processes and machines, unlike Python's salted ``hash``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

__all__ = ["assign", "assign_all", "moved"]


def _weight(worker: str, stream_id: str) -> int:
    digest = hashlib.blake2b(f"{worker}\x00{stream_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def assign(stream_id: str, workers: Sequence[str]) -> str:
    """The worker (one of ``workers``) that owns ``stream_id``.

    Raises ``ValueError`` when there is no worker.
    """
    if not workers:
        raise ValueError(f"no worker to assign stream {stream_id!r} to")
    return max(workers, key=lambda w: (_weight(w, stream_id), w))


def assign_all(stream_ids: Iterable[str], workers: Sequence[str]) -> dict[str, str]:
    """``{stream_id: worker}`` for every stream."""
    ws = list(dict.fromkeys(workers))
    return {sid: assign(sid, ws) for sid in stream_ids}


def moved(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Streams whose worker changed between two assignments (present in both)."""
    return {sid for sid, w in after.items() if sid in before and before[sid] != w}
