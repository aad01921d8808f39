"""``syncd check-config`` and ``syncd config-schema`` run as a user runs them: in a subprocess.

Each malformed file must give exit status 2, exactly one line that names the
key (or the line and column, for YAML syntax), and never a traceback.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from syncd.config import load_config
from syncd.config.loader import load_yaml, substitute
from tests.e2e.harness import clean_env, run_syncd

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config.example.yaml"

#: The environment config.example.yaml needs (SYNCD_DATABASE_URL left unset on purpose).
EXAMPLE_ENV = {
    "SF_USERNAME": "integration@example.com",
    "SF_PASSWORD": "sf-password-value",
    "SF_SECURITY_TOKEN": "sf-token-value",
    "SIMZ_API_KEY": "simz-key-value",
}


def base_config() -> dict[str, Any]:
    """A small valid configuration; each malformed case breaks exactly one thing in it."""
    return {
        "database": {"url": "sqlite:///./syncd.db"},
        "salesforce": {
            "auth": {
                "method": "password",
                "username": "integration@example.com",
                "password": "pw",
                "security_token": "tok",
            },
            "domain": "login",
        },
        "simz": {"base_url": "https://api.simz.com", "api_key": "key", "batch_size": 100},
        "syncs": [
            {
                "name": "web-leads",
                "object": "Lead",
                "schedule": {"every": "60s"},
                "start_at": "now",
                "lookback": "10m",
                "agent": "agt_1",
                "mapping": {"phoneNumber": "Phone", "firstName": "FirstName"},
                "phone": {"default_region": "US"},
            }
        ],
        "observability": {"log_format": "json", "log_level": "info"},
    }


def mutate(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], str]:
    """A case built by changing one thing in :func:`base_config`."""

    def build(_tmp: Path) -> str:
        config = copy.deepcopy(base_config())
        change(config)
        return yaml.safe_dump(config, sort_keys=False)

    return build


def raw(text: str) -> Callable[[Path], str]:
    """A case written as YAML text (for what a dict cannot express)."""
    return lambda _tmp: text


def base_yaml() -> str:
    return yaml.safe_dump(base_config(), sort_keys=False)


def sync0(config: dict[str, Any]) -> dict[str, Any]:
    sync: dict[str, Any] = config["syncs"][0]
    return sync


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted path (``syncs.0.agent``) in the config."""

    def change(config: dict[str, Any]) -> None:
        node: Any = config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        last = parts[-1]
        node[int(last) if last.isdigit() else last] = value

    return change


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        node: Any = config
        parts = path.split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        del node[parts[-1]]

    return change


def _duplicate_sync(config: dict[str, Any]) -> None:
    config["syncs"].append(copy.deepcopy(sync0(config)))


def _route_too(config: dict[str, Any]) -> None:
    sync0(config)["route"] = {"field": "Country", "values": {"US": "agt_us"}}


def _missing_secret_file(tmp: Path) -> str:
    config = base_config()
    config["salesforce"]["auth"]["password"] = f"${{file:{tmp}/no-such-secret}}"
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], str]
    expected: str  # the line after "<file>: " (or after "<file>:LINE:COL: " for YAML syntax)


