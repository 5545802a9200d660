"""The engine's read-only views (a mixin of :class:`~pedstream.monitor.engine.Engine`): the dashboard's
snapshot and the end-of-run summary.

Split out of ``engine.py``; it reads the engine's state (``status``, ``streams``, ``batcher``, ``sources``,
counters and latency records) and changes none of it but the rows' displayed figures.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pedstream.events import EngineSnapshot, percentile
from pedstream.monitor.release import released_count
from pedstream.transports.base import ingest_summary, source_notices

__all__ = ["EngineViews"]


class EngineViews:
    """Mixin: ``snapshot()`` for the dashboard, ``summary()`` at the end of a run."""

    def snapshot(self) -> EngineSnapshot:
        now = time.monotonic()
        recent = [t for t in self._win_times if now - t <= 5.0]
        span = min(5.0, max(now - self.t_start, 1e-3))
        for sid, st in self.status.items():
            pipe = self._pipe(sid)
            if pipe is not None:
                st.quality = pipe.quality
                st.hr = pipe.heart_rate
            st.dropped = self.batcher.dropped.get(sid, 0)
            st.queue = self.batcher.queue_depth(sid)
            st.rejected, st.dropped_samples = self._ingest_counters(sid)
            if st.ectopy == "on":
                self._update_rates(sid, pipe, st)
        bs = list(self.batcher.batch_sizes)
        return EngineSnapshot(
            streams=list(self.status.values()),
            windows_per_s=len(recent) / span,
            batch_mean=float(np.mean(bs)) if bs else None,
            infer_p50=percentile(self.batcher.infer_ms, 50), infer_p99=percentile(self.batcher.infer_ms, 99),
            e2e_p50=percentile(self.e2e_ms, 50), e2e_p99=percentile(self.e2e_ms, 99),
            queue_depth=self.batcher.pending, banner=self.banner, windows_total=self.windows_total,
            dropped_total=sum(self.batcher.dropped.values()), alarms_total=self.counts.get("alarm_on", 0),
            uptime_s=now - self.t_start, alarms_active=sum(len(t.active) for t in self.trackers.values()),
            extra={"notices": source_notices(self.sources)},  # e.g. a broker that does not answer
        )

    def _ingest_counters(self, sid: str) -> tuple[int, int]:
        """(messages rejected by the stream's source, samples dropped by its source and the engine)."""
        s = self.streams.get(sid)
        rejected, dropped = 0, 0 if s is None else s.ingest_dropped
        for src in self.sources:
            counters = getattr(src, "stream_counters", None)
            c = counters(sid) if callable(counters) else None
            if c:
                rejected += int(c.get("rejected_messages", 0))
                dropped += int(c.get("dropped_samples", 0))
        return rejected, dropped

    def summary(self) -> dict[str, Any]:
        """End-of-run figures (the CLI prints them)."""
        return {
            "streams": len(self.status),
            "windows_classified": self.windows_total,
            "alarms": self.counts.get("alarm_on", 0),
            "alarms_active": sum(len(t.active) for t in self.trackers.values()),
            "errors": self.counts.get("error", 0),
            "signal_loss": self.counts.get("signal_loss", 0),
            "dropped_windows": sum(self.batcher.dropped.values()),
            "rejected_messages": sum(src.totals()["rejected_messages"] for src in self.sources if hasattr(src, "totals")),
            "dropped_samples": sum(src.totals()["dropped_samples"] for src in self.sources if hasattr(src, "totals"))
            + sum(self.ingest_dropped.values()),
            "watchdog_reports": self.watchdog_reports,
            "streams_released": released_count(self),
            **ingest_summary(self.sources),  # what the sources refused, by cause, and whom they charged
            "e2e_latency_ms_p50": percentile(self.e2e_ms, 50),
            "e2e_latency_ms_p99": percentile(self.e2e_ms, 99),
            "inference_ms_p50": percentile(self.batcher.infer_ms, 50),
            "inference_ms_p99": percentile(self.batcher.infer_ms, 99),
            "batch_mean": float(np.mean(self.batcher.batch_sizes)) if self.batcher.batch_sizes else None,
            "strips": len(self.strips),
            **({"beats_classified": self.beats_total,
                "dropped_beats": sum(self.beat_batcher.dropped.values())} if self.beat_batcher is not None else {}),
        }
