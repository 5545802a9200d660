"""Data messages and bundles of the MQTT source (a mixin of :class:`~pedstream.transports.mqtt.source.MQTTSource`):
bundle authorisation (:func:`~pedstream.transports.mqtt.admission.bundle_may_carry`), the per-stream
ingest budgets (messages and bytes before decoding, samples once decoded), decoding, the duplicate
publisher guard, sequence order, and the conversion to millivolt chunks."""

from __future__ import annotations

import time

import numpy as np

from pedstream.errors import PayloadError
from pedstream.transports.mqtt.admission import bundle_may_carry
from pedstream.transports.mqtt.bundle import split_bundle
from pedstream.transports.mqtt.lifecycle import TrackedStream as _Stream
from pedstream.transports.mqtt.wire import DataPayload, check_stream_id, decode_data, topic_for
from pedstream.events import Chunk, ChunkReceived, StreamFailed

__all__ = ["DataHandling"]

_MAX_PENDING = 256  # data messages held per stream while its meta is unknown


class DataHandling:
    """Bundles and data messages of the tracked streams (see the module docstring)."""

    def _on_bundle(self, bid: str, payload: bytes, now: float) -> None:
        """A bundle (:mod:`pedstream.transports.mqtt.bundle`): its structure checked whole (else one error of
        the bundle id, counted in ``rejected_bundles``), then each frame its publisher may carry
        (:func:`~pedstream.transports.mqtt.admission.bundle_may_carry`) handled as its stream's data; the
        others are refused and charged to the bundle's publisher, never to the stream they name."""
        try:
            check_stream_id(bid)
            frames = split_bundle(payload, max_message_bytes=self.limits.max_message_bytes,
                                  max_frames=self.max_streams, bundle=bid)
        except PayloadError as exc:
            self.rejected_bundles += 1
            self.emit_error(bid[:64], f"bundle rejected: {exc}")
            return
        allow = self._allow
        refused: list[str] = []
        for sid, frame in frames:
            if allow is not None and sid not in allow:
                continue
            st = self._streams.get(sid)
            if not bundle_may_carry(bid, sid, None if st is None else st.meta):
                refused.append(sid)
                continue
            try:
                self._route(sid, "data", frame, now)
            except (Exception, RecursionError, MemoryError) as exc:  # noqa: BLE001 - one frame, one stream
                self._handler_failed(sid, exc)
        if refused:
            pub = self.book.get(bid, now)
            pub.unauthorised += len(refused)
            names = ", ".join(sorted(set(refused))[:5]) + (" ..." if len(set(refused)) > 5 else "")
            self.emit_error(bid, f"publisher {bid}: {len(refused)} bundle frame(s) refused for stream(s) {names}: a "
                                 f"bundle on {topic_for(self.prefix, bid, 'bundle')} may carry only stream {bid} and "
                                 f"streams whose meta names \"publisher\": \"{bid}\" ({pub.unauthorised} so far)")

    def _over_budget(self, sid: str, st: _Stream, raw: bytes, now: float, n_samples: int = 0) -> bool:
        """Charge one message against the stream's budgets (messages and bytes before decoding, then the
        samples actually decoded: ``n_samples`` > 0); True (rejected, counted) when over."""
        if st.msg_bucket is None or st.byte_bucket is None or st.sample_bucket is None:
            return False
        if n_samples:
            ok = st.sample_bucket.take(n_samples, now)
        else:
            ok = st.msg_bucket.take(1, now) and st.byte_bucket.take(len(raw), now)
        if ok:
            return False
        st.rejected_messages += 1
        st.dropped_samples += n_samples
        if st.flagged is None:
            st.flagged = "over its ingest budget"
        self.emit_error(sid, f"over its ingest budget ({self.max_messages_per_s:g} messages/s, "
                             f"{self.budget_factor:g} x its declared {st.meta.fs if st.meta else 0:g} Hz): "
                             f"messages dropped ({st.rejected_messages} so far)")
        return True

    def _on_data(self, sid: str, st: _Stream, raw: bytes, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(raw) > self.limits.max_message_bytes:  # rejected unread
            st.rejected_messages += 1
            self.emit_error(sid, f"size: message is {len(raw)} bytes, over the limit of "
                                 f"{self.limits.max_message_bytes}")
            return
        if st.meta is None:
            if len(st.pending) >= _MAX_PENDING:
                st.pending.popleft()
                st.dropped_before_meta += 1
            st.pending.append((now, raw))
            self._request_meta(sid, st, now)  # its retained meta, again (refused, parked out or withdrawn)
            return
        if self._over_budget(sid, st, raw, now):
            return
        try:
            payload = decode_data(raw, meta=st.meta, stream=sid, limits=self.limits)
        except PayloadError as exc:
            self._undecodable(sid, st, exc)
            return
        if self._over_budget(sid, st, raw, now, payload.values.shape[0]):
            return
        if not st.guard.check(payload.seq, now):  # a second publisher's sequence: dropped, counted
            st.rejected_messages += 1
            if st.guard.newly_detected:
                self.emit(StreamFailed(sid, "duplicate publisher: a second sequence of data messages arrives for this "
                                           "stream id; the first publisher stays monitored, the other's messages "
                                           "are dropped (counted)"))
            return
        st.last_data = now
        st.data_seen = True
        self._announce(sid, st)
        for p in st.tracker.push(payload.seq, payload):
            self._deliver(sid, st, p)

    def _undecodable(self, sid: str, st: _Stream, exc: PayloadError) -> None:
        st.errors += 1
        st.rejected_messages += 1
        if exc.field in ("dtype", "n_channels") or (exc.field == "data" and "expected" in str(exc)):
            if st.mismatch_reported:  # data that does not fit the meta: once per meta session
                return
            st.mismatch_reported = True
            st.flagged = "data does not match its meta"
            self.emit(StreamFailed(sid, f"{exc} (data does not match the meta; further such messages "
                                       "are counted, not reported, until the meta changes)"))
            return
        self.emit_error(sid, str(exc))

    def _deliver(self, sid: str, st: _Stream, p: DataPayload) -> None:
        meta = st.meta
        if meta is None or p.values.shape[1] != meta.n_channels:
            return
        # = payload_to_mv(p, meta), bit for bit, with the factors and the sample offsets made once per meta/size
        if st.int16_factors is None or st.offsets_meta is not meta:
            st.int16_factors, st.offsets, st.offsets_meta = meta.mv_factors * meta.scale, None, meta
        f = st.int16_factors if p.encoding == "binary" and p.values.dtype == np.int16 else meta.mv_factors
        data = np.multiply(p.values, f).astype(np.float32)  # (n, n_ch) float32 mV
        n = p.values.shape[0]
        if st.offsets is None or st.offsets.shape[0] != n:
            st.offsets = np.arange(n, dtype=np.float64) / meta.fs
        ts = p.t + st.offsets  # (n,)
        self.emit(ChunkReceived(Chunk(stream_id=sid, data=data, timestamps=ts, first_index=p.first_sample,
                                      seq=p.seq)))