CASES = [
    Case(
        "bad-yaml",
        raw("simz: {api_key: k\nsyncs: []\n"),
        "2:6: invalid YAML: expected ',' or '}', but got ':'",
    ),
    Case(
        "duplicate-yaml-key",
        raw(base_yaml() + "simz: {api_key: other}\n"),
        f"{len(base_yaml().splitlines()) + 1}:1: simz: duplicate key (first set on line 10)",
    ),
    Case(
        "duplicate-nested-key",
        raw(base_yaml().replace("  api_key: key\n", "  api_key: key\n  api_key: key2\n")),
        "13:3: simz.api_key: duplicate key (first set on line 12)",
    ),
    Case(
        "tab-indent",
        raw("simz:\n\tapi_key: x\n"),
        "2:1: invalid YAML: found character '\\t' that cannot start any token",
    ),
    Case("empty-file", raw(""), "the file is empty"),
    Case("top-level-list", raw("- a\n- b\n"), "the top level must be a mapping of sections"),
    Case(
        "wrong-type-batch-size",
        mutate(_set("simz.batch_size", "lots")),
        "simz.batch_size: input should be a valid integer, unable to parse string as an integer",
    ),
    Case(
        "negative-batch-size",
        mutate(_set("simz.batch_size", -5)),
        "simz.batch_size: input should be greater than or equal to 1",
    ),
    Case(
        "unknown-key",
        mutate(_set("simz.batch_sise", 10)),
        "simz.batch_sise: unknown key (check the spelling; see config.example.yaml)",
    ),
    Case(
        "unknown-section",
        mutate(_set("observabilty", {})),
        "observabilty: unknown key (check the spelling; see config.example.yaml)",
    ),
    Case(
        "missing-phone-mapping",
        mutate(_delete("syncs.0.mapping.phoneNumber")),
        "syncs[0].mapping.phoneNumber: field required",
    ),
    Case("missing-simz-section", mutate(_delete("simz")), "simz: field required"),
    Case("missing-api-key", mutate(_delete("simz.api_key")), "simz.api_key: field required"),
    Case(
        "missing-env-var",
        mutate(_set("simz.api_key", "${SYNCD_TEST_UNSET_VARIABLE}")),
        "simz.api_key: environment variable SYNCD_TEST_UNSET_VARIABLE is not set",
    ),
    Case(
        "bad-reference",
        mutate(_set("simz.api_key", "${1BAD}")),
        "simz.api_key: ${1BAD} is not a valid reference",
    ),
    Case(
        "missing-secret-file",
        _missing_secret_file,
        "salesforce.auth.password: cannot read secret file 'TMP/no-such-secret': "
        "No such file or directory",
    ),
    Case(
        "unclosed-reference",
        mutate(_set("simz.api_key", "${SIMZ_API_KEY")),
        "simz.api_key: ${ is never closed by } (write $${ for a literal ${)",
    ),
    Case(
        "bad-url",
        mutate(_set("simz.base_url", "api.simz.com")),
        "simz.base_url: input should be a valid URL, relative URL without a base",
    ),
    Case(
        "bad-database-scheme",
        mutate(_set("database.url", "mysql://db/syncd")),
        "database.url: unsupported database URL scheme 'mysql'; "
        "use sqlite:///path/to/file.db or postgresql+psycopg://user@host/db",
    ),
    Case(
        "sqlite-two-slashes",
        mutate(_set("database.url", "sqlite://syncd.db")),
        "database.url: a SQLite URL needs three slashes: sqlite:///relative.db or sqlite:////abs.db",
    ),
    Case(
        "sqlite-in-memory",
        mutate(_set("database.url", "sqlite:///:memory:")),
        "database.url: an in-memory SQLite database forgets what was sent when syncd stops, "
        "so leads could be sent twice; use a file: sqlite:///syncd.db",
    ),
    Case(
        "bad-database-port",
        mutate(_set("database.url", "postgresql+psycopg://syncd@db:5432x/syncd")),
        "database.url: not a valid database URL (expected e.g. "
        "postgresql+psycopg://user@host:5432/db); percent-encode special characters in the "
        "password",
    ),
    Case(
        "duplicate-sync-names",
        mutate(_duplicate_sync),
        "syncs: duplicate sync name 'web-leads'",
    ),
    Case(
        "no-syncs",
        mutate(_set("syncs", [])),
        "syncs: list should have at least 1 item after validation, not 0",
    ),
    Case(
        "bad-sync-name",
        mutate(_set("syncs.0.name", "Web Leads")),
        "syncs[0].name: 'Web Leads' is not a valid sync name: use lower case letters, digits, "
        "- and _ (at most 63 characters)",
    ),
    Case(
        "bad-cron",
        mutate(_set("syncs.0.schedule", {"cron": "*/5 25 * * *"})),
        "syncs[0].schedule: invalid cron expression '*/5 25 * * *': Error validating expression "
        "'25': the last value (25) is higher than the maximum value (23)",
    ),
    Case(
        "every-and-cron",
        mutate(_set("syncs.0.schedule", {"every": "60s", "cron": "* * * * *"})),
        "syncs[0].schedule: set exactly one of every and cron",
    ),
    Case(
        "bad-duration",
        mutate(_set("syncs.0.lookback", "ten minutes")),
        "syncs[0].lookback: 'ten minutes' is not a duration; use a number of seconds or "
        "30s, 10m, 24h, 1d",
    ),
    Case(
        "negative-duration",
        mutate(_set("syncs.0.lookback", -5)),
        "syncs[0].lookback: a duration cannot be negative",
    ),
    Case(
        "endless-duration",
        mutate(_set("syncs.0.lag", 10**30)),
        "syncs[0].lag: 1000000000000000000000000000000 is too long a duration (at most 3650d)",
    ),
    Case(
        "bad-region",
        mutate(_set("syncs.0.phone.default_region", "XX")),
        "syncs[0].phone.default_region: 'XX' is not a region phonenumbers knows (e.g. US, GB, DE)",
    ),
    Case(
        "agent-and-route",
        mutate(_route_too),
        "syncs[0]: set exactly one of agent and route",
    ),
    Case(
        "neither-agent-nor-route",
        mutate(_delete("syncs.0.agent")),
        "syncs[0]: set exactly one of agent and route",
    ),
    Case(
        "bad-start-at",
        mutate(_set("syncs.0.start_at", "yesterday")),
        "syncs[0].start_at: 'yesterday' is neither 'now' nor an ISO date such as "
        "2024-01-31T00:00:00Z",
    ),
    Case(
        "impossible-start-date",
        raw(base_yaml().replace("start_at: now", "start_at: 2024-13-01")),
        "syncs[0].start_at: '2024-13-01' is neither 'now' nor an ISO date such as "
        "2024-01-31T00:00:00Z",
    ),
    Case(
        "bad-field-path",
        mutate(_set("syncs.0.mapping.firstName", "First Name")),
        "syncs[0].mapping.firstName: 'First Name' is not a Salesforce field path (letters, "
        "digits, _ and dots, e.g. Phone or Owner.Email); write {const: ...} for a constant",
    ),
    Case(
        "bad-auth-method",
        mutate(_set("salesforce.auth.method", "oauth")),
        "salesforce.auth.method: 'oauth' is not one of 'password', 'jwt', 'client_credentials', "
        "'session'",
    ),
    Case(
        "jwt-without-key",
        mutate(
            _set(
                "salesforce.auth",
                {"method": "jwt", "username": "u@example.com", "consumer_key": "3MVG"},
            )
        ),
        "salesforce.auth: set exactly one of private_key_file and private_key",
    ),
    Case(
        "bad-log-format",
        mutate(_set("observability.log_format", "xml")),
        "observability.log_format: input should be 'auto', 'json' or 'console'",
    ),
    Case(
        "bad-listen",
        mutate(_set("observability.listen", "8080")),
        "observability.listen: '8080' is not host:port (e.g. 0.0.0.0:8080)",
    ),
    Case(
        "page-size-too-small",
        mutate(_set("salesforce.page_size", 10)),
        "salesforce.page_size: input should be greater than or equal to 200",
    ),
    Case(
        "backoff-max-below-initial",
        mutate(_set("simz.backoff", {"initial": "10s", "max": "5s"})),
        "simz.backoff: max must not be smaller than initial",
    ),
    Case(
        "agent-not-a-string",
        mutate(_set("syncs.0.agent", 123)),
        "syncs[0].agent: input should be a valid string",
    ),
    Case(
        "simz-plain-http",
        mutate(_set("simz.base_url", "http://api.simz.com")),
        "simz.base_url: http:// would send credentials in clear text; use https://, or set "
        "simz.allow_insecure_http: true (loopback hosts need neither)",
    ),
    Case(
        "salesforce-plain-http",
        mutate(_set("salesforce.login_url", "http://login.example.com")),
        "salesforce.login_url: http:// would send credentials in clear text; use https://, or "
        "set salesforce.allow_insecure_http: true (loopback hosts need neither)",
    ),
]


