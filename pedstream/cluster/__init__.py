"""Beyond one machine: monitor workers on Ray over the MQTT broker (docs/scaling-out.md).

- :mod:`.supervisor`: the Ray driver: streams from the retained metas, worker actors, rendezvous
  assignment over the live workers, failover on death (Ray actor death or missed heartbeats);
- :mod:`.link`: the supervisor's broker connection, lock and stream discovery (reconnecting);
- :mod:`.worker`: one worker actor: the engine over its assigned streams, events to
  ``<prefix>/<stream>/rhythm``, alarm state retained on ``<prefix>/<stream>/alarm``, presence on
  ``<prefix>/_workers/<worker>``;
- :mod:`.central`: the central station's state (every stream of every worker, from the broker);
- :mod:`.command`: ``pedstream run --workers N`` and ``pedstream central``; the central dashboard;
- :mod:`.topics`: the topics and payloads, :class:`ClusterError`.

Needs the ``cluster`` extra (``pip install 'pedstream[cluster]'``: Ray); the engine (``pedstream.monitor``)
never imports this package. Lazy: nothing heavy is imported until a name is used.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

_LAZY = {
    "ClusterError": "pedstream.cluster.topics",
    "Supervisor": "pedstream.cluster.supervisor",
    "MonitorWorker": "pedstream.cluster.worker",
    "WorkerEvents": "pedstream.cluster.worker",
    "Central": "pedstream.cluster.central",
    "cluster_command": "pedstream.cluster.command",
    "central_command": "pedstream.cluster.command",
    "render_central": "pedstream.cluster.command",
    "export_central": "pedstream.cluster.command",
    "start_ray": "pedstream.cluster.command",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
