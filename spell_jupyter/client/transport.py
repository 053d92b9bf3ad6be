"""HTTP to a Spell server: token auth, JSON, streamed NDJSON and tar, errors turned into APIError.

Built on the standard library's http.client, not requests: every `spell` command pays the
client's import time, and requests (with urllib3) costs about 65 ms of it; this costs 15.
Plain requests share one keep-alive connection per thread (a client may serve a notebook's
widgets from background threads); each stream gets a connection of its own.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, unquote, urlencode, urlsplit

from .errors import APIError, ServerUnavailable

API_PREFIX = "spell/api/v1"
STREAM_TIMEOUT = (10.0, None)  # connect within 10 s; a followed stream may be silent for hours
Timeout = float | tuple[float, float | None] | None
RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
RETRY_AFTER_LIMIT = 60.0  # seconds a request answered "503, retry after" is asked again


class Response:
    """A response whose status was checked; `raw` is readable (and closes its connection)."""

    def __init__(self, raw: http.client.HTTPResponse, connection: http.client.HTTPConnection):
        self.raw = raw
        self.status_code = raw.status
        self._connection = connection
        self._body: bytes | None = None

    def read(self) -> bytes:
        if self._body is None:
            self._body = self.raw.read()
        return self._body

    def json(self):
        return json.loads(self.read() or b"null")

    def iter_lines(self) -> Iterator[bytes]:
        for line in self.raw:
            yield line.rstrip(b"\r\n")

    def close(self) -> None:
        self.raw.close()
        self._connection.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (`http+unix://%2Fpath%2Fto%2Fapi.sock/`): how code inside a
    run reaches its server."""

    def __init__(self, socket_path: str, timeout: float | None = None):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Transport:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/") + "/"
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https", "http+unix") or not parts.netloc:
            raise ValueError(f"a Spell server URL looks like http://host:port/, not {base_url!r}")
        self._connection_class = {
            "https": http.client.HTTPSConnection,
            "http+unix": UnixHTTPConnection,
        }.get(parts.scheme, http.client.HTTPConnection)
        self._netloc = unquote(parts.netloc) if parts.scheme == "http+unix" else parts.netloc
        self._base_path = parts.path
        self.timeout = timeout
        self.token = token
        self.headers = {"Authorization": f"token {token}", "Accept": "application/json"}
        self._local = threading.local()  # each thread keeps its own keep-alive connection

    @property
    def _shared(self) -> http.client.HTTPConnection | None:
        return getattr(self._local, "connection", None)

    @_shared.setter
    def _shared(self, connection: http.client.HTTPConnection | None) -> None:
        self._local.connection = connection

    def url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: object = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
        timeout: Timeout | int = 0,
    ) -> Response:
        """`timeout`: seconds or (connect, read); 0 means the default, None means none."""
        target = f"{self._base_path}{API_PREFIX}/{path.lstrip('/')}"
        if params:
            query = {k: v for k, v in params.items() if v is not None}
            target += "?" + urlencode(query, doseq=True)
        extra, headers = headers, dict(self.headers)
        body = None
        if content is not None:
            body = content
            headers["Content-Type"] = "application/octet-stream"
        elif json is not None or method in ("POST", "PUT"):
            body = _json_dumps(json)
            headers["Content-Type"] = "application/json"
        headers.update(extra or {})
        connect_timeout, read_timeout = _timeouts(self.timeout if timeout == 0 else timeout)
        give_up = time.monotonic() + RETRY_AFTER_LIMIT
        while True:
            response = self._send(
                method, target, body, headers, stream, connect_timeout, read_timeout
            )
            wait = _retry_after(response)
            if wait is None or time.monotonic() + wait > give_up:
                break
            response.read()  # not answered yet (no leader for a moment): asked again
            self._done(response, stream)
            time.sleep(wait)
        if response.status_code >= 300:  # the API never redirects: a login page is not it
            message = self._error_message(response)
            self._done(response, stream)
            raise APIError(response.status_code, message)
        if not stream:
            response.read()
            self._done(response, stream)
        return response

    def _send(
        self,
        method: str,
        target: str,
        body: bytes | None,
        headers: dict[str, str],
        stream: bool,
        connect_timeout: float | None,
        read_timeout: float | None,
    ) -> Response:
        """One request (again once on a kept-alive connection the server had closed)."""
        for attempt in (1, 2):
            reused = not stream and self._shared is not None
            connection = self._connection(stream, connect_timeout)
            try:
                if connection.sock is None:
                    connection.connect()
                connection.sock.settimeout(read_timeout)
                connection.request(method, target, body=body, headers=headers)
                raw = connection.getresponse()
                break
            except RETRYABLE as exc:
                connection.close()
                self._shared = None
                if attempt == 2 or not reused:  # a kept-alive connection may have timed out
                    raise ServerUnavailable(
                        f"the Spell server at {self.base_url} hung up: {exc}"
                    ) from exc
            except OSError as exc:
                connection.close()
                self._shared = None
                raise ServerUnavailable(
                    f"no Spell server answers at {self.base_url}: {exc}"
                ) from exc
        return Response(raw, connection)

    def _error_message(self, response: Response) -> str:
        """The server's own message, or one that says which server answered and what to do
        (a wrong token, or a URL that is not a Spell server's)."""
        status, reason = response.status_code, response.raw.reason
        try:
            data = response.json()
            message = data.get("message") if isinstance(data, dict) else None
        except ValueError:
            return (
                f"{self.base_url} answered {status} {reason} with a page that is not a Spell "
                "server's: is the URL right (SPELL_BASE_URL), and does that Jupyter server have "
                "the spell_jupyter extension enabled?"
            )
        if status in (401, 403) and (not message or message in (reason, "Forbidden")):
            return (
                f"the server at {self.base_url} refused the token ({status} {reason}): "
                "check SPELL_TOKEN (its token is in `jupyter server list`), or unset "
                "SPELL_BASE_URL to use the server of SPELL_HOME"
            )
        return message or f"{status} {reason} from {self.base_url}"

    def json(self, method: str, path: str, **kwargs):
        return self.request(method, path, **kwargs).json()

    def ndjson(self, path: str, params: dict, timeout: Timeout | int = 0) -> Iterator[dict]:
        with self.request("GET", path, params=params, stream=True, timeout=timeout) as response:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)

    def close(self) -> None:
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _connection(self, stream: bool, connect_timeout: float | None):
        if stream:
            return self._connection_class(self._netloc, timeout=connect_timeout)
        if self._shared is None:
            self._shared = self._connection_class(self._netloc, timeout=connect_timeout)
        return self._shared

    def _done(self, response: Response, stream: bool) -> None:
        """Close a stream's own connection; keep the shared one unless the server closes it."""
        if stream or response.raw.will_close:
            response.close()
            if not stream:
                self._shared = None


def _retry_after(response: Response) -> float | None:
    """Seconds to wait before asking again, where a 503 says so (a cluster node's relay
    between two leading servers); None: the answer stands."""
    if response.status_code != 503:
        return None
    try:
        return min(max(float(response.raw.getheader("Retry-After") or ""), 0.0), 5.0)
    except ValueError:
        return None


def _timeouts(timeout: Timeout) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        return timeout
    return timeout, timeout


def _json_dumps(value: object) -> bytes:
    return json.dumps({} if value is None else value).encode()


def quote_segment(value: str) -> str:
    return quote(value, safe="")


def quote_path(value: str) -> str:
    return quote(value, safe="/")