class TestMalformedConfigs:
    @pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
    def test_one_clear_line_and_exit_2(self, case: Case, tmp_path: Path) -> None:
        """A malformed file gives exit 2 and one line naming the key, without a traceback."""
        path = tmp_path / "x.yaml"
        path.write_text(case.build(tmp_path), encoding="utf-8")
        result = run_syncd("check-config", "-c", str(path), cwd=tmp_path)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert "Traceback" not in output
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        expected = case.expected.replace("TMP", str(tmp_path))
        assert lines == [f"{path}: {expected}"] or lines == [f"{path}:{expected}"], output

    def test_enough_cases(self) -> None:
        """The table covers at least 25 distinct ways to get a file wrong."""
        assert len({case.id for case in CASES}) == len(CASES) >= 25

    def test_missing_file(self, tmp_path: Path) -> None:
        """A file that does not exist is one line saying so and how to pass one."""
        result = run_syncd("check-config", "-c", "nope.yaml", cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            "nope.yaml: no such file (pass -c FILE or set SYNCD_CONFIG; see config.example.yaml)"
        ]

    def test_default_path_from_environment(self, tmp_path: Path) -> None:
        """Without -c the file named by SYNCD_CONFIG is read."""
        path = tmp_path / "elsewhere.yaml"
        path.write_text(base_yaml(), encoding="utf-8")
        result = run_syncd("check-config", cwd=tmp_path, env=clean_env(SYNCD_CONFIG=str(path)))
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"{path}: ok, 1 sync(s)")

    def test_several_problems_one_line_each(self, tmp_path: Path) -> None:
        """Independent problems are all reported, one line each."""
        config = base_config()
        config["simz"]["batch_size"] = 0
        sync0(config)["phone"]["default_region"] = "XX"
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        result = run_syncd("check-config", "-c", str(path), cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 2
        assert any(": simz.batch_size: " in line for line in lines)
        assert any(": syncs[0].phone.default_region: " in line for line in lines)


class TestExampleConfig:
    def test_example_passes(self, tmp_path: Path) -> None:
        """config.example.yaml is valid once its environment variables are set."""
        result = run_syncd(
            "check-config", "-c", str(EXAMPLE), cwd=tmp_path, env=clean_env(**EXAMPLE_ENV)
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines()[0] == f"{EXAMPLE}: ok, 1 sync(s)"
        assert "web-leads: Lead -> agt_123" in result.stdout

    def test_example_database_default(self) -> None:
        """Without SYNCD_DATABASE_URL the example uses syncd.db in the config file's folder."""
        config = load_config(EXAMPLE, env=EXAMPLE_ENV)
        assert config.database.url == f"sqlite:///{REPO}/syncd.db"  # beside the file
        assert config.simz.api_key.get_secret_value() == "simz-key-value"
        override = load_config(
            EXAMPLE, env={**EXAMPLE_ENV, "SYNCD_DATABASE_URL": "sqlite:////var/lib/syncd.db"}
        )
        assert override.database.url == "sqlite:////var/lib/syncd.db"

    def test_example_needs_its_variables(self, tmp_path: Path) -> None:
        """Each variable the example needs is reported, one line each, when unset."""
        result = run_syncd("check-config", "-c", str(EXAMPLE), cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 4
        for name in EXAMPLE_ENV:
            assert any(line.endswith(f"environment variable {name} is not set") for line in lines)
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The JSON Schema printed by ``syncd config-schema``."""
    result = run_syncd("config-schema", cwd=tmp_path_factory.mktemp("schema"))
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


class TestConfigSchema:
    @staticmethod
    def example_document() -> Any:
        """config.example.yaml after substitution, as the schema sees it."""
        problems: list[str] = []
        document = substitute(
            load_yaml(EXAMPLE.read_text(encoding="utf-8"), "x"), EXAMPLE_ENV, "x", problems
        )
        assert problems == []
        return document

    def test_schema_is_valid_json_schema(self, schema: dict[str, Any]) -> None:
        """The printed schema is itself a valid draft 2020-12 JSON Schema."""
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["title"] == "syncd configuration"

    def test_schema_accepts_example(self, schema: dict[str, Any]) -> None:
        """The schema validates config.example.yaml."""
        jsonschema.Draft202012Validator(schema).validate(self.example_document())

    def test_schema_rejects_unknown_key(self, schema: dict[str, Any]) -> None:
        """The schema rejects a misspelt key, like the loader does."""
        document = self.example_document()
        document["simz"]["batch_sise"] = 10
        with pytest.raises(jsonschema.ValidationError, match="batch_sise"):
            jsonschema.Draft202012Validator(schema).validate(document)

    def test_schema_rejects_wrong_type(self, schema: dict[str, Any]) -> None:
        """The schema rejects a value of the wrong type."""
        document = self.example_document()
        document["simz"]["batch_size"] = "lots"
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(schema).validate(document)


def command_paths() -> list[list[str]]:
    """Every command and sub-command of the CLI, as argument lists."""
    import click

    from syncd.entrypoints.cli import main

    found: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        context = click.Context(group)
        for name in sorted(group.list_commands(context)):
            command = group.get_command(context, name)
            found.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(main, [])
    return found


def write_config(folder: Path, **changes: Any) -> Path:
    """Write :func:`base_config` with top-level sections replaced by ``changes``."""
    config = {**base_config(), **changes}
    path = folder / "cfg.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


class TestCli:
    def test_version(self, tmp_path: Path) -> None:
        """--version prints the package version."""
        from syncd import __version__

        result = run_syncd("--version", cwd=tmp_path)
        assert result.returncode == 0
        assert result.stdout.strip() == f"syncd, version {__version__}"

    def test_module_help(self, tmp_path: Path) -> None:
        """python -m syncd --help lists the commands."""
        result = run_syncd("--help", cwd=tmp_path)
        assert result.returncode == 0
        for command in ("check-config", "config-schema", "migrate"):
            assert command in result.stdout

    def test_every_command_has_help(self, tmp_path: Path) -> None:
        """Every command and sub-command answers --help with a description, exit 0."""
        paths = command_paths()
        assert ["migrate"] in paths and ["check-config"] in paths
        for path in paths:
            result = run_syncd(*path, "--help", cwd=tmp_path)
            assert result.returncode == 0, (path, result.stderr)
            assert result.stdout.startswith("Usage: "), path
            assert "Traceback" not in result.stdout + result.stderr
            description = result.stdout.split("\n\n")[1].strip()
            assert len(description) > 10, (path, result.stdout)

    def test_unknown_command(self, tmp_path: Path) -> None:
        """An unknown command is a usage error (exit 2), not a traceback."""
        result = run_syncd("frobnicate", cwd=tmp_path)
        assert result.returncode == 2
        assert "No such command" in result.stderr and "Traceback" not in result.stderr


class TestMigrateCommand:
    def test_migrate_then_idempotent(self, tmp_path: Path) -> None:
        """migrate says what it did, creates the file, and a second run changes nothing."""
        config = write_config(tmp_path, database={"url": "sqlite:///./data/syncd.db"})
        first = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "migrated the database from empty to" in first.stdout
        assert (tmp_path / "data" / "syncd.db").is_file()
        second = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert second.returncode == 0, second.stderr
        assert "the database is up to date (revision" in second.stdout
        assert "migrated" not in second.stdout

    def test_migrate_postgres(self, postgres_url: str, tmp_path: Path) -> None:
        """migrate works against PostgreSQL too."""
        config = write_config(tmp_path, database={"url": postgres_url})
        result = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "migrated the database from empty to" in result.stdout

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("postgresql+psycopg://syncd:canary-db-pw@127.0.0.1:1/syncd", "Connection refused"),
            ("sqlite:////proc/no-such-dir/syncd.db", "No such file or directory"),
        ],
        ids=["unreachable-postgres", "sqlite-folder-impossible"],
    )
    def test_unusable_database(self, tmp_path: Path, url: str, reason: str) -> None:
        """An unusable database is one error line and exit 1, without a traceback."""
        config = write_config(tmp_path, database={"url": url})
        result = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        [line] = result.stderr.splitlines()
        assert line.startswith("syncd: cannot ") and reason in line
        assert "canary-db-pw" not in result.stdout + result.stderr

    def test_bad_config_exit_2(self, tmp_path: Path) -> None:
        """migrate with a broken config exits 2 with the config's error line."""
        config = write_config(tmp_path, simz={})
        result = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [f"{config}: simz.api_key: field required"]


class TestCliLogging:
    def test_json_lines_when_piped(self, tmp_path: Path) -> None:
        """With auto format and stdout not a terminal, log lines are JSON."""
        config = write_config(tmp_path, observability={"log_format": "auto"})
        result = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        [line] = [
            entry for entry in json_lines(result.stdout) if entry["logger"] == "syncd.migrate"
        ]
        assert line["event"] == "database migrated"
        assert line["level"] == "info"

    def test_console_when_asked(self, tmp_path: Path) -> None:
        """--log-format console renders console lines instead of JSON."""
        config = write_config(tmp_path, observability={"log_format": "json"})
        result = run_syncd("--log-format", "console", "migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json_lines(result.stdout) == []
        assert any(
            "database migrated" in line and "[info" in line for line in result.stdout.splitlines()
        )

    def test_level_from_config(self, tmp_path: Path) -> None:
        """observability.log_level: warning hides info lines."""
        config = write_config(tmp_path, observability={"log_level": "warning"})
        result = run_syncd("migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "database migrated" not in result.stdout
        assert "migrated the database from empty to" in result.stdout

    def test_library_lines_are_json(self, tmp_path: Path) -> None:
        """At debug, alembic's own lines come out as JSON too; SQLAlchemy's stay off."""
        config = write_config(tmp_path, observability={"log_format": "json"})
        result = run_syncd("--log-level", "debug", "migrate", "-c", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        other = [
            line
            for line in result.stdout.splitlines()
            if line.strip() and not line.startswith("migrated the database")
        ]
        parsed = [json.loads(line) for line in other]  # every other line is JSON
        loggers = {entry["logger"].split(".")[0] for entry in parsed}
        assert {"alembic", "syncd"} <= loggers
        assert "sqlalchemy" not in loggers  # its lines carry rows and parameters


class TestHeaderSafeSecrets:
    def test_api_key_with_newline_is_refused_without_showing_it(self, tmp_path: Path) -> None:
        """A SimZ key with a trailing newline: exit 2, one line naming the key, not its value."""
        config = base_config()
        config["simz"]["api_key"] = "${SIMZ_API_KEY}"
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        result = run_syncd(
            "check-config",
            "-c",
            str(path),
            cwd=tmp_path,
            env=clean_env(SIMZ_API_KEY="canary-simz-key-42\n"),
        )
        assert result.returncode == 2
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{path}: simz.api_key: contains a line feed (\\n) at the end")
        assert "canary-simz-key" not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr

    def test_file_secret_with_crlf_is_read_clean(self, tmp_path: Path) -> None:
        """A key file written with a Windows line ending is the key alone."""
        (tmp_path / "simz.key").write_bytes(b"canary-simz-key-42\r\n")
        config = base_config()
        config["simz"]["api_key"] = f"${{file:{tmp_path / 'simz.key'}}}"
        path = tmp_path / "x.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        result = run_syncd("check-config", "-c", str(path), cwd=tmp_path)
        assert result.returncode == 0, result.stderr


class TestRelativePaths:
    def test_paths_are_read_from_the_config_folder(self, tmp_path: Path) -> None:
        """Relative ${file:}, ca_bundle and SQLite paths start at the config file, not the cwd."""
        folder, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
        (folder / "secrets").mkdir(parents=True)
        elsewhere.mkdir()
        (folder / "secrets" / "simz.key").write_text("key-from-file\n", encoding="utf-8")
        (folder / "ca.pem").write_text("not used by check-config\n", encoding="utf-8")
        config = base_config()
        config["database"]["url"] = "sqlite:///./data/syncd.db"
        config["simz"]["api_key"] = "${file:secrets/simz.key}"
        config["simz"]["ca_bundle"] = "ca.pem"
        path = folder / "cfg.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        checked = run_syncd("check-config", "-c", str(path), cwd=elsewhere)
        assert checked.returncode == 0, checked.stderr
        migrated = run_syncd("migrate", "-c", str(path), cwd=elsewhere)
        assert migrated.returncode == 0, migrated.stderr
        assert (folder / "data" / "syncd.db").is_file()
        assert list(elsewhere.iterdir()) == []

    def test_missing_ca_bundle_is_a_config_error(self, tmp_path: Path) -> None:
        """A ca_bundle that is not there fails plain check-config: exit 2, one line."""
        path = write_config(
            tmp_path, simz={**base_config()["simz"], "ca_bundle": "certs/missing.pem"}
        )
        result = run_syncd("check-config", "-c", str(path), cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"{path}: simz.ca_bundle: no such file: {tmp_path}/certs/missing.pem "
            "(relative paths start at the config file's folder)"
        ]
