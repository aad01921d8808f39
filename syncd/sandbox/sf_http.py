"""HTTPS for the Salesforce emulator: the server, and which part of the org a path goes to.

Stdlib ``http.server`` only, HTTP/1.1 with keep-alive. The TLS handshake is
done in each connection's own thread, so a client that never finishes one
cannot stall the others. Whatever a route raises becomes a 500
``UNKNOWN_EXCEPTION``: the emulator must answer, not hang its client.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socket import socket
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from syncd.sandbox.sf_reply import Reply, error_reply, not_found
from syncd.sandbox.sf_rest import DATA_PATH


class Org(Protocol):
    """The four doors of the emulated org the handler knocks on."""

    def control(self, method: str, path: str, body: bytes) -> Reply: ...

    def soap_login(self, body: bytes, version: str) -> Reply: ...

    def oauth_token(self, body: bytes, headers: Mapping[str, str]) -> Reply: ...

    def rest(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Reply: ...


class TLSServer(ThreadingHTTPServer):
    """Accepts plain sockets and does each TLS handshake in the connection's own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        org: Org,
    ) -> None:
        super().__init__(address, handler)
        self.context = context
        self.org = org

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that drops a connection or fails the handshake is not our
        # problem to report; the emulator keeps serving the others.
        pass


def https_server(org: Org, host: str, port: int, cert_file: Path, key_file: Path) -> TLSServer:
    """A server for ``org`` on ``host:port`` (0: any free), TLS 1.2 or later."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return TLSServer((host, port), Handler, context, org)


def route(
    org: Org, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> Reply:
    """The answer to one request: control API, SOAP login, OAuth token or REST."""
    if path.startswith("/__sandbox/"):
        return org.control(method, path, body)
    if path.startswith("/services/Soap/u/") and method == "POST":
        version = path.removeprefix("/services/Soap/u/").split("/")[0]
        return org.soap_login(body, version)
    if path.rstrip("/") == "/services/oauth2/token" and method == "POST":
        return org.oauth_token(body, headers)
    if DATA_PATH.match(path):
        return org.rest(method, path, query, headers, body)
    return not_found()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SalesforceEmulator/1.0"
    timeout = 120
    server: TLSServer

    def setup(self) -> None:
        raw: socket = self.request
        raw.settimeout(self.timeout)
        self.request = self.server.context.wrap_socket(raw, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        body = self._body()
        split = urlsplit(self.path)
        path = unquote(split.path)
        headers = {k: v for k, v in self.headers.items()}
        try:
            reply = route(self.server.org, self.command, path, split.query, headers, body)
        except Exception as exc:  # the emulator must answer, not hang the client
            reply = error_reply(500, "UNKNOWN_EXCEPTION", f"emulator error: {type(exc).__name__}")
        if reply.lost:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if reply.body and self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = _dispatch
    do_POST = _dispatch
    do_PATCH = _dispatch
    do_PUT = _dispatch
    do_DELETE = _dispatch
