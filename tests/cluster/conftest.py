"""A local Ray runtime for the cluster tests (loopback, no dashboard, shut down after the module).

Skipped only where ray is not importable (the ``cluster`` extra; CI installs it)."""

from __future__ import annotations

import dataclasses
import os
import uuid

import pytest

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # the local runtime stays on 127.0.0.1 (before ray is imported)
ray = pytest.importorskip("ray", reason="the cluster extra (ray) is not installed")


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=4, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False,
             configure_logging=False, namespace=f"pedstream-test-{uuid.uuid4().hex[:8]}")
    try:
        yield ray
    finally:
        ray.shutdown()


def cluster_cfg(port: int, *extra: str):
    """The configuration of a cluster test: the test broker, one ONNX thread, no alarm strips."""
    from pedstream.config import load_config

    return load_config(None, [f"mqtt.port={port}", "runtime.intra_op_threads=1", "runtime.inter_op_threads=1",
                              "alarms.strips=false", "cluster.lock_wait_s=0.3", *extra])


def ward_plans(cfg, n: int, *, seconds: float = 30.0):
    """``n`` replay plans (bed00..) over the bundled simulated records, ``seconds`` of each."""
    from pedstream.transports.replay import plan_replay
    from pedstream.monitor.assembly import demo_records_path

    base = plan_replay([demo_records_path(cfg)], cfg.signal, seconds=seconds)
    return [dataclasses.replace(base[i % len(base)], stream_id=f"bed{i:02d}") for i in range(n)]
