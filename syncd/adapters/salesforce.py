"""The Salesforce source: log in, run the poll query, stream its pages.

simple-salesforce runs the REST calls; the login is done here, because
simple-salesforce builds its own ``https://{domain}.salesforce.com`` login
URLs and cannot reach a ``login_url`` override (the emulator), and because it
only re-logs-in by itself for some credential logins. Every call path (the
first query and every ``nextRecordsUrl`` page) gets one fresh login and one
retry on ``INVALID_SESSION_ID``.

Errors come out as three kinds the poller handles differently:
:class:`SalesforceLimitExceeded` (pause polling), :class:`SalesforceUnavailable`
(network, 5xx, unreadable answers: try again later) and
:class:`SalesforceQueryError` / :class:`SalesforceAuthError` /
:class:`SalesforceProtocolError` (a problem an operator must look at).

Refused logins back off (:class:`LoginBackoff`): after a refusal no login is
sent again before a delay that doubles up to :data:`LOGIN_BACKOFF_MAX`, so a
wrong password cannot lock the integration user out. The state lives in the
process's memory, shared by the sources :func:`syncd.bootstrap.bootstrap`
builds; a restart starts afresh.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession
from simple_salesforce.util import call_salesforce

from syncd.adapters.lean_imports import jwt_module
from syncd.config.models import (
    ClientCredentialsAuth,
    JwtAuth,
    PasswordAuth,
    SalesforceConfig,
    SessionAuth,
)
from syncd.domain.backoff import BackoffPolicy, exponential
from syncd.logs import get_logger
from syncd.metrics import SALESFORCE_API_USAGE, SALESFORCE_CALLS

log = get_logger(__name__)

_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
#: A ``nextRecordsUrl`` syncd follows: a plain path under ``/services/data/``.
_NEXT_RECORDS_PATH = re.compile(r"/services/data/[A-Za-z0-9._~\-]+(?:/[A-Za-z0-9._~\-]+)*")
_CONCURRENT_LIMIT = re.compile(r"concurrent", re.I)
_DAILY_LIMIT = re.compile(r"TotalRequests", re.I)
#: The first wait after a refused login; it doubles with every further refusal.
LOGIN_BACKOFF_FIRST = timedelta(minutes=1)
#: The longest wait between two logins after refusals.
LOGIN_BACKOFF_MAX = timedelta(minutes=30)
_LOGIN_POLICY = BackoffPolicy(LOGIN_BACKOFF_FIRST, LOGIN_BACKOFF_MAX)


class SalesforceSourceError(Exception):
    """Base of every error the source raises; ``str()`` is one readable line."""


class SalesforceUnavailable(SalesforceSourceError):
    """Salesforce could not be reached or answered something unreadable (try later)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


LimitKind = Literal["concurrent", "daily"]


class SalesforceLimitExceeded(SalesforceSourceError):
    """REQUEST_LIMIT_EXCEEDED: too many requests at once, or the daily allowance is used up."""

    def __init__(self, message: str, kind: LimitKind = "daily") -> None:
        super().__init__(message)
        self.kind: LimitKind = kind


class SalesforceQueryError(SalesforceSourceError):
    """Salesforce refused the query (MALFORMED_QUERY, INVALID_FIELD, ...)."""


class SalesforceAuthError(SalesforceSourceError):
    """The login failed, or a session that cannot be renewed expired."""


class SalesforceProtocolError(SalesforceSourceError):
    """Salesforce answered something syncd refuses to follow (e.g. an off-host page URL)."""


def limit_kind(message: str, usage: tuple[int, int] | None) -> LimitKind:
    """Which REQUEST_LIMIT_EXCEEDED this is: Salesforce's message, else the usage header.

    ``ConcurrentPerOrgLongTxn Limit exceeded`` / ``Number of concurrent requests``
    pass within seconds; ``TotalRequests Limit exceeded`` lasts until the rolling
    24-hour usage falls. Without a telling message, usage below the limit means
    the concurrent one; anything unknown counts as the daily one (the safe side).
    """
    if _CONCURRENT_LIMIT.search(message):
        return "concurrent"
    if _DAILY_LIMIT.search(message):
        return "daily"
    if usage is not None and usage[1] > 0 and usage[0] < usage[1]:
        return "concurrent"
    return "daily"


