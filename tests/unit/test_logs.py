"""The logging chain: JSON or console lines, stdlib loggers included, secrets never printed."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any, Literal

import pytest
import structlog

from syncd.config import parse_config
from syncd.logs import REDACTED, bind_context, configure_logging, get_logger

CANARY_PASSWORD = "canary-Pw-7f3a9"
CANARY_KEY = 'canary"key\\0b12'  # quotes and backslashes: JSON escaping must not hide it
CONFIG = f"""
database:
  url: postgresql+psycopg://syncd:canary-db-pass@db.internal:5432/syncd
salesforce:
  auth: {{method: password, username: u@example.com, password: {CANARY_PASSWORD}}}
simz:
  api_key: '{CANARY_KEY}'
syncs: [{{name: web, agent: agt_1, mapping: {{phoneNumber: Phone}}}}]
"""
STDLIB_LOGGERS = ["alembic", "sqlalchemy.engine", "httpx", "apscheduler", "syncd.x"]


class TtyStream(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in [*STDLIB_LOGGERS, "sqlalchemy"]}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    configure_logging(secrets=())  # forget the canaries
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def config_secrets() -> list[str]:
    return parse_config(CONFIG, "x.yaml", env={}).secret_values()


def log_everything(secret: str) -> None:
    """Log ``secret`` every way syncd or a library could."""
    log = get_logger("syncd.test")
    log.info(f"event carrying {secret}")
    log.info("keyword", detail=secret)
    log.info("named field", password=secret)
    log.info("nested", request={"headers": {"X-Company-API-Key": secret, "n": [secret]}})
    log.info("positional %s", secret)
    try:
        raise RuntimeError(f"login failed for {secret}")
    except RuntimeError:
        log.exception("with traceback")
        logging.getLogger("httpx").error("stdlib traceback", exc_info=True)
    for name in STDLIB_LOGGERS:
        logging.getLogger(name).warning("from %s: %s", name, secret)
        logging.getLogger(name).warning(f"formatted by the caller: {secret}")


class TestRedaction:
    @pytest.mark.parametrize("fmt", ["json", "console"])
    @pytest.mark.parametrize("secret", [CANARY_PASSWORD, CANARY_KEY, "canary-db-pass"])
    def test_config_secret_never_printed(
        self, fmt: Literal["json", "console"], secret: str
    ) -> None:
        """A secret from the config never reaches the output, whichever logger printed it."""
        stream = io.StringIO()
        configure_logging(level="debug", fmt=fmt, stream=stream, secrets=config_secrets())
        log_everything(secret)
        output = stream.getvalue()
        assert secret not in output
        assert json.dumps(secret)[1:-1] not in output  # nor its JSON-escaped form
        assert output.count(REDACTED) >= 17
        assert "Traceback (most recent call last)" in output
        for name in STDLIB_LOGGERS:
            assert f"from {name}: {REDACTED}" in output

    def test_credential_named_keys_are_masked(self) -> None:
        """A value under a credential-like key is masked even when not a configured secret."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream)
        get_logger("t").info(
            "login", password="hunter2", session_id="00Dxx!AQ", authorization="Bearer x"
        )
        [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert line["password"] == line["session_id"] == line["authorization"] == REDACTED

    def test_ordinary_keys_are_kept(self) -> None:
        """Ids and counts are not masked: they are what operators need."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream, secrets=config_secrets())
        get_logger("t").info(
            "batch", sync="web", agent="agt_1", batch_id=7, leads=100, credential="ab12cd34"
        )
        [line] = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert (line["sync"], line["agent"], line["batch_id"], line["leads"]) == (
            "web",
            "agt_1",
            7,
            100,
        )
        assert line["credential"] == "ab12cd34"

    def test_secrets_can_change(self) -> None:
        """Configuring again replaces the secret list (a reloaded config)."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream, secrets=["first-secret"])
        configure_logging(fmt="json", stream=stream, secrets=["second-secret"])
        get_logger("t").info("both first-secret and second-secret")
        assert "first-secret" in stream.getvalue()
        assert "second-secret" not in stream.getvalue()


def lines_of(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


class TestFormat:
    def test_json_when_not_a_terminal(self) -> None:
        """auto renders one JSON object per line when the stream is not a terminal."""
        stream = io.StringIO()
        configure_logging(fmt="auto", stream=stream)
        get_logger("syncd.poll").info("poll finished", sync="web", fetched=3)
        [line] = [json.loads(text) for text in lines_of(stream)]
        assert line["event"] == "poll finished"
        assert (line["level"], line["logger"], line["sync"], line["fetched"]) == (
            "info",
            "syncd.poll",
            "web",
            3,
        )
        assert line["timestamp"].endswith("Z")

    def test_console_on_a_terminal(self) -> None:
        """auto renders human-readable lines on a terminal."""
        stream = TtyStream()
        configure_logging(fmt="auto", stream=stream)
        get_logger("syncd.poll").info("poll finished", sync="web")
        [line] = lines_of(stream)
        assert "poll finished" in line
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)

    def test_console_when_asked(self) -> None:
        """fmt=console renders console lines even when the stream is not a terminal."""
        stream = io.StringIO()
        configure_logging(fmt="console", stream=stream)
        get_logger("syncd.poll").info("poll finished", sync="web")
        [line] = lines_of(stream)
        assert "[info" in line and "sync=web" in line
        assert "\x1b[" not in line  # no colours when the stream is not a terminal

    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_stdlib_loggers_use_the_same_chain(self, fmt: Literal["json", "console"]) -> None:
        """alembic, sqlalchemy, httpx and apscheduler lines are rendered like syncd's own."""
        stream = io.StringIO()
        configure_logging(fmt=fmt, stream=stream)
        for name in STDLIB_LOGGERS:
            logging.getLogger(name).warning("hello from %s", name)
        lines = lines_of(stream)
        assert len(lines) == len(STDLIB_LOGGERS)
        for name, line in zip(STDLIB_LOGGERS, lines, strict=True):
            if fmt == "json":
                parsed = json.loads(line)
                assert (parsed["logger"], parsed["level"]) == (name, "warning")
                assert parsed["event"] == f"hello from {name}"
            else:
                assert "[warning" in line and f"[{name}]" in line

    def test_level(self) -> None:
        """Lines below the configured level are dropped, from structlog and stdlib alike."""
        stream = io.StringIO()
        configure_logging(level="warning", fmt="json", stream=stream)
        get_logger("syncd.a").info("hidden")
        logging.getLogger("syncd.b").info("hidden too")
        get_logger("syncd.a").warning("shown")
        logging.getLogger("syncd.b").error("shown too")
        assert [json.loads(line)["event"] for line in lines_of(stream)] == ["shown", "shown too"]

    def test_noisy_libraries_quiet_at_info(self) -> None:
        """Library INFO chatter is hidden at info and shown at debug."""
        stream = io.StringIO()
        configure_logging(level="info", fmt="json", stream=stream)
        logging.getLogger("alembic.runtime").info("migrating")
        assert lines_of(stream) == []
        configure_logging(level="debug", fmt="json", stream=stream)
        logging.getLogger("alembic.runtime").info("migrating")
        assert [json.loads(line)["event"] for line in lines_of(stream)] == ["migrating"]

    @pytest.mark.parametrize(
        "name",
        [
            "sqlalchemy.engine.Engine",
            "sqlalchemy.pool",
            "sqlalchemy.orm",
            "httpx",
            "httpcore.http11",
            "urllib3.connectionpool",
            "simple_salesforce.api",
        ],
    )
    def test_personal_data_loggers_quiet_at_debug(self, name: str) -> None:
        """Row, parameter and body logging stays off even at debug; warnings still show."""
        stream = io.StringIO()
        configure_logging(level="debug", fmt="json", stream=stream)
        logging.getLogger(name).debug("Row ('+12025550100', 'Ada')")
        logging.getLogger(name).info("[generated] ('+12025550100',)")
        logging.getLogger(name).warning("pool overflow")
        assert [json.loads(line)["event"] for line in lines_of(stream)] == ["pool overflow"]

    @pytest.mark.parametrize("fmt", ["console", "json"])
    def test_control_characters_never_raw(self, fmt: Literal["json", "console"]) -> None:
        """A vendor's terminal escape in a logged value is written escaped, in both formats."""
        stream = io.StringIO()
        configure_logging(fmt=fmt, stream=stream)
        hostile = "SimZ said \x1b]0;pwned\x07 \x9b2J \u202eevil\rok"
        get_logger("syncd.t").warning("vendor error", error=hostile)
        logging.getLogger("syncd.u").warning("stdlib %s", hostile)
        text = stream.getvalue()
        assert text.count("\n") == 2 and text.endswith("\n")
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", text), repr(text)
        if fmt == "json":
            events = [json.loads(line) for line in lines_of(io.StringIO(text))]
            assert events[0]["error"] == hostile  # the text itself is kept

    def test_configure_twice_one_handler(self) -> None:
        """Configuring again replaces the handler instead of printing every line twice."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream)
        configure_logging(fmt="json", stream=stream)
        logging.getLogger("syncd.x").warning("once")
        assert len(lines_of(stream)) == 1

    def test_bind_context(self) -> None:
        """bind_context adds values to every line and clears the previous unit's values."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream)
        bind_context(sync="web", agent="agt_1")
        get_logger("t").info("first")
        bind_context(sync="other")
        get_logger("t").info("second")
        first, second = (json.loads(line) for line in lines_of(stream))
        assert (first["sync"], first["agent"]) == ("web", "agt_1")
        assert second["sync"] == "other" and "agent" not in second

    def test_get_logger_binds_initial_values(self) -> None:
        """get_logger(name, **values) binds values to that logger only."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream)
        get_logger("t", worker="w1").info("bound")
        get_logger("t").info("plain")
        bound, plain = (json.loads(line) for line in lines_of(stream))
        assert bound["worker"] == "w1" and "worker" not in plain

    def test_json_survives_odd_values(self) -> None:
        """Values JSON cannot encode are rendered as text, not a crash."""
        stream = io.StringIO()
        configure_logging(fmt="json", stream=stream)
        odd: Any = {1, 2}
        get_logger("t").info("odd", value=odd, raw=b"bytes")
        [line] = [json.loads(text) for text in lines_of(stream)]
        assert line["event"] == "odd"


class TestEscapedSecrets:
    @pytest.mark.parametrize("fmt", ["json", "console"])
    def test_escaped_forms_are_cut(self, fmt: Literal["json", "console"]) -> None:
        """A secret with a newline, a quote and a non-ASCII letter is cut however it was escaped."""
        secret = "k3y'é\n\"t4il"
        stream = io.StringIO()
        configure_logging(level="info", fmt=fmt, stream=stream, secrets=[secret])
        log = get_logger("syncd.test")
        log.info("raw", detail=f"header value {secret}")
        log.info("repr", detail=f"invalid header value {secret!r}")
        log.info("bytes repr", detail=f"invalid header value {secret.encode()!r}")
        log.info("json", detail=f"body {json.dumps({'v': secret})}")
        logging.getLogger("httpx").warning("stdlib %r", secret)
        output = stream.getvalue()
        assert output.count(REDACTED) >= 5, output
        for leaked in ("k3y", "t4il"):
            assert leaked not in output, output
