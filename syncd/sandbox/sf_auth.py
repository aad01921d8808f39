"""Logins to the Salesforce emulator: SOAP ``login``, the OAuth2 token endpoint, sessions.

Answers are shaped as simple-salesforce 1.12 reads them: a SOAP envelope (or a
SOAP fault ``INVALID_LOGIN``, HTTP 500) for ``/services/Soap/u/{version}``, and
``access_token`` + ``instance_url`` (or ``{"error", "error_description"}``,
HTTP 400) for ``/services/oauth2/token``. Every attempt is counted, refused
ones included, so tests can tell a re-login from a reused session.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

import jwt

from syncd.sandbox.sf_reply import Reply, json_reply

ORG_ID = "00D8d000000SyNcEAK"
USER_ID = "0058d000000SyNcAAA"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@dataclass(frozen=True)
class Credentials:
    """The one user of the org and its connected app."""

    username: str
    password: str
    security_token: str
    consumer_key: str
    consumer_secret: str
    #: PEM public key or certificate JWTs are verified with; None: not verified.
    jwt_public_key: str | bytes | None = None

    def password_ok(self, username: str, password: str, *, token_optional: bool) -> bool:
        """Password + security token; the password alone too where ``token_optional``."""
        if username != self.username:
            return False
        if secrets.compare_digest(password, self.password + self.security_token):
            return True
        return token_optional and secrets.compare_digest(password, self.password)


class Sessions:
    """Session ids handed out by logins, and how many logins were asked for. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, str] = {}  # session id -> username
        self._attempts = 0

    def new(self, username: str) -> str:
        session = f"{ORG_ID[:15]}!{secrets.token_urlsafe(48)}"
        with self._lock:
            self._sessions[session] = username
        return session

    def knows(self, token: str) -> bool:
        with self._lock:
            return token in self._sessions

    def of(self, headers: Mapping[str, str]) -> str | None:
        """The session an ``Authorization: Bearer|OAuth <id>`` header names, if still valid."""
        value = headers.get("Authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() not in ("bearer", "oauth") or not token:
            return None
        with self._lock:
            return token if token in self._sessions else None

    def expire(self) -> None:
        with self._lock:
            self._sessions.clear()

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def count_login(self) -> None:
        with self._lock:
            self._attempts += 1

    def attempts(self) -> int:
        with self._lock:
            return self._attempts


class Logins:
    """The SOAP and OAuth2 login endpoints of one org at ``url`` (known once it serves)."""

    def __init__(self, credentials: Credentials, sessions: Sessions) -> None:
        self.credentials = credentials
        self.sessions = sessions

    def soap_login(self, body: bytes, version: str, url: str) -> Reply:
        self.sessions.count_login()
        try:
            root = ET.fromstring(body)
        except ET.ParseError:
            return _soap_fault("soapenv:Client", "INVALID_XML", "The request is not valid XML")
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        if "login" not in values:
            return _soap_fault("soapenv:Client", "UNKNOWN_EXCEPTION", "Only login is supported")
        username, password = values.get("username", ""), values.get("password", "")
        token_optional = self.credentials.security_token == ""
        if not self.credentials.password_ok(username, password, token_optional=token_optional):
            return _soap_fault(
                "sf:INVALID_LOGIN",
                "INVALID_LOGIN",
                "Invalid username, password, security token; or user locked out.",
            )
        session = self.sessions.new(username)
        return Reply(200, self._soap_result(session, version, url), "text/xml;charset=UTF-8")

    def _soap_result(self, session: str, version: str, url: str) -> bytes:
        username = escape(self.credentials.username)
        server_url = f"{url}/services/Soap/u/{version}/{ORG_ID[:15]}"
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns="urn:partner.soap.sforce.com" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            "<soapenv:Body><loginResponse><result>"
            f"<metadataServerUrl>{url}/services/Soap/m/{version}/{ORG_ID[:15]}"
            "</metadataServerUrl>"
            "<passwordExpired>false</passwordExpired><sandbox>true</sandbox>"
            f"<serverUrl>{server_url}</serverUrl>"
            f"<sessionId>{escape(session)}</sessionId>"
            f"<userId>{USER_ID}</userId>"
            "<userInfo>"
            f"<organizationId>{ORG_ID}</organizationId>"
            "<organizationName>syncd sandbox</organizationName>"
            f"<userEmail>{username}</userEmail>"
            f"<userId>{USER_ID}</userId>"
            f"<userName>{username}</userName>"
            "</userInfo>"
            "</result></loginResponse></soapenv:Body></soapenv:Envelope>"
        )
        return xml.encode()

    def oauth_token(self, body: bytes, headers: Mapping[str, str], url: str) -> Reply:
        self.sessions.count_login()
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type", "")
        if grant == "password":
            return self._password_grant(form, url)
        if grant == "client_credentials":
            return self._client_credentials_grant(form, headers, url)
        if grant == JWT_BEARER:
            return self._jwt_grant(form.get("assertion", ""), url)
        return _oauth_error("unsupported_grant_type", "grant type not supported")

    def _password_grant(self, form: Mapping[str, str], url: str) -> Reply:
        credentials = self.credentials
        if form.get("client_id") != credentials.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(form.get("client_secret", ""), credentials.consumer_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        username = form.get("username", "")
        if not credentials.password_ok(username, form.get("password", ""), token_optional=True):
            return _oauth_error("invalid_grant", "authentication failure")
        return self._token_answer(username, url)

    def _client_credentials_grant(
        self, form: Mapping[str, str], headers: Mapping[str, str], url: str
    ) -> Reply:
        """Client id and secret from HTTP Basic when given, else from the form."""
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, encoded = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(encoded).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            client_id, _, client_secret = decoded.partition(":")
        if client_id != self.credentials.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if not secrets.compare_digest(client_secret, self.credentials.consumer_secret):
            return _oauth_error("invalid_client", "invalid client credentials")
        return self._token_answer(self.credentials.username, url)

    def _jwt_grant(self, assertion: str, url: str) -> Reply:
        try:
            claims = _jwt_claims(assertion, self.credentials.jwt_public_key)
        except (jwt.PyJWTError, ValueError, TypeError):
            return _oauth_error("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.credentials.consumer_key:
            return _oauth_error("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.credentials.username:
            return _oauth_error("invalid_grant", "user hasn't approved this consumer")
        return self._token_answer(self.credentials.username, url)

    def _token_answer(self, username: str, url: str) -> Reply:
        session = self.sessions.new(username)
        issued = str(int(time.time() * 1000))
        return json_reply(
            200,
            {
                "access_token": session,
                "instance_url": url,
                "id": f"{url}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
            },
        )


def _jwt_claims(assertion: str, public_key: str | bytes | None) -> dict[str, Any]:
    """The claims of a JWT bearer assertion; its signature is checked only with a key."""
    if public_key is not None:
        return jwt.decode(
            assertion,
            public_key,
            algorithms=["RS256"],
            options={"verify_aud": False, "require": ["iss", "sub", "exp"]},
        )
    claims = jwt.decode(
        assertion,
        options={"verify_signature": False, "require": ["iss", "sub", "exp"]},
    )
    if float(claims["exp"]) < time.time():
        raise jwt.ExpiredSignatureError("expired")
    return claims


def _soap_fault(faultcode: str, code: str, message: str) -> Reply:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:sf="urn:fault.partner.soap.sforce.com" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body><soapenv:Fault>"
        f"<faultcode>{faultcode}</faultcode>"
        f"<faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode>"
        f"<sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    )
    return Reply(500, xml.encode(), "text/xml;charset=UTF-8")


def _oauth_error(error: str, description: str) -> Reply:
    return json_reply(400, {"error": error, "error_description": description})
