"""Forwarding one HTTP request from a tornado handler to another server, its answer streamed
back as it comes: the way into a workspace's Jupyter (server/service_proxy.py) and a cluster
node's relay of the Spell API to the leading server (backends/api_relay.py)."""

from __future__ import annotations

from tornado import httputil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.web import RequestHandler

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CONNECT_TIMEOUT = 10.0
REQUEST_TIMEOUT = 3600.0  # a long download


async def forward(
    handler: RequestHandler,
    url: str,
    headers: dict[str, str],
    not_returned: frozenset[str] | set[str] = HOP_BY_HOP | {"content-length"},
    *,
    client: AsyncHTTPClient | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
) -> BaseException | None:
    """Send `handler`'s request (method and body) to `url` with `headers` (through `client`,
    else the IOLoop's shared one), and stream the answer back through `handler`: its status,
    its headers but `not_returned`, its body. The error when the other server answered
    nothing (the caller answers then), else None."""
    started = False
    seen: set[str] = set()

    def on_header(line: str) -> None:
        nonlocal started
        line = line.rstrip("\r\n")
        if line.startswith("HTTP/"):
            start = httputil.parse_response_start_line(line)
            if start.code == 100:
                return
            started = True
            seen.clear()
            handler.clear()
            handler.set_status(start.code, start.reason)
        elif line and started:
            key, _, value = line.partition(":")
            key = key.strip()
            if key.lower() in not_returned:
                return
            if key.lower() in seen:  # repeated by the other server: kept repeated
                handler.add_header(key, value.strip())
            else:  # replaces the handler's default of the same name
                seen.add(key.lower())
                handler.set_header(key, value.strip())

    def on_chunk(chunk: bytes) -> None:
        handler.write(chunk)
        flushed = handler.flush()
        flushed.add_done_callback(lambda f: f.exception())  # a client gone: nothing to do

    body = handler.request.body
    method = handler.request.method or "GET"
    request = HTTPRequest(
        url,
        method=method,
        headers=headers,
        body=body if body or method in ("POST", "PUT", "PATCH") else None,
        allow_nonstandard_methods=True,
        follow_redirects=False,
        decompress_response=False,
        connect_timeout=CONNECT_TIMEOUT,
        request_timeout=request_timeout,
        header_callback=on_header,
        streaming_callback=on_chunk,
    )
    try:
        response = await (client or AsyncHTTPClient()).fetch(request, raise_error=False)
    except (OSError, HTTPClientError) as exc:
        error: BaseException | None = exc
    else:
        error = response.error if response.code == 599 else None
    return error if error is not None and not started else None
