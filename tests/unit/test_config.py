"""The configuration loader and models, called in-process with plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncd.config import Config, ConfigError, load_config, parse_config
from syncd.config.types import format_duration, parse_duration

BASE: dict[str, Any] = {
    "salesforce": {
        "auth": {"method": "password", "username": "u@example.com", "password": "${SF_PW}"},
    },
    "simz": {"api_key": "${SIMZ_KEY}"},
    "syncs": [{"name": "web", "agent": "agt_1", "mapping": {"phoneNumber": "Phone"}}],
}
ENV = {"SF_PW": "pw-from-env", "SIMZ_KEY": "key-from-env"}


def parse(document: dict[str, Any] | str, env: dict[str, str] | None = None) -> Config:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    return parse_config(text, "x.yaml", ENV if env is None else env)


def with_api_key(value: str) -> dict[str, Any]:
    return {**BASE, "simz": {"api_key": value}}


class TestSubstitution:
    def test_variable(self) -> None:
        """${VAR} is replaced by the environment variable's value."""
        config = parse(BASE)
        assert config.simz.api_key.get_secret_value() == "key-from-env"
        assert config.salesforce.auth.password.get_secret_value() == "pw-from-env"  # type: ignore[union-attr]

    def test_inside_text(self) -> None:
        """A reference may sit inside a longer string, several times."""
        config = parse(with_api_key("a-${SF_PW}-b-${SIMZ_KEY}"))
        assert config.simz.api_key.get_secret_value() == "a-pw-from-env-b-key-from-env"

    @pytest.mark.parametrize(
        ("env", "expected"),
        [({}, "fallback"), ({"K": ""}, "fallback"), ({"K": "set"}, "set")],
        ids=["unset", "empty", "set"],
    )
    def test_default(self, env: dict[str, str], expected: str) -> None:
        """${VAR:-default} gives the default when the variable is unset or empty."""
        config = parse(with_api_key("${K:-fallback}"), env={**ENV, **env})
        assert config.simz.api_key.get_secret_value() == expected

    def test_default_may_be_a_url(self) -> None:
        """A default may itself contain colons and slashes (a database URL)."""
        document = {**BASE, "database": {"url": "${DB:-sqlite:///./data/syncd.db}"}}
        assert parse(document).database.url == "sqlite:///./data/syncd.db"

    def test_unset_variable(self) -> None:
        """An unset ${VAR} is an error naming the key and the variable."""
        with pytest.raises(ConfigError) as caught:
            parse(with_api_key("${NOPE}"))
        assert caught.value.lines == ["x.yaml: simz.api_key: environment variable NOPE is not set"]

    def test_file_secret(self, tmp_path: Path) -> None:
        """${file:PATH} is the file's content without its trailing newline."""
        secret = tmp_path / "api_key"
        secret.write_text("from-a-file\n", encoding="utf-8")
        config = parse(with_api_key(f"${{file:{secret}}}"))
        assert config.simz.api_key.get_secret_value() == "from-a-file"

    def test_missing_file_secret(self, tmp_path: Path) -> None:
        """A secret file that cannot be read is an error naming the key and the file."""
        with pytest.raises(ConfigError) as caught:
            parse(with_api_key(f"${{file:{tmp_path}/missing}}"))
        [line] = caught.value.lines
        assert line.startswith(f"x.yaml: simz.api_key: cannot read secret file '{tmp_path}/")

    def test_escape(self) -> None:
        """$${ writes a literal ${ and is not read as a reference."""
        config = parse(with_api_key("$${NOT_A_VAR}-$${SIMZ_KEY}"))
        assert config.simz.api_key.get_secret_value() == "${NOT_A_VAR}-${SIMZ_KEY}"

    def test_unclosed_reference(self) -> None:
        """A ${ that is never closed is an error, not a literal that slips through."""
        with pytest.raises(ConfigError, match=r"simz\.api_key: \$\{ is never closed"):
            parse(with_api_key("${SIMZ_KEY"))

    def test_value_cannot_change_structure(self) -> None:
        """A substituted value that looks like YAML stays one string."""
        config = parse(BASE, env={**ENV, "SIMZ_KEY": "x\nsyncs: []\n{a: b}"})
        assert config.simz.api_key.get_secret_value() == "x\nsyncs: []\n{a: b}"
        assert len(config.syncs) == 1

    def test_keys_are_not_substituted(self) -> None:
        """References in keys are left alone, so they are reported as unknown keys."""
        with pytest.raises(ConfigError, match=r"\$\{SIMZ_KEY\}: unknown key"):
            parse({**BASE, "${SIMZ_KEY}": 1})


class TestYaml:
    def test_merge_key_may_override(self) -> None:
        """A key that overrides one brought in by a << merge is not a duplicate."""
        text = yaml.safe_dump(BASE) + (
            "observability:\n  <<: {log_level: debug, log_format: json}\n  log_level: warning\n"
        )
        config = parse(text)
        assert config.observability.log_level == "warning"
        assert config.observability.log_format == "json"

    def test_duplicate_key_is_reported_with_path(self) -> None:
        """A key written twice is an error naming its full path and both lines."""
        text = "simz:\n  api_key: a\n  api_key: b\n"
        with pytest.raises(ConfigError) as caught:
            parse(text)
        assert caught.value.lines == [
            "x.yaml:3:3: simz.api_key: duplicate key (first set on line 2)"
        ]

    def test_dates_stay_strings_until_the_model(self) -> None:
        """An unquoted YAML date is parsed by the model as midnight UTC."""
        text = yaml.safe_dump(BASE).replace("name: web", "name: web\n  start_at: 2024-01-31")
        assert parse(text).syncs[0].start_at == datetime(2024, 1, 31, tzinfo=UTC)


