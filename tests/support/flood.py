"""A flooding publisher run as its own process (``python -m tests.support.flood ...``): JSON data
messages of many channels at a high rate, or meta flips, as one broker user on its own topics. The
monitor under test shares no CPU time with it beyond the machine's."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import paho.mqtt.client as mqtt

__all__ = ["main"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--kind", choices=["json", "meta"], default="json")
    ap.add_argument("--fs", type=float, default=10_000.0)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--speed", type=float, default=3.0)
    ap.add_argument("--rate", type=float, default=200.0, help="meta flips per second")
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(a.user, a.password)
    c.connect("127.0.0.1", a.port)
    c.loop_start()
    rng = np.random.default_rng(0)
    t_end = time.monotonic() + a.seconds
    k = 0
    if a.kind == "json":
        rows = json.dumps(np.round(rng.standard_normal((a.samples, a.channels)), 3).tolist(), separators=(",", ":"))
        period = a.samples / (a.fs * a.speed)
        t_next = time.monotonic()
        while time.monotonic() < t_end:  # the rows encoded once: the flooder's own CPU stays small
            msg = '{"seq":%d,"first_sample":%d,"t":%r,"data":%s}' % (k, k * a.samples, k * a.samples / a.fs, rows)
            c.publish(a.topic, msg, qos=0)
            k += 1
            t_next += period
            wait = t_next - time.monotonic()
            if wait > 0:
                time.sleep(wait)
    else:
        while time.monotonic() < t_end:
            meta = {"fs": 250.0, "channels": ["II", "V1"], "units": "mV", "session": str(k)}
            c.publish(a.topic, json.dumps(meta), qos=0, retain=True)
            k += 1
            time.sleep(1.0 / a.rate)
    c.loop_stop()
    c.disconnect()
    print(k)


if __name__ == "__main__":
    main()
