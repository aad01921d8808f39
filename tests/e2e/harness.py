"""End-to-end helpers: both emulators in the test process, ``syncd run`` in a subprocess.

The daemon is the real CLI (``python -m syncd run``) talking real HTTPS to the
Salesforce emulator and real HTTP to the SimZ emulator, storing into a real
SQLite file. It listens on ``127.0.0.1:0``; the harness reads the bound port
from the daemon's own "syncd started" log line, so there is no race for a port.

Typical use::

    with Harness(tmp_path, simz_emulator) as h:
        h.salesforce.add_records(leads(10))
        daemon = h.start()                      # waits for "syncd started"
        h.wait_until(lambda: len(h.simz.received()) == 10, "all leads sent")
        assert daemon.stop() == 0               # SIGTERM, wait for the exit

Every wait is "until a condition holds, with a generous deadline"; nothing
asserts how long something took.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from syncd.sandbox.salesforce import SalesforceEmulator
from syncd.sandbox.simz import SimzEmulator

#: Deadline for any condition the tests wait for (a noisy, shared machine).
WAIT = 60.0

SF_USERNAME = "integration@example.com"
SF_PASSWORD = "sf-password"
SF_TOKEN = "sf-token"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def clean_env(**extra: str) -> dict[str, str]:
    """The parent's environment without syncd's variables, plus ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SYNCD_", "SF_", "SIMZ_"))
    }
    env.update(extra)
    return env


def syncd_command(*args: str, config: Path | None = None) -> list[str]:
    """The real CLI's command line: ``python -m syncd ARGS [-c CONFIG]``.

    For a command a test starts itself with :class:`subprocess.Popen` (to kill it
    mid-way); one that runs to its end goes through :func:`run_syncd`.
    """
    command = [sys.executable, "-m", "syncd", *args]
    if config is not None:
        command += ["-c", str(config)]
    return command