def next_records_path(value: object) -> str:
    """``value`` if it is a plain path under ``/services/data/``; else raise.

    The session token goes with the request, so nothing that could name
    another host (a scheme, ``//``, ``@``, a backslash, ``..``) is followed.
    """
    text = value if isinstance(value, str) else ""
    segments = text.split("/")
    if _NEXT_RECORDS_PATH.fullmatch(text) is None or any(s in (".", "..") for s in segments):
        shown = repr(value)[:120]
        raise SalesforceProtocolError(
            f"Salesforce answered a nextRecordsUrl that is not a path under /services/data/ "
            f"on the instance; it was not followed: {shown}"
        )
    return text


class LoginBackoff:
    """Refused logins in a row and when the next one may be sent (thread-safe).

    Logins of the sources sharing it go one at a time (:attr:`turn`): two threads
    starting at once (the first poll and the org check, say) would otherwise both
    pass :meth:`check` before either is refused, and a wrong password would be
    sent twice, which is how users get locked out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Held for a whole login attempt, from the check to the recorded answer.
        self.turn = threading.Lock()
        self.refusals = 0
        self.next_attempt: datetime | None = None
        self.reason: str | None = None

    def check(self, now: datetime) -> None:
        """Raise :class:`SalesforceAuthError` while the next login must wait."""
        with self._lock:
            if self.next_attempt is None or now >= self.next_attempt:
                return
            message = self._describe()
        raise SalesforceAuthError(message)

    def refused(self, reason: str, now: datetime) -> None:
        with self._lock:
            self.refusals += 1
            delay = exponential(self.refusals, _LOGIN_POLICY)
            self.next_attempt = now + delay
            self.reason = reason
            message = self._describe()
        log.error("salesforce login refused; backing off", refusals=self.refusals, error=message)

    def succeeded(self) -> None:
        with self._lock:
            self.refusals, self.next_attempt, self.reason = 0, None, None

    def problem(self, now: datetime) -> str | None:
        """Why logins are held back now, with the next attempt; None when they are not."""
        with self._lock:
            if self.next_attempt is None or now >= self.next_attempt:
                return None
            return self._describe()

    def _describe(self) -> str:
        assert self.next_attempt is not None
        when = self.next_attempt.astimezone(UTC).isoformat(timespec="seconds")
        return (
            f"login held back until {when} after {self.refusals} refused login(s); "
            f"last: {self.reason}"
        )


def login_base_url(config: SalesforceConfig) -> str:
    """``login_url`` if set, else ``https://{domain}.salesforce.com``."""
    if config.login_url is not None:
        return str(config.login_url).rstrip("/")
    return f"https://{config.domain}.salesforce.com"


def _soap_text(body: bytes, tag: str) -> str | None:
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == tag and element.text:
            return element.text.strip()
    return None


def _error_content(exc: SalesforceError) -> tuple[str, str]:
    """Salesforce's errorCode and message from a REST error answer."""
    content: Any = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("errorCode", "")), str(content[0].get("message", ""))
    if isinstance(content, dict):
        return str(content.get("errorCode", "")), str(content.get("message", ""))
    return "", str(content)[:300]


