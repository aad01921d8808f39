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

    @pytest.mark.parametrize(
        ("content", "expected"),
        [("k\r\n", "k"), ("k\n", "k"), ("k", "k"), ("k \n", "k ")],
        ids=["crlf", "lf", "none", "space-kept"],
    )
    def test_file_secret_loses_one_newline(
        self, tmp_path: Path, content: str, expected: str
    ) -> None:
        """${file:} drops exactly one trailing \\n or \\r\\n, nothing else."""
        secret = tmp_path / "password"
        secret.write_bytes(content.encode())
        document = {**BASE, "salesforce": {"auth": {**BASE["salesforce"]["auth"]}}}
        document["salesforce"]["auth"]["password"] = f"${{file:{secret}}}"
        config = parse(document)
        assert config.salesforce.auth.password.get_secret_value() == expected  # type: ignore[union-attr]

    def test_file_secret_second_newline_is_refused(self, tmp_path: Path) -> None:
        """A key file ending in two newlines keeps one, which the header check refuses."""
        secret = tmp_path / "api_key"
        secret.write_bytes(b"sk-live-0123\n\n")
        with pytest.raises(ConfigError) as caught:
            parse(with_api_key(f"${{file:{secret}}}"))
        [line] = caught.value.lines
        assert line.startswith("x.yaml: simz.api_key: contains a line feed (\\n) at the end")
        assert "sk-live-0123" not in line

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
        config = parse(BASE, env={**ENV, "SF_PW": "x\nsyncs: []\n{a: b}"})
        password = config.salesforce.auth.password  # type: ignore[union-attr]
        assert password.get_secret_value() == "x\nsyncs: []\n{a: b}"
        assert len(config.syncs) == 1

    def test_keys_are_not_substituted(self) -> None:
        """References in keys are left alone, so they are reported as unknown keys."""
        with pytest.raises(ConfigError, match=r"\$\{SIMZ_KEY\}: unknown key"):
            parse({**BASE, "${SIMZ_KEY}": 1})


class TestHeaderSafeSecrets:
    @pytest.mark.parametrize(
        ("value", "problem"),
        [
            ("sk-0123\n", "a line feed (\\n) at the end"),
            ("sk-01\r23", "a carriage return (\\r) at position 6"),
            ("sk-01\x0023", "the character U+0000 at position 6"),
            ("sk-01é23", "the character U+00E9 at position 6"),
            (" sk-0123", "the character U+0020 at position 1"),
        ],
        ids=["lf", "cr", "nul", "non-ascii", "leading-space"],
    )
    def test_api_key_must_be_header_safe(self, value: str, problem: str) -> None:
        """A SimZ key that cannot go into a header is one line, naming the problem, not the key."""
        with pytest.raises(ConfigError) as caught:
            parse(BASE, env={**ENV, "SIMZ_KEY": value})
        [line] = caught.value.lines
        assert line.startswith(f"x.yaml: simz.api_key: contains {problem}; ")
        assert "sk-0" not in line and "23" not in line

    def test_session_id_must_be_header_safe(self) -> None:
        """The Salesforce session id goes into the Authorization header: same check."""
        document = {
            **BASE,
            "salesforce": {
                "auth": {
                    "method": "session",
                    "session_id": "${SF_PW}",
                    "instance_url": "https://x.my.salesforce.com",
                }
            },
        }
        with pytest.raises(ConfigError) as caught:
            parse(document, env={**ENV, "SF_PW": "00D!sess\n"})
        assert caught.value.lines == [
            "x.yaml: salesforce.auth.session_id: contains a line feed (\\n) at the end; it is "
            "sent in an HTTP header, which takes visible ASCII only (check the secret's source; "
            "the value is not shown)"
        ]

    def test_printable_key_with_punctuation_passes(self) -> None:
        """Quotes, backslashes and inner spaces are visible ASCII and stay allowed."""
        config = parse(BASE, env={**ENV, "SIMZ_KEY": 'a"b\\c d~'})
        assert config.simz.api_key.get_secret_value() == 'a"b\\c d~'