class TestModels:
    def test_defaults(self) -> None:
        """A minimal file gets the safe defaults: start now, SQLite, 60 s polls, 10 min lookback."""
        config = parse(BASE)
        sync = config.syncs[0]
        assert sync.start_at == "now"
        assert config.database.url == "sqlite:///./syncd.db"
        assert sync.schedule.every == timedelta(seconds=60)
        assert sync.lookback == timedelta(minutes=10)
        assert sync.rules.respect_do_not_call is True
        assert config.simz.resend_uncertain is False
        assert sync.rules.do_not_call_callable_values == ["0", "false", "n", "no"]

    def test_callable_values_are_folded(self) -> None:
        """DoNotCall callable values are compared trimmed and case-insensitively."""
        rules = {"do_not_call_field": "Status__c", "do_not_call_callable_values": [" OK ", "Ok"]}
        document = {**BASE, "syncs": [{**BASE["syncs"][0], "rules": rules}]}
        assert parse(document).syncs[0].rules.do_not_call_callable_values == ["ok"]

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("2024-01-31T00:00:00Z", datetime(2024, 1, 31, tzinfo=UTC)),
            ("2024-01-31T10:00:00+02:00", datetime(2024, 1, 31, 8, tzinfo=UTC)),
            ("2024-01-31T10:00:00", datetime(2024, 1, 31, 10, tzinfo=UTC)),
        ],
    )
    def test_start_at_dates_are_aware(self, value: str, expected: datetime) -> None:
        """start_at dates are aware; a date without an offset is read as UTC."""
        document = {**BASE, "syncs": [{**BASE["syncs"][0], "start_at": value}]}
        start_at = parse(document).syncs[0].start_at
        assert isinstance(start_at, datetime)
        assert start_at.tzinfo is not None
        assert start_at == expected

    def test_route_agents(self) -> None:
        """A routed sync lists every agent it may send to, the default last, once each."""
        sync = {
            "name": "web",
            "route": {
                "field": "Country",
                "values": {"US": "agt_us", "CA": "agt_us", "GB": "agt_uk"},
                "default": "agt_intl",
            },
            "mapping": {"phoneNumber": "Phone"},
        }
        config = parse({**BASE, "syncs": [sync]})
        assert config.sync("web").agents == ["agt_us", "agt_uk", "agt_intl"]

    def test_field_refs(self) -> None:
        """A string is a field path (relationships too) and {const: v} a constant."""
        sync = {
            **BASE["syncs"][0],
            "mapping": {
                "phoneNumber": "Phone",
                "email": "Owner.Email",
                "campaignType": {"const": "web"},
            },
        }
        mapping = parse({**BASE, "syncs": [sync]}).syncs[0].mapping
        assert mapping.email is not None and mapping.email.path == "Owner.Email"
        assert mapping.campaignType is not None and mapping.campaignType.is_const
        assert mapping.campaignType.const == "web"

    def test_cron_interval(self) -> None:
        """A cron schedule's nominal interval is the gap between its fire times."""
        sync = {**BASE["syncs"][0], "schedule": {"cron": "*/5 * * * *"}}
        schedule = parse({**BASE, "syncs": [sync]}).syncs[0].schedule
        assert schedule.nominal_interval == timedelta(minutes=5)

    def test_secret_values(self) -> None:
        """Every secret, including a database URL's password (encoded and decoded), is listed."""
        document = {
            **BASE,
            "database": {"url": "postgresql+psycopg://syncd:p%40ss-word@db:5432/syncd"},
        }
        secrets = parse(document).secret_values()
        assert {"pw-from-env", "key-from-env", "p%40ss-word", "p@ss-word"} <= set(secrets)
        assert "" not in secrets

    def test_load_config_reads_file(self, tmp_path: Path) -> None:
        """load_config reads the file and names it in its errors."""
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({**BASE, "extra": 1}), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_config(path, env=ENV)
        assert caught.value.lines == [
            f"{path}: extra: unknown key (check the spelling; see config.example.yaml)"
        ]


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [(90, 90), (1.5, 1.5), ("90", 90), ("500ms", 0.5), ("30s", 30), ("10m", 600),
         ("24h", 86400), ("1d", 86400), (" 2 h ", 7200), ("0", 0)],
    )  # fmt: skip
    def test_parse(self, text: Any, seconds: float) -> None:
        """Numbers are seconds; ms, s, m, h and d suffixes scale them."""
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize(
        "text", ["ten", "10 minutes", "-5s", -1, True, float("nan"), float("inf"), 10**30, None]
    )
    def test_reject(self, text: Any) -> None:
        """Words, negative, infinite, absurdly long and non-numeric durations are refused."""
        with pytest.raises(ValueError):
            parse_duration(text)

    @pytest.mark.parametrize(
        ("seconds", "text"), [(86400, "1d"), (7200, "2h"), (600, "10m"), (90, "90s"), (0.5, "0.5s")]
    )
    def test_format_round_trips(self, seconds: float, text: str) -> None:
        """Durations print in the largest whole unit and parse back to the same value."""
        assert format_duration(timedelta(seconds=seconds)) == text
        assert parse_duration(text) == timedelta(seconds=seconds)
