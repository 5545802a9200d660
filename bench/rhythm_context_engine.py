"""The engine with and without the rhythm-context layer, back to back on the same machine state:
``pedstream.bench.engine.capacity_one`` (replayed demo records, real time, the packaged window model),
once as is and once with ``Engine(rhythm_model="default")`` (the packaged rhythm model).

    .venv/bin/python bench/rhythm_context_engine.py --streams 200 --seconds 20

Writes bench/results/rhythm_context/engine_ab[_rhythm_first].json (process CPU per stream-second, e2e p99, sustained,
the machine's load average: this machine is shared, so compare only the two rows of one run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rhythm-first", action="store_true", help="run the variant with the layer first (order effects)")
    a = ap.parse_args()
    import pedstream.monitor.engine as engine_mod
    from pedstream.bench.engine import capacity_one
    from pedstream.config import load_config
    from pedstream.model.runtime import ModelSession, expected_metadata

    cfg = load_config(overrides=["alarms.strips=false"])
    exp = expected_metadata(signal_cfg=cfg.signal, filter_cfg=cfg.filters, window_s=cfg.segments.window_s,
                            hop_s=cfg.segments.hop_s)
    session = ModelSession(path=ROOT / "pedstream" / "assets" / "monitor_model.onnx", runtime_cfg=cfg.runtime,
                           expected=exp, max_batch=cfg.stream.max_batch)
    base = engine_mod.Engine
    rows = []
    for layer in ((True, False) if a.rhythm_first else (False, True)):
        if layer:
            class WithRhythm(base):  # type: ignore[misc,valid-type]
                def __init__(self, **kw):  # noqa: ANN003
                    super().__init__(**kw, rhythm_model="default")

            engine_mod.Engine = WithRhythm
        try:
            r = asyncio.run(capacity_one(cfg, session, a.streams, a.seconds))
        finally:
            engine_mod.Engine = base
        r["rhythm_layer"] = layer
        r["process_cpu_s_per_stream_second"] = round(r["process_cpu_pct"] / 100.0 / a.streams, 6)
        r["load"] = os.getloadavg()
        rows.append(r)
        print(json.dumps({k: r[k] for k in ("rhythm_layer", "streams", "realtime_ratio", "e2e_ms_p99", "process_cpu_pct",
                                            "process_cpu_s_per_stream_second", "sustained", "load")}), flush=True)
    out = {"command": f"python bench/rhythm_context_engine.py --streams {a.streams} --seconds {a.seconds:g}"
                      + (" --rhythm-first" if a.rhythm_first else ""), "runs": rows}
    path = ROOT / "bench" / "results" / "rhythm_context" / ("engine_ab_rhythm_first.json" if a.rhythm_first else "engine_ab.json")
    path.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
