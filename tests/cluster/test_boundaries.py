"""The engine imports no ray: pedstream.cluster sits beside pedstream.monitor, never inside it."""

from __future__ import annotations

import subprocess
import sys


def test_the_engine_and_the_run_command_import_no_ray():
    code = ("import sys, pedstream.monitor.engine, pedstream.monitor.assembly, pedstream.transports.mqtt.source, pedstream.cli; "
            "print(sorted(m for m in ('ray', 'pedstream.cluster.supervisor') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
