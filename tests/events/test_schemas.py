"""The JSON Schemas shipped in the package (pedstream/schemas): valid Draft 2020-12 schemas, and they
agree with what pedstream writes and accepts (events, MQTT meta and JSON data messages)."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import numpy as np
import pytest

from pedstream.errors import PedstreamError
from pedstream.transports.mqtt.wire import decode_json, decode_meta, encode_json, encode_meta
from pedstream.events import SCHEMA_VERSION, MonitorEvent, event_schema


def _schema(name: str) -> dict:
    return json.loads((resources.files("pedstream") / "schemas" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", ["events.schema.json", "mqtt_meta.schema.json", "mqtt_data.schema.json"])
def test_shipped_schemas_are_valid(name):
    jsonschema.Draft202012Validator.check_schema(_schema(name))


def test_events_schema_matches_the_schema_version_and_rejects_undocumented_fields():
    s = event_schema()
    assert s["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    v = jsonschema.Draft202012Validator(s)
    ok = MonitorEvent(stream="s", kind="signal_loss", extra={"reason": "timeout"}).to_dict()
    v.validate(ok)
    with pytest.raises(jsonschema.ValidationError):
        v.validate({**ok, "surprise": 1})
    with pytest.raises(jsonschema.ValidationError):  # an alarm end must say why it ended
        v.validate(MonitorEvent(stream="s", kind="alarm_off", label="vt", extra={"priority": "high",
                                                                                 "alarm_id": "a"}).to_dict())


def test_mqtt_schemas_agree_with_the_wire_format():
    meta_v = jsonschema.Draft202012Validator(_schema("mqtt_meta.schema.json"))
    data_v = jsonschema.Draft202012Validator(_schema("mqtt_data.schema.json"))
    meta = encode_meta(fs=977.0, channels=["I", "II", "CS12"], units="mV", age_years=6.0, t0=12.5)
    meta_v.validate(json.loads(meta))
    decode_meta(meta, stream="x")
    data = encode_json(np.zeros((5, 3), dtype=np.float32), seq=3, first_sample=100, t=12.5)
    data_v.validate(json.loads(data))
    decode_json(data, n_channels=3, stream="x")
    for bad in ({"channels": ["I"]}, {"fs": 977.0, "channels": []}, {"fs": 977.0, "channels": ["I"], "dtype": "int8"}):
        assert not meta_v.is_valid(bad)
        with pytest.raises(PedstreamError):
            decode_meta(json.dumps(bad), stream="x")
    for bad in ({"seq": -1, "first_sample": 0, "t": 0.0, "data": [[1.0]]}, {"seq": 0, "first_sample": 0, "t": 0.0, "data": []}):
        assert not data_v.is_valid(bad)
        with pytest.raises(PedstreamError):
            decode_json(json.dumps(bad), n_channels=1, stream="x")
