"""HTTP to a Spell server: token auth, JSON, streamed NDJSON, errors turned into APIError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import requests

from .errors import APIError, ServerUnavailable

API_PREFIX = "spell/api/v1"


class Transport:
    def __init__(self, base_url: str, token: str, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {token}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, stream: bool = False, timeout=None, **kwargs):
        try:
            response = self.session.request(
                method, self.url(path), stream=stream, timeout=timeout or self.timeout, **kwargs
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

    def ndjson(self, path: str, params: dict, timeout: float | None = None) -> Iterator[dict]:
        response = self.request("GET", path, params=params, stream=True, timeout=timeout)
        with response:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


def quote_segment(value: str) -> str:
    return quote(value, safe="")


def quote_path(value: str) -> str:
    return quote(value, safe="/")