class TestInsecureHttp:
    @pytest.mark.parametrize(
        ("section", "key", "url"),
        [
            ("simz", "base_url", "http://api.simz.com"),
            ("salesforce", "login_url", "http://login.example.com"),
            ("simz", "base_url", "http://10.0.0.5:8080"),
        ],
        ids=["simz", "salesforce-login", "private-ip"],
    )
    def test_http_is_refused(self, section: str, key: str, url: str) -> None:
        """An http:// URL that carries credentials off the machine is refused, naming the key."""
        document: dict[str, Any] = {**BASE, section: {**BASE[section], key: url}}
        with pytest.raises(ConfigError) as caught:
            parse(document)
        assert caught.value.lines == [
            f"x.yaml: {section}.{key}: http:// would send credentials in clear text; use "
            f"https://, or set {section}.allow_insecure_http: true (loopback hosts need neither)"
        ]

    def test_session_instance_url(self) -> None:
        """A session's instance_url gets the Authorization header: same rule."""
        auth = {"method": "session", "session_id": "s", "instance_url": "http://x.example.com"}
        with pytest.raises(ConfigError, match=r"salesforce\.auth: instance_url: http://"):
            parse({**BASE, "salesforce": {"auth": auth}})

    @pytest.mark.parametrize(
        "host", ["127.0.0.1:8080", "127.9.9.9", "[::1]:9000", "localhost:8443", "LOCALHOST"]
    )
    def test_loopback_is_allowed(self, host: str) -> None:
        """Loopback hosts (the emulators, a local sidecar) may use http://."""
        document = {
            **BASE,
            "simz": {**BASE["simz"], "base_url": f"http://{host}"},
            "salesforce": {**BASE["salesforce"], "login_url": f"http://{host}"},
        }
        config = parse(document)
        assert config.simz.base_url.scheme == "http"

    def test_explicit_opt_in(self) -> None:
        """allow_insecure_http: true in the section lets http:// through."""
        document = {
            **BASE,
            "simz": {
                **BASE["simz"],
                "base_url": "http://simz.internal",
                "allow_insecure_http": True,
            },
            "salesforce": {
                **BASE["salesforce"],
                "login_url": "http://sf.internal",
                "allow_insecure_http": True,
            },
        }
        config = parse(document)
        assert str(config.simz.base_url) == "http://simz.internal/"
        assert config.salesforce.allow_insecure_http is True


class TestRelativePaths:
    def test_load_config_resolves_against_the_file(self, tmp_path: Path) -> None:
        """load_config reads relative paths from the file's folder, whatever the cwd."""
        (tmp_path / "sf-ca.pem").write_text("x", encoding="utf-8")
        (tmp_path / "keys").mkdir()
        (tmp_path / "keys" / "jwt.pem").write_text("x", encoding="utf-8")
        (tmp_path / "pw").write_text("pw-from-file\n", encoding="utf-8")
        document = {
            **BASE,
            "database": {"url": "sqlite:///state/syncd.db"},
            "salesforce": {
                "auth": {
                    "method": "jwt",
                    "username": "u@example.com",
                    "consumer_key": "ck",
                    "private_key_file": "keys/jwt.pem",
                },
                "ca_bundle": "./sf-ca.pem",
            },
            "simz": {"api_key": "${file:pw}"},
        }
        path = tmp_path / "syncd.yaml"
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        config = load_config(path, env=ENV)
        assert config.database.url == f"sqlite:///{tmp_path}/state/syncd.db"
        assert config.salesforce.ca_bundle == f"{tmp_path}/sf-ca.pem"
        assert config.salesforce.auth.private_key_file == f"{tmp_path}/keys/jwt.pem"  # type: ignore[union-attr]
        assert config.simz.api_key.get_secret_value() == "pw-from-file"

    def test_absolute_paths_are_kept(self, tmp_path: Path) -> None:
        """Absolute paths and a PostgreSQL URL are left as written."""
        ca = tmp_path / "ca.pem"
        ca.write_text("x", encoding="utf-8")
        url = "postgresql+psycopg://u@db.internal:5432/syncd"
        document = {
            **BASE,
            "database": {"url": url},
            "simz": {"api_key": "k", "ca_bundle": str(ca)},
        }
        path = tmp_path / "sub" / "syncd.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(document), encoding="utf-8")
        config = load_config(path, env=ENV)
        assert config.database.url == url
        assert config.simz.ca_bundle == str(ca)


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

    def test_simz_total_timeout(self) -> None:
        """timeout.total defaults below the shutdown grace and may not undercut connect."""
        config = parse(BASE)
        assert config.simz.timeout.total == 20
        assert config.simz.timeout.total < config.daemon.shutdown_grace.total_seconds()
        custom = {**BASE, "simz": {"api_key": "k", "timeout": {"connect": 2, "total": 45}}}
        assert parse(custom).simz.timeout.total == 45
        short = {**BASE, "simz": {"api_key": "k", "timeout": {"connect": 5, "total": 2}}}
        with pytest.raises(ConfigError, match="total must not be smaller than connect"):
            parse(short)

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
