"""What a source delivers: chunk and stream descriptions, the events' stream ids and the layout check the
engine uses to keep a pipeline when a stream comes back."""

from __future__ import annotations

import numpy as np

from pedstream.events import (
    Chunk,
    ChunkReceived,
    Source,
    StreamAdded,
    StreamFailed,
    StreamInfo,
    StreamLost,
)


def _info(**kw) -> StreamInfo:
    base = {"stream_id": "sim001", "source": "mqtt", "fs": 977.0, "channel_names": ["II", "V1", "CS12"],
            "units": ["mV", "uV", "mV"]}
    base.update(kw)
    return StreamInfo(**base)  # type: ignore[arg-type]


def test_a_chunk_counts_its_samples_and_an_info_its_channels() -> None:
    c = Chunk("sim001", np.zeros((25, 3), np.float32), np.arange(25) / 977.0, first_index=100, seq=4)
    assert c.n_samples == 25 and c.first_index == 100 and c.seq == 4
    assert Chunk("x", np.zeros((0, 3), np.float32), np.zeros(0), 0).n_samples == 0
    info = _info()
    assert info.n_channels == 3 and not info.units_assumed and info.age_years is None and info.meta == {}


def test_same_layout_means_same_rate_and_channels_in_the_same_order() -> None:
    info = _info()
    assert info.same_layout(_info())
    assert info.same_layout(_info(units=["uV", "uV", "uV"], age_years=4.0, meta={"session": "b"}))
    assert info.same_layout(_info(channel_names=("II", "V1", "CS12")))  # a tuple from a decoder
    assert not info.same_layout(None)
    assert not info.same_layout(_info(fs=500.0))
    assert not info.same_layout(_info(channel_names=["V1", "II", "CS12"]))
    assert not info.same_layout(_info(channel_names=["II", "V1"]))


def test_every_event_names_its_stream() -> None:
    info = _info(stream_id="bed7")
    chunk = Chunk("bed7", np.ones((2, 3), np.float32), np.zeros(2), 0)
    events = [StreamAdded(info), ChunkReceived(chunk), StreamLost("bed7", "no data"), StreamFailed("bed7", "bad")]
    assert [e.stream_id for e in events] == ["bed7"] * 4


def test_the_source_interface_is_checked_by_shape() -> None:
    class Minimal:
        events = None

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc):
            return None

    assert isinstance(Minimal(), Source)
    assert not isinstance(object(), Source)
