"""Message schemas: committed JSON Schemas match the code, and config parsing is strict."""

from __future__ import annotations

import json

from edgevid.messages import Prediction, Status, json_schemas

from conftest import ROOT


def test_committed_json_schemas_match_the_message_models():
    for name, schema in json_schemas().items():
        committed = json.loads((ROOT / "schemas" / name).read_text())
        assert committed == schema, f"schemas/{name} is stale: run python -m edgevid.messages schemas"


def test_messages_carry_type_and_version_for_subscribers():
    assert Prediction.model_json_schema()["properties"]["schema_version"]["const"] == 5
    assert set(Status.model_json_schema()["required"]) >= {"seq", "uptime_s", "sources"}
