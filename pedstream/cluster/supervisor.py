"""The supervisor (the Ray driver): streams from the retained metas, worker actors, assignment, failover.

- **Lock.** One supervisor per broker prefix: it subscribes to ``<prefix>/_supervisor``, waits
  ``[cluster] lock_wait_s`` for a retained lock, publishes its own (retained, Last Will clears it), waits
  again; a lock of another supervisor (or, when two start at once, an earlier one) is a
  :class:`ClusterError` before any worker starts, so no stream is ever handled by two supervisors.
- **Streams** come from the retained ``<prefix>/+/meta`` topics (an empty meta withdraws the stream;
  ids starting with ``_`` are reserved; at most ``[cluster] max_streams``).
- **Workers** are Ray actors (:class:`~pedstream.cluster.worker.MonitorWorker`, ``[cluster] worker_cpus``
  each). Each stream goes to :func:`pedstream.monitor.assign.assign` over the *live* workers (rendezvous
  hashing): a worker's death moves only its streams, a join moves only the streams it wins.
- **Death** is noticed through Ray (a ping raising ``RayActorError``: the actor process is gone) and
  through the heartbeat (``heartbeat_misses`` pings in a row unanswered within ``heartbeat_timeout_s``:
  the actor is then killed with ``ray.kill`` before its streams move, so a hung worker cannot go on
  reporting them). Its streams are assigned at once to the surviving workers with reason
  ``worker_failover``; between live workers a stream is first taken off its old worker, then given to
  the new one.
- **Join.** :meth:`Supervisor.add_worker` starts one more worker; with ``[cluster] replace_dead`` a dead
  worker is replaced (same name, new process). Once it is up, the next rebalance moves to it only the
  streams it wins (reason ``worker_rebalance``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import aiomqtt

from pedstream.cluster.link import BrokerLink
from pedstream.cluster.topics import ClusterError, alarm_topic, lock_topic
from pedstream.monitor.assign import assign_all
from pedstream.transports.mqtt.wire import topic_for
from pedstream.config import Config

__all__ = ["Supervisor", "WorkerHandle"]

log = logging.getLogger(__name__)


@dataclass
class WorkerHandle:
    name: str
    actor: Any
    pid: int | None = None
    host: str | None = None
    alive: bool = True
    misses: int = 0
    streams: set[str] = field(default_factory=set)


class Supervisor(BrokerLink):
    """``async with Supervisor(cfg=cfg, workers=3) as sup: await sup.run(stop)`` (Ray must be initialised).

    ``on_line(text)`` receives one line per change (assignment, death); ``model_path`` is passed to
    each worker (default: the packaged model)."""

    def __init__(self, *, cfg: Config, workers: int, model_path: str | None = None,
                 on_line: Callable[[str], None] | None = None, name_prefix: str = "w", worker_cfg: Any = None) -> None:
        """``worker_cfg``: the configuration the workers get (default ``cfg``; e.g. workers on other nodes
        that reach the broker at another address)."""
        if workers < 1:
            raise ClusterError("--workers", f"must be at least 1 (got {workers})")
        self.cfg = cfg
        self.worker_cfg = cfg if worker_cfg is None else worker_cfg
        self.n_workers = int(workers)
        self.model_path = model_path
        self.on_line = on_line or (lambda text: log.info("%s", text))
        self.name_prefix = name_prefix
        self.prefix = cfg.mqtt.topic_prefix.rstrip("/")
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.since = time.time()
        self.workers: dict[str, WorkerHandle] = {}
        self.streams: set[str] = set()
        self.assignment: dict[str, str] = {}
        self.seen_streams: set[str] = set()  # every stream ever assigned
        self.refused_streams = 0
        self.moves: list[tuple[float, str, str, str, str]] = []  # (monotonic, stream, from, to, reason)
        self.deaths: list[tuple[float, str]] = []
        self._client: aiomqtt.Client | None = None
        self._changed = asyncio.Event()
        self._foreign_lock: dict[str, Any] | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lock = asyncio.Lock()
        self._replacing: set[asyncio.Task] = set()
        self.fatal: ClusterError | None = None  # set when this supervisor must stop (see _read)

    # -- lifecycle --------------------------------------------------------------------------------
    async def __aenter__(self) -> "Supervisor":
        m, c = self.cfg.mqtt, self.cfg.cluster
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._close_client)
            try:
                await self._connect()
            except aiomqtt.MqttError as exc:
                raise ClusterError("broker", f"cannot reach the MQTT broker at {m.host}:{m.port} ({exc})") from exc
            reader = asyncio.get_running_loop().create_task(self._read(), name="supervisor-mqtt")
            stack.push_async_callback(self._cancel, reader)
            await asyncio.sleep(c.lock_wait_s)  # the retained lock of another supervisor arrives in this time
            self._check_lock(before=True)
            await self._client.publish(lock_topic(self.prefix), self._lock_payload(), qos=1, retain=True,
                                       timeout=m.timeout_s)
            stack.push_async_callback(self._release_lock)
            await asyncio.sleep(c.lock_wait_s)  # one started at the same moment: its lock arrives in this time
            self._check_lock(before=False)
            await self._client.subscribe(topic_for(self.prefix, "+", "meta"), qos=1, timeout=m.timeout_s)
            stack.push_async_callback(self._stop_workers)
            await self._start_workers()
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    @staticmethod
    async def _cancel(task: asyncio.Task) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    # -- workers ------------------------------------------------------------------------------------
    def _launch(self, name: str) -> Any:
        """Create the actor of worker ``name`` (replacing a dead one of that name); returns its start ref."""
        import ray

        from pedstream.cluster.worker import MonitorWorker

        c = self.cfg.cluster
        cls = ray.remote(MonitorWorker).options(num_cpus=c.worker_cpus, max_restarts=0, max_concurrency=64)
        h = WorkerHandle(name=name, actor=cls.remote(name, self.worker_cfg, self.model_path), alive=False)
        self.workers[name] = h
        return h.actor.start.remote()

    async def _started(self, name: str, ref: Any) -> None:
        """Wait (bounded) for worker ``name`` to be up; any failure is one :class:`ClusterError` line."""
        import ray

        c = self.cfg.cluster
        try:
            async with asyncio.timeout(c.worker_start_timeout_s):
                info = await ref
        except TimeoutError as exc:
            with contextlib.suppress(Exception):
                ray.kill(self.workers[name].actor, no_restart=True)
            raise ClusterError(f"worker {name}", f"not up within [cluster] worker_start_timeout_s = "
                                                 f"{c.worker_start_timeout_s:g} s (no free CPU on the Ray "
                                                 f"cluster for worker_cpus = {c.worker_cpus:g}?)") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc
            if isinstance(cause, ClusterError):
                raise ClusterError(cause.what, cause.reason) from exc
            raise ClusterError(f"worker {name}", f"failed to start ({type(cause).__name__}: "
                                                 f"{str(cause).splitlines()[0][:160]})") from exc
        except ray.exceptions.RayActorError as exc:
            raise ClusterError(f"worker {name}", f"died while starting ({str(exc).splitlines()[0][:160]})") from exc
        h = self.workers[name]
        h.pid, h.host, h.alive, h.misses, h.streams = info["pid"], info["host"], True, 0, set()
        self.on_line(f"worker {name} up (pid {info['pid']} on {info['host']})")

    async def _start_workers(self) -> None:
        starts = {f"{self.name_prefix}{i}": None for i in range(self.n_workers)}
        for name in starts:
            starts[name] = self._launch(name)
        for name, ref in starts.items():
            await self._started(name, ref)

    async def add_worker(self, name: str | None = None) -> str:
        """Start one more worker (or a dead one's replacement, ``name``) and let it join: the next
        rebalance moves to it only the streams it wins (reason ``worker_rebalance``)."""
        if name is None:
            k = len(self.workers)
            while f"{self.name_prefix}{k}" in self.workers:
                k += 1
            name = f"{self.name_prefix}{k}"
        elif name in self.workers and self.workers[name].alive:
            raise ClusterError(f"worker {name}", "is alive already")
        await self._started(name, self._launch(name))
        self._changed.set()
        return name

    async def _replace(self, name: str) -> None:
        try:
            await self.add_worker(name)
        except ClusterError as exc:
            self.on_line(f"supervisor: replacement not started: {exc}")

    async def _stop_workers(self) -> None:
        import ray

        for task in list(self._replacing):
            await self._cancel(task)

        live = [h for h in self.workers.values() if h.alive]
        refs = [h.actor.stop.remote() for h in live]
        with contextlib.suppress(Exception):
            async with asyncio.timeout(max(5.0, 2 * self.cfg.stream.stop_timeout_s)):
                await asyncio.gather(*refs, return_exceptions=True)
        for h in self.workers.values():
            with contextlib.suppress(Exception):
                ray.kill(h.actor, no_restart=True)

    def live(self) -> list[str]:
        return sorted(n for n, h in self.workers.items() if h.alive)

    async def _ping(self, h: WorkerHandle) -> None:
        import ray

        c = self.cfg.cluster
        try:
            async with asyncio.timeout(c.heartbeat_timeout_s):
                info = await h.actor.ping.remote()
            h.misses = 0
            h.pid = info.get("pid", h.pid)
        except ray.exceptions.RayActorError as exc:
            self._dead(h, f"actor died ({type(exc).__name__})")
        except TimeoutError:
            h.misses += 1
            if h.misses >= c.heartbeat_misses:
                with contextlib.suppress(Exception):
                    ray.kill(h.actor, no_restart=True)  # a hung worker must not go on reporting its streams
                self._dead(h, f"{h.misses} heartbeats missed ({c.heartbeat_timeout_s:g} s each); killed")

    def _dead(self, h: WorkerHandle, why: str) -> None:
        if not h.alive:
            return
        h.alive = False
        self.deaths.append((time.monotonic(), h.name))
        self.on_line(f"worker {h.name} (pid {h.pid}) is dead: {why}; its {len(h.streams)} stream(s) move")
        self._changed.set()
        if self.cfg.cluster.replace_dead:  # started beside the heartbeats; it joins when it is up
            task = asyncio.get_running_loop().create_task(self._replace(h.name), name=f"replace-{h.name}")
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    async def rebalance(self) -> dict[str, str]:
        """Assign every known stream over the live workers; tell each worker whose set changed."""
        async with self._lock:
            live = self.live()
            if not live:
                raise ClusterError("supervisor", "every worker is dead")
            before = dict(self.assignment)
            after = assign_all(sorted(self.streams), live)
            moved: dict[str, dict[str, str]] = {w: {} for w in live}
            for sid, w in after.items():
                old = before.get(sid)
                if old is not None and old != w:
                    reason = "worker_failover" if not self.workers[old].alive else "worker_rebalance"
                    moved[w][sid] = reason
                    self.moves.append((time.monotonic(), sid, old, w, reason))
            new_sets = {w: {s for s, o in after.items() if o == w} for w in live}
            # first take streams off live workers that lose them, then give them to their new workers
            losing = [w for w in live if self.workers[w].streams - new_sets[w]]
            gaining = [w for w in live if new_sets[w] != self.workers[w].streams and w not in losing]
            for group in (losing, gaining):
                await asyncio.gather(*(self._tell(w, new_sets[w], moved[w]) for w in group))
            for name, h in self.workers.items():
                if not h.alive:
                    h.streams = set()
            for sid in set(before) - set(after):  # the stream is gone: clear its retained alarm state
                with contextlib.suppress(Exception):
                    await self._client.publish(alarm_topic(self.prefix, sid), b"", qos=1, retain=True,  # type: ignore[union-attr]
                                               timeout=self.cfg.mqtt.timeout_s)
            self.assignment = after
            self.seen_streams.update(after)
            if losing or gaining:
                self.on_line("assignment: " + ", ".join(f"{w} {len(new_sets[w])}" for w in live)
                             + f" stream(s); {sum(len(v) for v in moved.values())} moved")
            return after

    async def _tell(self, name: str, streams: set[str], moved: dict[str, str]) -> None:
        import ray

        h = self.workers[name]
        try:
            async with asyncio.timeout(self.cfg.cluster.heartbeat_timeout_s * self.cfg.cluster.heartbeat_misses):
                await h.actor.assign.remote(sorted(streams), moved)
            h.streams = set(streams)
        except ray.exceptions.RayActorError as exc:
            self._dead(h, f"actor died ({type(exc).__name__})")
        except TimeoutError:
            with contextlib.suppress(Exception):
                ray.kill(h.actor, no_restart=True)
            self._dead(h, "did not take its assignment in time; killed")

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeats and rebalancing until ``stop`` is set."""
        c = self.cfg.cluster
        self._changed.set()
        while not stop.is_set():
            if self.fatal is not None:
                raise self.fatal
            live = [h for h in self.workers.values() if h.alive]
            await asyncio.gather(*(self._ping(h) for h in live))
            if self._changed.is_set():
                self._changed.clear()
                await self.rebalance()
                if self._changed.is_set():  # a worker died while being told: go again at once
                    continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(c.heartbeat_s):
                    await stop.wait()  # the heartbeat cadence, ended early by stop
