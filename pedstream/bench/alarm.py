"""``pedstream bench alarm``: runs ``bench/bench_alarm.py`` of the source checkout (its ``run(quick=...)``).

That script scores alarm episodes (time to alarm, false alarms per hour) with ``pedstream score
episodes`` on a fixed set of simulated records; it lives in ``bench/`` beside its results. It is found
through the checkout pedstream runs from (an editable install, ``make setup``); an installed wheel
has no ``bench/`` and the command says so in one line.
"""

from __future__ import annotations

import sys
from typing import Any

from pedstream.bench.common import machine_info, repo_root
from pedstream.errors import PedstreamError

__all__ = ["alarm_bench", "AlarmBenchUnavailable"]


class AlarmBenchUnavailable(PedstreamError):
    """``bench/bench_alarm.py`` cannot be found or imported."""

    exit_code = 2

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"pedstream bench alarm: {reason}")


def _load() -> Any:
    root = repo_root()
    if root is None or not (root / "bench" / "bench_alarm.py").is_file():
        raise AlarmBenchUnavailable("bench/bench_alarm.py not found: run it from a source checkout "
                                    "(pip install -e . / make setup)")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))  # bench/ is a folder of the checkout, importable as `bench`
    try:
        from bench import bench_alarm
    except ImportError as exc:
        raise AlarmBenchUnavailable(f"cannot import bench/bench_alarm.py: {exc}") from exc
    if not callable(getattr(bench_alarm, "run", None)):
        raise AlarmBenchUnavailable("bench/bench_alarm.py has no run(*, quick) function")
    return bench_alarm


def alarm_bench(*, quick: bool) -> dict[str, Any]:
    """The result of ``bench_alarm.run(quick=quick)`` with the machine block added."""
    result = dict(_load().run(quick=quick))
    result.setdefault("bench", "alarm")
    result.setdefault("quick", quick)
    result.setdefault("machine", machine_info())
    return result
