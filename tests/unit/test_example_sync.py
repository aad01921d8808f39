"""The example sync shared by the demo, the benchmarks and the tests."""

from __future__ import annotations

from syncd.config.models import SyncConfig
from syncd.sandbox.example import example_sync


def test_is_a_valid_sync() -> None:
    sync = SyncConfig.model_validate(example_sync("web", agent="agt_1"))
    assert (sync.name, sync.object, sync.agent) == ("web", "Lead", "agt_1")
    assert sync.where == "LeadSource = 'Web' AND IsConverted = false"


def test_settings_replace_whole_keys_and_none_leaves_a_key_out() -> None:
    sync = example_sync("web", agent=None, where=None, phone={"default_region": "GB"})
    assert "agent" not in sync
    assert "where" not in sync
    assert sync["phone"] == {"default_region": "GB"}


def test_each_call_gives_a_fresh_dict() -> None:
    first = example_sync("a")
    first["mapping"]["customData"]["owner"] = "OwnerId"
    assert example_sync("a")["mapping"]["customData"]["owner"] == "Owner.Email"