def run_syncd(
    *args: str,
    cwd: Path | None = None,
    config: Path | None = None,
    stdin: str = "",
    user: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 180,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess: ``python -m syncd ARGS [-c CONFIG]``, output captured.

    The one way e2e tests run a one-shot command. ``cwd`` is the folder it runs
    in (``None``: the test process's own); ``stdin`` is closed after its text
    (empty: no TTY and no answer, as in a script); ``user`` sets ``$USER`` (the
    audit trail's actor); ``env`` replaces :func:`clean_env`'s environment;
    ``check`` raises :class:`subprocess.CalledProcessError` on a non-zero exit.
    """
    environment = clean_env() if env is None else dict(env)
    if user is not None:
        environment["USER"] = user
    return subprocess.run(
        syncd_command(*args, config=config),
        cwd=cwd,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among the lines of ``text`` (syncd's log lines); other lines are skipped."""
    lines = []
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            lines.append(entry)
    return lines


def minimal_config(url: str, log_level: str = "info") -> dict[str, Any]:
    """A small valid configuration whose database is ``url``: enough for ``syncd
    migrate`` and for a start that never reaches Salesforce or SimZ."""
    return {
        "database": {"url": url},
        "salesforce": {
            "auth": {
                "method": "password",
                "username": "integration@example.com",
                "password": "pw",
                "security_token": "tok",
            },
            "domain": "login",
        },
        "simz": {"base_url": "https://api.simz.com", "api_key": "key"},
        "syncs": [
            {
                "name": "web-leads",
                "object": "Lead",
                "schedule": {"every": "60s"},
                "agent": "agt_1",
                "mapping": {"phoneNumber": "Phone"},
                "phone": {"default_region": "US"},
            }
        ],
        "observability": {"log_format": "json", "log_level": log_level},
    }


def lead_records(count: int, start: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """Valid Lead records, each with its own fictional US number (up to 700 of them).

    Stamped two seconds ago unless ``SystemModstamp`` is given: a poll's window
    ends at the last whole second, so a record stamped in the current second is
    read only by the next poll, and a one-shot ``syncd once`` started at once
    (the CLI starts in well under a second) would not see it yet.
    """
    stamp = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    return [
        {
            "sobject": "Lead",
            "FirstName": f"Ada{n}",
            "LastName": "Tester",
            # 555-01xx lines are reserved for fiction; the area code makes each number unique.
            "Phone": f"+1 {202 + n // 100} 555 01{n % 100:02d}",
            "Company": "Acme",
            "SystemModstamp": stamp,
            **fields,
        }
        for n in range(start, start + count)
    ]


def http_get(url: str) -> tuple[int, str]:
    """GET ``url``; the status and body, also for 4xx/5xx answers."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


class Daemon:
    """A running ``syncd run`` subprocess and its log file."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, err_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.err_path = err_path
        started = wait_until(lambda: self.find("syncd started") or self._died(), "syncd started")
        if started is True:
            raise AssertionError(f"syncd run exited with {process.returncode}:\n{self.output()}")
        self.started: dict[str, Any] = started
        self.listen: str = started["listen"]

    def _died(self) -> bool:
        return self.process.poll() is not None

    @property
    def base_url(self) -> str:
        return f"http://{self.listen}"

    def get(self, path: str) -> tuple[int, str]:
        return http_get(self.base_url + path)

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        status, body = self.get(path)
        parsed: dict[str, Any] = json.loads(body)
        return status, parsed

    def logs(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far (non-JSON lines are skipped)."""
        return json_lines(self.log_path.read_text(encoding="utf-8", errors="replace"))

    def find(self, event: str, **fields: Any) -> dict[str, Any] | None:
        """The last log line with this event (and fields), if any."""
        for entry in reversed(self.logs()):
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                return entry
        return None

    def wait_log(self, event: str, timeout: float = WAIT, **fields: Any) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(
            lambda: self.find(event, **fields), f"log line {event!r} {fields}", timeout
        )
        return found

    def output(self) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text + self.err_path.read_text(encoding="utf-8", errors="replace")

    def send(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = WAIT) -> int:
        """Wait for the exit; kill and fail if it does not come."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"syncd did not exit within {timeout}s:\n{self.output()}"
            ) from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = WAIT) -> int:
        """Send ``signum`` (SIGTERM) and return the exit status."""
        if self.process.poll() is None:
            self.send(signum)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Harness:
    """Both emulators, a config file and the daemons started from it; all cleaned up on exit.

    ``simz`` is an already started :class:`SimzEmulator` (use the ``simz_emulator``
    fixture, which also checks every request against the vendor spec); the
    Salesforce emulator is started here, with its certificate under ``tmp``.
    """

    def __init__(self, tmp: Path, simz: SimzEmulator, *, agent: str = "agt_1") -> None:
        self.tmp = tmp
        self.simz = simz
        self.agent = agent
        self.salesforce = SalesforceEmulator(
            cert_dir=tmp / "sf-certs",
            username=SF_USERNAME,
            password=SF_PASSWORD,
            security_token=SF_TOKEN,
        )
        self.salesforce.start()
        self.db_path = tmp / "data" / "syncd.db"
        self.daemons: list[Daemon] = []
        self.config_path = self.write_config()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for daemon in self.daemons:
            daemon.kill()
        self.salesforce.stop()

    # ------------------------------------------------------------------ config

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A config for both emulators; ``overrides`` replace top-level sections or keys
        of the one sync when given as ``sync={...}``, ``simz={...}`` (merged)."""
        sync: dict[str, Any] = {
            "name": "web",
            "object": "Lead",
            "schedule": {"every": "1s"},
            "delivery": {"every": "1s"},
            "start_at": "2020-01-01T00:00:00Z",
            "lookback": "1m",
            "lag": "0s",
            "agent": self.agent,
            "mapping": {
                "phoneNumber": "Phone",
                "firstName": "FirstName",
                "lastName": "LastName",
                "customData": {"company": "Company"},
            },
            "phone": {"default_region": "US"},
            "rules": {"duplicate_phone_window": "0s"},
        }
        sync.update(overrides.pop("sync", {}))
        simz: dict[str, Any] = {
            "base_url": self.simz.url,
            "api_key": self.simz.api_key,
            "batch_size": 10,
            "requests_per_second": 1000,
            "timeout": {"connect": 5, "read": 30},
            "backoff": {"initial": "1s", "max": "2s"},
        }
        simz.update(overrides.pop("simz", {}))
        config: dict[str, Any] = {
            "database": {"url": f"sqlite:///{self.db_path}"},
            "salesforce": {
                "auth": {
                    "method": "password",
                    "username": SF_USERNAME,
                    "password": SF_PASSWORD,
                    "security_token": SF_TOKEN,
                },
                "login_url": self.salesforce.url,
                "ca_bundle": str(self.salesforce.ca_file),
                "pubsub_url": self.salesforce.pubsub_address,
            },
            "simz": simz,
            "syncs": [sync],
            "observability": {"listen": "127.0.0.1:0", "log_format": "json", "log_level": "info"},
            "daemon": {"shutdown_grace": "20s"},
        }
        config.update(overrides)
        return config

    def write_config(self, name: str = "config.yaml", **overrides: Any) -> Path:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(self.config(**overrides), sort_keys=False), "utf-8")
        self.config_path = path
        return path

    def cli(
        self,
        *args: str,
        stdin: str = "",
        user: str = "opuser",
        env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """:func:`run_syncd` on this harness's configuration, in its folder."""
        return run_syncd(
            *args,
            cwd=self.tmp,
            config=self.config_path,
            stdin=stdin,
            user=user,
            env=env,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ daemon

    def start(self, config_path: Path | None = None, *extra_args: str) -> Daemon:
        """Start ``syncd run`` and wait for its "syncd started" line."""
        number = len(self.daemons) + 1
        log_path = self.tmp / f"syncd-{number}.log"
        err_path = self.tmp / f"syncd-{number}.err"
        with log_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                syncd_command("run", *extra_args, config=config_path or self.config_path),
                cwd=self.tmp,
                env=clean_env(),
                stdout=out,
                stderr=err,
            )
        try:
            daemon = Daemon(process, log_path, err_path)
        except BaseException:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            raise
        self.daemons.append(daemon)
        return daemon

    # ------------------------------------------------------------------ database

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Run read-only SQL on the daemon's SQLite file."""
        connection = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return list(connection.execute(sql, tuple(params)))
        finally:
            connection.close()

    def lead_states(self) -> dict[str, str]:
        """Salesforce Id -> state of every lead of every sync."""
        if not self.db_path.exists():
            return {}
        try:
            return dict(self.query("SELECT salesforce_id, state FROM leads"))  # type: ignore[arg-type]
        except sqlite3.OperationalError:  # the schema is not there yet
            return {}

    def count_state(self, state: str) -> int:
        return sum(1 for value in self.lead_states().values() if value == state)

    def successful_polls(self) -> int:
        try:
            return int(self.query("SELECT COUNT(*) FROM poll_runs WHERE status = 'ok'")[0][0])
        except sqlite3.OperationalError:
            return 0

    def wait_until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        return wait_until(condition, what, timeout)
