"""The stream settings of the configuration: source, pubsub_url and delivery.linger."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from syncd.config import Config, ConfigError, parse_config
from syncd.config.models import change_event_topic

SYNC: dict[str, Any] = {"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}


def parse(sync: dict[str, Any] | None = None, **salesforce: Any) -> Config:
    document = {
        "salesforce": {"auth": {"method": "password", "username": "u", "password": "p"}}
        | salesforce,
        "simz": {"api_key": "k"},
        "syncs": [{**SYNC, **(sync or {})}],
    }
    return parse_config(yaml.safe_dump(document), "x.yaml", {})


class TestSource:
    def test_defaults(self) -> None:
        """Without a source section a sync polls; the stream defaults are documented ones."""
        config = parse()
        sync = config.syncs[0]
        assert sync.source.mode == "poll"
        assert not sync.streamed
        assert sync.topic == "/data/LeadChangeEvent"
        assert sync.source.reconcile_every == timedelta(minutes=10)
        assert sync.source.keepalive_timeout == timedelta(seconds=300)
        assert sync.poll_interval == timedelta(seconds=60)
        assert sync.delivery.linger == timedelta(milliseconds=100)
        assert config.salesforce.pubsub_url == "api.pubsub.salesforce.com:7443"

    def test_stream_mode_polls_at_the_reconcile_interval(self) -> None:
        """In stream mode the regular poll runs every reconcile_every."""
        sync = parse({"source": {"mode": "stream", "reconcile_every": "2m"}}).syncs[0]
        assert sync.streamed
        assert sync.poll_interval == timedelta(minutes=2)

    @pytest.mark.parametrize(
        "topic", ["/data/LeadChangeEvent", "/data/ChangeEvents", "/event/Lead_Ready__e"]
    )
    def test_topics_allowed(self, topic: str) -> None:
        """CDC topics, the all-entities topic and platform event topics are accepted."""
        assert parse({"source": {"mode": "stream", "topic": topic}}).syncs[0].topic == topic

    @pytest.mark.parametrize("topic", ["LeadChangeEvent", "/data/Lead", "/event/Ready", "/x/y"])
    def test_bad_topic(self, topic: str) -> None:
        """A topic that is not a Pub/Sub topic name is a clear configuration error."""
        with pytest.raises(ConfigError, match="not a Pub/Sub topic"):
            parse({"source": {"mode": "stream", "topic": topic}})

    def test_unknown_mode(self) -> None:
        """Only poll and stream are modes."""
        with pytest.raises(ConfigError, match="mode"):
            parse({"source": {"mode": "push"}})

    def test_custom_object_topic(self) -> None:
        """A custom object's change events are on /data/<Name>__ChangeEvent."""
        assert change_event_topic("Foo__c") == "/data/Foo__ChangeEvent"
        assert change_event_topic("Contact") == "/data/ContactChangeEvent"


class TestEndpointAndLinger:
    def test_pubsub_url(self) -> None:
        """pubsub_url is host:port; anything else is refused."""
        assert parse(pubsub_url="127.0.0.1:7443").salesforce.pubsub_url == "127.0.0.1:7443"
        with pytest.raises(ConfigError, match="host:port"):
            parse(pubsub_url="https://api.pubsub.salesforce.com")

    def test_linger_bounds(self) -> None:
        """delivery.linger takes a duration and refuses more than a minute."""
        sync = parse({"delivery": {"every": "5s", "linger": "250ms"}}).syncs[0]
        assert sync.delivery.linger == timedelta(milliseconds=250)
        with pytest.raises(ConfigError, match="linger"):
            parse({"delivery": {"linger": "5m"}})