class SalesforceSource:
    """Reads records from one org; one instance per process, not thread-safe."""

    def __init__(
        self,
        config: SalesforceConfig,
        login_backoff: LoginBackoff | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.login_backoff = login_backoff or LoginBackoff()
        self.now = now
        self._http = requests.Session()
        # The machine's REQUESTS_CA_BUNDLE would override verify: trust only the config.
        self._http.trust_env = False
        self._http.verify = config.ca_bundle or True
        # Every answer's Sforce-Limit-Info, error answers included (they tell the limits apart).
        self._http.hooks["response"].append(self._note_usage)
        self._sf: Salesforce | None = None
        self._usage: tuple[int, int] | None = None
        self._last_size: int | None = None
        self._logins = 0
        self._daily_limit_hit = False
        self._session: tuple[str, str] | None = None

    # ------------------------------------------------------------------ login

    def _post(self, url: str, **kwargs: Any) -> requests.Response:
        SALESFORCE_CALLS.labels(kind="login").inc()
        try:
            return self._http.post(url, timeout=self.config.timeout, **kwargs)
        except requests.RequestException as exc:
            raise SalesforceUnavailable(f"login to {url} failed: {type(exc).__name__}") from exc

    def _token_login(self, data: dict[str, str]) -> tuple[str, str]:
        url = f"{login_base_url(self.config)}/services/oauth2/token"
        response = self._post(url, data=data, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 500:
            raise SalesforceUnavailable(f"login answered HTTP {response.status_code}")
        if response.status_code != 200 or not isinstance(body, dict):
            error = body.get("error", "") if isinstance(body, dict) else ""
            detail = body.get("error_description", "") if isinstance(body, dict) else ""
            raise SalesforceAuthError(
                f"OAuth login refused (HTTP {response.status_code}): {error} {detail}".strip()
            )
        token, instance = body.get("access_token"), body.get("instance_url")
        if not isinstance(token, str) or not isinstance(instance, str):
            raise SalesforceUnavailable("OAuth login answer lacks access_token or instance_url")
        return token, instance

    def _password_login(self, auth: PasswordAuth) -> tuple[str, str]:
        url = f"{login_base_url(self.config)}/services/Soap/u/{self.config.api_version}"
        secret = auth.password.get_secret_value() + auth.security_token.get_secret_value()
        body = f"""<?xml version="1.0" encoding="utf-8" ?>
<env:Envelope xmlns:xsd="http://www.w3.org/2001/XMLSchema"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    xmlns:env="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:urn="urn:partner.soap.sforce.com">
  <env:Header>
    <urn:CallOptions><urn:client>syncd</urn:client></urn:CallOptions>
  </env:Header>
  <env:Body>
    <urn:login>
      <urn:username>{escape(auth.username)}</urn:username>
      <urn:password>{escape(secret)}</urn:password>
    </urn:login>
  </env:Body>
</env:Envelope>"""
        headers = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": "login"}
        response = self._post(url, data=body.encode(), headers=headers)
        if response.status_code >= 500 and _soap_text(response.content, "faultcode") is None:
            raise SalesforceUnavailable(f"SOAP login answered HTTP {response.status_code}")
        session_id = _soap_text(response.content, "sessionId")
        server_url = _soap_text(response.content, "serverUrl")
        if response.status_code != 200 or not session_id or not server_url:
            code = _soap_text(response.content, "exceptionCode") or str(response.status_code)
            message = _soap_text(response.content, "exceptionMessage") or _soap_text(
                response.content, "faultstring"
            )
            raise SalesforceAuthError(f"SOAP login refused: {code}: {message or 'no message'}")
        parts = urlsplit(server_url)
        return session_id, f"{parts.scheme}://{parts.netloc}"

    def _jwt_login(self, auth: JwtAuth) -> tuple[str, str]:
        if auth.private_key is not None:
            key = auth.private_key.get_secret_value()
        else:
            assert auth.private_key_file is not None
            try:
                key = Path(auth.private_key_file).read_text()
            except OSError as exc:
                raise SalesforceAuthError(f"cannot read the JWT private key: {exc}") from exc
        claims = {
            "iss": auth.consumer_key,
            "sub": auth.username,
            "aud": login_base_url(self.config),
            "exp": int((datetime.now(UTC) + timedelta(minutes=3)).timestamp()),
        }
        jwt = jwt_module()
        try:
            assertion = jwt.encode(claims, key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            raise SalesforceAuthError(f"cannot sign the JWT: {type(exc).__name__}") from exc
        return self._token_login(
            {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        )

    def _client_credentials_login(self, auth: ClientCredentialsAuth) -> tuple[str, str]:
        return self._token_login(
            {
                "grant_type": "client_credentials",
                "client_id": auth.consumer_key,
                "client_secret": auth.consumer_secret.get_secret_value(),
            }
        )

    def login(self) -> None:
        """Log in (again) and build the REST client on the fresh session."""
        auth = self.config.auth
        if isinstance(auth, SessionAuth):
            if self._logins:
                raise SalesforceAuthError(
                    "the Salesforce session expired; a session-id login cannot log in again "
                    "(use password, jwt or client_credentials)"
                )
            session_id, instance = auth.session_id.get_secret_value(), str(auth.instance_url)
        else:
            session_id, instance = self._guarded_login()
        self._logins += 1
        self._session = (session_id, instance.rstrip("/"))
        self._sf = Salesforce(
            instance_url=instance.rstrip("/"),
            session_id=session_id,
            session=self._http,
            version=self.config.api_version,
            # Plain dicts: the default OrderedDict hook makes the JSON decoder call back
            # into Python for every object, over twice the decoding CPU of a page.
            object_pairs_hook=None,
        )
        log.debug("salesforce login", method=auth.method, logins=self._logins)

    def _guarded_login(self) -> tuple[str, str]:
        """Log in unless refusals hold logins back; a refusal extends the wait."""
        auth = self.config.auth
        with self.login_backoff.turn:
            self.login_backoff.check(self.now())
            try:
                if isinstance(auth, PasswordAuth):
                    found = self._password_login(auth)
                elif isinstance(auth, JwtAuth):
                    found = self._jwt_login(auth)
                else:
                    assert isinstance(auth, ClientCredentialsAuth)
                    found = self._client_credentials_login(auth)
            except SalesforceAuthError as exc:
                self.login_backoff.refused(str(exc), self.now())
                raise
            self.login_backoff.succeeded()
        return found

    def session(self, *, renew: bool = False) -> tuple[str, str]:
        """The session id and instance URL (for the Pub/Sub API); logs in if needed.

        ``renew`` logs in again first: the Pub/Sub API refused the session.
        """
        if renew or self._session is None:
            self._sf = None
            self.login()
        assert self._session is not None
        return self._session

    # ------------------------------------------------------------------ queries

    def _call(
        self, kind: str, run: Callable[[Salesforce], Any], *, records: bool = True
    ) -> dict[str, Any]:
        """One REST call answering a JSON object (with a records list unless ``records``
        is False), with the error mapping and one re-login on an expired session."""
        result = self._attempt(kind, run)
        if not isinstance(result, dict):
            raise SalesforceUnavailable(f"{kind} answer is not a JSON object")
        if records and not isinstance(result.get("records"), list):
            raise SalesforceUnavailable(f"{kind} answer has no records list")
        return result

    def _attempt(self, kind: str, run: Callable[[Salesforce], Any]) -> Any:
        """One REST call with the error mapping and one re-login on an expired session."""
        for attempt in (1, 2):
            if self._sf is None:
                self.login()
            assert self._sf is not None
            SALESFORCE_CALLS.labels(kind=kind).inc()
            try:
                result = run(self._sf)
            except SalesforceExpiredSession as exc:
                if attempt == 2:
                    raise SalesforceAuthError(
                        "INVALID_SESSION_ID again right after a fresh login"
                    ) from exc
                log.info("salesforce session expired; logging in again")
                self._sf = None
                continue
            except SalesforceError as exc:
                raise self._translate(exc) from exc
            except requests.RequestException as exc:
                raise SalesforceUnavailable(f"{kind} failed: {type(exc).__name__}") from exc
            except ValueError as exc:  # the body was not JSON
                raise SalesforceUnavailable(f"{kind} answer is not valid JSON") from exc
            return result
        raise AssertionError("unreachable")

    def _translate(self, exc: SalesforceError) -> SalesforceSourceError:
        code, message = _error_content(exc)
        status = exc.status
        if code == "REQUEST_LIMIT_EXCEEDED":
            kind = limit_kind(message, self._usage)
            if kind == "daily":
                self._daily_limit_hit = True
            return SalesforceLimitExceeded(
                f"REQUEST_LIMIT_EXCEEDED ({kind}): {message}".strip(), kind
            )
        if isinstance(status, int) and status >= 500:
            return SalesforceUnavailable(f"HTTP {status} {code}: {message}".strip())
        if code:
            return SalesforceQueryError(f"{code}: {message}")
        return SalesforceQueryError(f"HTTP {status}: {message}")

    def _note_usage(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        match = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match is not None:
            used, total = int(match.group(1)), int(match.group(2))
            self._usage = (used, total)
            if total:
                SALESFORCE_API_USAGE.set(used / total)

    def _check_daily_limit(self) -> None:
        """After the daily limit was hit, ask ``/limits`` (one cheap call) before querying.

        Raises :class:`SalesforceLimitExceeded` while no daily request remains.
        """
        answer = self._call("limits", lambda sf: sf.restful("limits/"), records=False)
        daily = answer.get("DailyApiRequests")
        if not isinstance(daily, dict):
            raise SalesforceUnavailable("limits answer has no DailyApiRequests")
        remaining, most = daily.get("Remaining"), daily.get("Max")
        if isinstance(remaining, int) and remaining <= 0:
            raise SalesforceLimitExceeded(
                f"REQUEST_LIMIT_EXCEEDED (daily): still no daily API request left "
                f"(DailyApiRequests Remaining {remaining} of {most})",
                "daily",
            )
        self._daily_limit_hit = False

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Run ``soql`` and yield its records page by page (``nextRecordsUrl``)."""
        options: dict[str, Any] = {
            "headers": {"Sforce-Query-Options": f"batchSize={self.config.page_size}"},
            "timeout": self.config.timeout,
        }
        started = time.monotonic()
        if self._daily_limit_hit:
            self._check_daily_limit()
        self._last_size = None
        result = self._call("query", lambda sf: sf.query(soql, **options))
        size = result.get("totalSize")
        self._last_size = size if isinstance(size, int) and size >= 0 else None
        pages = 0

        def more(url: str) -> Callable[[Salesforce], Any]:
            return lambda sf: sf.query_more(url, identifier_is_url=True, **options)

        # The next page is fetched by a helper thread while the caller works on this
        # one, so Salesforce's time to answer overlaps syncd's own work. Calls stay
        # one at a time, in order, and a failure of the next page surfaces only after
        # this page was handed over, as without the read-ahead. A caller that stops
        # early (closes the generator) waits for the call in flight, at most one.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="salesforce-page") as pool:
            while True:
                pages += 1
                next_url = result.get("nextRecordsUrl")
                pending: Future[dict[str, Any]] | None = None
                refused: SalesforceProtocolError | None = None
                if not result.get("done", True) and next_url:
                    try:
                        path = next_records_path(next_url)
                    except SalesforceProtocolError as exc:
                        refused = exc
                    else:
                        pending = pool.submit(
                            contextvars.copy_context().run, self._call, "query_more", more(path)
                        )
                yield result["records"]
                if refused is not None:
                    raise refused
                if pending is None:
                    break
                result = pending.result()
        log.debug("salesforce query done", pages=pages, seconds=time.monotonic() - started)

    def count(self, soql: str) -> int:
        """Run a ``SELECT COUNT() ...`` query and return its ``totalSize``."""
        result = self._call("query", lambda sf: sf.query(soql, timeout=self.config.timeout))
        return int(result.get("totalSize") or 0)

    def bulk_request(
        self, method: str, path: str, *, accept: str = "application/json", **kwargs: Any
    ) -> requests.Response:
        """One Bulk API 2.0 call to ``.../jobs/<path>``, mapped and retried like a query."""

        def run(sf: Salesforce) -> requests.Response:
            headers = {**sf.headers, "Accept": accept}
            return call_salesforce(
                sf.bulk2_url + path,
                method,
                sf.session,
                headers,
                timeout=self.config.timeout,
                **kwargs,
            )

        # The session's response hook (:meth:`_note_usage`) has read Sforce-Limit-Info.
        response: requests.Response = self._attempt("bulk", run)
        return response

    def describe_fields(self, sobject: str) -> list[dict[str, Any]]:
        """The object's fields from ``GET sobjects/{sobject}/describe``."""
        result = self._attempt(
            "describe",
            lambda sf: sf.restful(f"sobjects/{sobject}/describe", timeout=self.config.timeout),
        )
        fields = result.get("fields") if isinstance(result, dict) else None
        if not isinstance(fields, list):
            raise SalesforceUnavailable(f"describe of {sobject} has no fields list")
        return [field for field in fields if isinstance(field, dict)]

    def update_collection(self, body: dict[str, Any]) -> Any:
        """``PATCH composite/sobjects`` (sObject Collections update); the per-record results."""
        return self._attempt(
            "writeback",
            lambda sf: sf.restful(
                "composite/sobjects", method="PATCH", json=body, timeout=self.config.timeout
            ),
        )

    def create_collection(self, body: dict[str, Any]) -> Any:
        """``POST composite/sobjects`` (sObject Collections create); the per-record results."""
        return self._attempt(
            "writeback",
            lambda sf: sf.restful(
                "composite/sobjects", method="POST", json=body, timeout=self.config.timeout
            ),
        )

    def api_usage(self) -> tuple[int, int] | None:
        """(used, max) daily API requests from the last Sforce-Limit-Info, if any."""
        return self._usage

    def last_query_size(self) -> int | None:
        """How many records the running query returns in all (``totalSize``), once known."""
        return self._last_size

    def close(self) -> None:
        self._http.close()
        self._sf = None
