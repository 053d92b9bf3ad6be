"""HTTP to a Spell server: token auth, JSON, streamed NDJSON, errors turned into APIError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import requests

from .errors import APIError, ServerUnavailable

API_PREFIX = "spell/api/v1"
STREAM_TIMEOUT = (10.0, None)  # connect within 10 s; a followed stream may be silent for hours


class Transport:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, stream: bool = False, timeout=0, **kwargs):
        """`timeout`: seconds or (connect, read); 0 means the default, None means none."""
        try:
            response = self.session.request(
                method,
                self.url(path),
                stream=stream,
                timeout=self.timeout if timeout == 0 else timeout,
                **kwargs,
            )
        except requests.ConnectionError as exc:
            raise ServerUnavailable(f"no Spell server answers at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                message = response.json().get("message") or response.reason
            except ValueError:
                message = response.text or response.reason
            raise APIError(response.status_code, message)
        return response

    def json(self, method: str, path: str, **kwargs):
        return self.request(method, path, **kwargs).json()

    def ndjson(self, path: str, params: dict, timeout=0) -> Iterator[dict]:
        response = self.request("GET", path, params=params, stream=True, timeout=timeout)
        with response:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


def quote_segment(value: str) -> str:
    return quote(value, safe="")


def quote_path(value: str) -> str:
    return quote(value, safe="/")
