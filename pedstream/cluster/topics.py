"""Topics and payloads of the cluster on the MQTT broker (all under ``[mqtt] topic_prefix``).

==================================  ========  ==========================================================
topic                               retained  payload (UTF-8 JSON)
==================================  ========  ==========================================================
``<prefix>/<stream>/rhythm``        no, QoS1  one monitor event (the ``--events`` JSON line) plus ``worker``
``<prefix>/<stream>/alarm``         yes       the stream's current alarm state: ``stream``, ``worker``,
                                              ``t``, ``alarms`` (``[{"label", "priority"}]``, highest
                                              priority first); empty = the stream is gone
``<prefix>/_workers/<worker>``      yes       presence: ``worker``, ``state`` (``up`` | ``gone``), ``pid``,
                                              ``host``, ``streams`` (how many), ``t``; the Last Will sets
                                              ``state: gone``; a clean stop clears it
``<prefix>/_supervisor``            yes       the supervisor lock: ``id``, ``host``, ``pid``, ``since``;
                                              its Last Will clears it
==================================  ========  ==========================================================

Stream ids starting with ``_`` are reserved for these topics: the supervisor never assigns them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pedstream.errors import PedstreamError
from pedstream.transports.mqtt.wire import json_depth

__all__ = ["ClusterError", "PRIORITY_RANK", "WORKER_RE", "rhythm_topic", "alarm_topic", "presence_topic",
           "lock_topic", "decode_json", "encode_json"]

WORKER_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
PRIORITY_RANK = {"high": 0, "medium": 1, "advisory": 2, "none": 3}


class ClusterError(PedstreamError):
    """The cluster cannot start or go on (broker, Ray address, another supervisor, a worker): bad input
    the user can fix, one line, exit 2. ``what`` names the part (``broker``, ``ray``, ``supervisor``,
    ``worker w1``)."""

    exit_code = 2

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")

    def __reduce__(self) -> tuple:  # crosses process boundaries (a Ray actor's error reaches the driver)
        return (type(self), (self.what, self.reason))


def rhythm_topic(prefix: str, stream_id: str) -> str:
    return f"{prefix.rstrip('/')}/{stream_id}/rhythm"


def alarm_topic(prefix: str, stream_id: str) -> str:
    return f"{prefix.rstrip('/')}/{stream_id}/alarm"


def presence_topic(prefix: str, worker: str) -> str:
    return f"{prefix.rstrip('/')}/_workers/{worker}"


def lock_topic(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/_supervisor"


def encode_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode_json(raw: bytes, *, max_bytes: int, max_depth: int = 8) -> dict[str, Any]:
    """A JSON object from the broker, behind size and depth limits; ``ValueError`` otherwise."""
    if len(raw) > max_bytes:
        raise ValueError(f"{len(raw)} bytes, over the limit of {max_bytes}")
    if json_depth(raw) > max_depth:
        raise ValueError(f"nests deeper than {max_depth} levels")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not valid UTF-8 JSON ({str(exc)[:80]})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"a JSON {type(obj).__name__}, expected an object")
    return obj
