"""Web station benchmark: server CPU and bandwidth per bed, browser frame rate and CPU, display latency.

    .venv/bin/python -m bench.bench_web [--beds 8,64] [--seconds 15] [--out bench/results/web.json]
    .venv/bin/python -m bench.bench_web --screenshots docs/img     # the ward and bed view figures

For each N: N simultaneous 977 Hz, 19-channel streams (the bundled SIMULATED record ``x001``,
looped, replayed in-process in real time) through the full engine, measured twice for
``--seconds`` each on the same process:

1. the engine alone (no web station);
2. the engine with the web station and one headless Chromium page (Debian's chromium, Selenium)
   showing all N bed tiles at once (window 2400x3000: every tile on screen, so every bed is sent).

Reported: the process CPU of each phase (``time.process_time``) and their difference (the web
side's whole cost, uvicorn and the WebSocket protocol included); the station's own measured work
(tap, decimation, JSON, frames: ``WebStation.busy_s``); bytes sent per bed per second (waveform
frames of 2 channels at ~244 Hz plus tile states); the page's animation frame rate
(requestAnimationFrame callbacks per second) and waveform frames per second received; the
browser's CPU (all Chromium processes, psutil) and its main-thread task time (Chrome DevTools
``Performance.getMetrics`` TaskDuration); and the display latency, marker to pixel: every frame
carries the wall-clock time its last sample reached the monitor (for a source paced in real time,
the signal time of that sample), and the page takes ``Date.now()`` at the start of the animation
frame after the one that drew it on the canvas (the drawing handed to the compositor; same
machine clock): p50 / p95. Not measured: compositor to light on a physical screen (headless
Chromium has no display).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "pedstream" / "assets" / "demo_records" / "x001"


def _driver(width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def _browser_cpu(driver) -> float:
    import psutil

    total = 0.0
    for p in psutil.Process(driver.service.process.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _login(driver, url: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "login")
    driver.find_element(By.ID, "user").send_keys("demo")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


async def _until(cond, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await asyncio.to_thread(cond):
            await asyncio.sleep(0.2)  # polling the browser for a condition, bounded by the timeout


def _plans(cfg, n: int) -> list:
    from bench.bench_engine import _PreloadedRecord
    from pedstream.transports.replay import plan_replay

    first = plan_replay([RECORD], cfg.signal, stream_id="bed000")[0]
    first = dataclasses.replace(first, record=_PreloadedRecord(first.record))
    return [dataclasses.replace(first, stream_id=f"bed{i:03d}") for i in range(n)]


async def one(cfg, session, n: int, seconds: float) -> dict:
    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource
    from pedstream.web.server import WebService

    # 1. the engine alone
    q: asyncio.Queue = asyncio.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        src = ReplaySource(events=q, plans=_plans(cfg, n), speed=1.0, chunk_ms=cfg.replay.chunk_ms, loop=True)
        async with Engine(cfg=cfg, session=session, sources=[src], alarms_dir=Path(tmp)):
            await asyncio.sleep(3.0)  # warm-up of a real-time run
            c0, t0 = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)  # the measurement period of a real-time run
            engine_cpu = (time.process_time() - c0) / (time.perf_counter() - t0)
    # 2. the engine with the web station and a browser showing every bed
    svc = WebService(cfg, bind="127.0.0.1:0")
    st = svc.station
    src = ReplaySource(events=st.queue(), plans=_plans(cfg, n), speed=1.0, chunk_ms=cfg.replay.chunk_ms, loop=True)
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(cfg=cfg, session=session, sources=[src], sinks=[st], alarms_dir=Path(tmp))
        async with eng:
            task = asyncio.create_task(svc.serve(eng))
            driver = await asyncio.to_thread(_driver, 2400, 3000)
            try:
                await asyncio.to_thread(_login, driver, svc.url, svc.password)
                js = "return window.__pedstream && document.querySelectorAll('.tile').length"
                await _until(lambda: (driver.execute_script(js) or 0) >= n, 60)
                await asyncio.sleep(3.0)  # warm-up: every tile drawing
                driver.execute_cdp_cmd("Performance.enable", {})
                snap = lambda: (driver.execute_script("return JSON.stringify(window.__pedstream)"),  # noqa: E731
                                driver.execute_cdp_cmd("Performance.getMetrics", {}), _browser_cpu(driver))
                s0, m0, b0 = await asyncio.to_thread(snap)
                c0, t0, busy0, bytes0 = time.process_time(), time.perf_counter(), st.busy_s, st.bytes_sent
                await asyncio.sleep(seconds)  # the measurement period of a real-time run
                wall = time.perf_counter() - t0
                cpu, busy, sent = time.process_time() - c0, st.busy_s - busy0, st.bytes_sent - bytes0
                s1, m1, b1 = await asyncio.to_thread(snap)
            finally:
                await asyncio.to_thread(driver.quit)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    j0, j1 = json.loads(s0), json.loads(s1)
    task_s = {m["name"]: m["value"] for m in m1["metrics"]}["TaskDuration"] - {m["name"]: m["value"] for m in m0["metrics"]}["TaskDuration"]
    lat = np.array(j1["latency"], float)
    res = {
        "beds": n, "seconds": round(wall, 1),
        "server_cpu_engine_only": round(engine_cpu, 3), "server_cpu_with_web": round(cpu / wall, 3),
        "server_cpu_web_added": round(cpu / wall - engine_cpu, 3),
        "server_cpu_web_added_per_bed": round((cpu / wall - engine_cpu) / n, 4),
        "station_busy_per_bed": round(busy / wall / n, 5),
        "bytes_per_s_per_bed": round(sent / wall / n), "kbit_per_s_per_bed": round(sent * 8 / wall / n / 1000, 1),
        "browser_animation_fps": round((j1["rafs"] - j0["rafs"]) / wall, 1),
        "waveform_frames_per_s": round((j1["frames"] - j0["frames"]) / wall, 1),
        "browser_cpu_all_processes": round((b1 - b0) / wall, 3), "browser_main_thread_busy": round(task_s / wall, 3),
        "display_latency_ms_p50": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "display_latency_ms_p95": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
    }
    print(json.dumps(res))
    return res


async def screenshots(cfg, session, out: Path) -> None:
    """The ward (demo records + two real MIT-BIH excerpts) and the bed view of x001, as PNGs."""
    from pedstream.monitor.engine import Engine
    from pedstream.transports.replay import ReplaySource
    from pedstream.web.server import WebService

    recs = [ROOT / "pedstream" / "assets" / "demo_records", ROOT / "tests" / "fixtures" / "real" / "aami" / "208",
            ROOT / "tests" / "fixtures" / "real" / "119"]
    svc = WebService(cfg, bind="127.0.0.1:0")
    src = ReplaySource.from_config(cfg, recs, events=svc.station.queue(), speed=1.0, loop=True)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        eng = Engine(cfg=cfg, session=session, sources=[src], sinks=[svc.station], alarms_dir=Path(tmp))
        async with eng:
            task = asyncio.create_task(svc.serve(eng))
            driver = await asyncio.to_thread(_driver, 1300, 720)
            try:
                await asyncio.to_thread(_login, driver, svc.url, svc.password)
                alarms = "return document.querySelectorAll('.tile.prio-medium').length"
                await _until(lambda: (driver.execute_script(alarms) or 0) >= 1, 60)
                await asyncio.sleep(4.0)  # let the sweeps fill the tiles
                await asyncio.to_thread(driver.save_screenshot, str(out / "web-ward.png"))
                await asyncio.to_thread(driver.set_window_size, 1300, 1900)
                await asyncio.to_thread(driver.get, svc.url + "bed/x001")
                await asyncio.sleep(14.0)  # a full sweep of the bed view (1300 px at 25 mm/s)
                await asyncio.to_thread(driver.save_screenshot, str(out / "web-bed.png"))
            finally:
                await asyncio.to_thread(driver.quit)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    print(f"wrote {out / 'web-ward.png'} and {out / 'web-bed.png'}")


def main() -> None:
    from pedstream.config import load_config
    from pedstream.monitor.assembly import open_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", default="8,64")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "web.json")
    ap.add_argument("--screenshots", type=Path, default=None, help="write the ward and bed view PNGs here instead")
    args = ap.parse_args()
    cfg = load_config(overrides=["alarms.strips=false"])
    session = open_model(cfg, None)
    if args.screenshots is not None:
        asyncio.run(screenshots(cfg, session, args.screenshots))
        return
    runs = [asyncio.run(one(cfg, session, int(n), args.seconds)) for n in args.beds.split(",")]
    result = {"command": "python -m bench.bench_web " + f"--beds {args.beds} --seconds {args.seconds:g}",
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                          "load_average_1_5_15_min_at_end": [round(x, 2) for x in os.getloadavg()]}, "runs": runs,
              "note": "CPU figures are fractions of one core; the machine was shared with other work while measured"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
