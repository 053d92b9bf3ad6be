"""The server's event stream (`GET /events`, server-sent events) from Python: what the notebook
widgets follow instead of polling."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ServerUnavailable
from .transport import STREAM_TIMEOUT, Transport

RECONNECT_SECONDS = 2.0
CYCLE_SECONDS = 30  # a stream is closed and resumed this often, so a follower can stop


@dataclass
class Event:
    kind: str  # "run" or "metrics"
    data: dict
    id: str | None = None


def parse_events(lines: Iterator[bytes]) -> Iterator[Event]:
    """Events of a text/event-stream, line by line; a block with an ID alone (where the
    stream stands) is an Event of kind ''."""
    fields: dict[str, str] = {}
    for raw in lines:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if "event" in fields and "data" in fields:
                yield Event(fields["event"], json.loads(fields["data"]), fields.get("id"))
            elif "id" in fields:
                yield Event("", {}, fields["id"])
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value


def follow_events(
    transport: Transport, last_id: str | None = None, stop: threading.Event | None = None
) -> Iterator[Event]:
    """Every event from now (or after `last_id`) on, reconnecting (with the last ID seen, so
    nothing is missed) when the connection drops or the server restarts, until `stop` is set
    (noticed within CYCLE_SECONDS)."""
    stop = stop or threading.Event()
    while not stop.is_set():
        headers = {"Accept": "text/event-stream"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            with transport.request(
                "GET",
                "events",
                params={"timeout": CYCLE_SECONDS},
                headers=headers,
                stream=True,
                timeout=STREAM_TIMEOUT,
            ) as response:
                for event in parse_events(response.iter_lines()):
                    if event.id is not None:
                        last_id = event.id
                    if event.kind:
                        yield event
            continue  # the cycle ended: resume where it stood
        except (ServerUnavailable, OSError):
            pass  # the server went away: try again
        stop.wait(RECONNECT_SECONDS)
