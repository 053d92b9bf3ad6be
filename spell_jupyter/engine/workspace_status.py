"""A workspace's Jupyter, asked directly on this host: does it answer, and how long has it
been idle (its `/api/status` and `/api/kernels`, which do not count as activity)."""

from __future__ import annotations

import json
import urllib.request
from datetime import datetime, timezone

ASK_TIMEOUT = 5.0  # seconds: a workspace that does not answer is not called idle


def idle_seconds(address: str, base_url: str, token: str) -> float | None:
    """Seconds since the workspace's last activity while no client is connected to a kernel
    and no kernel is busy; 0 while one is; None when it does not answer."""
    try:
        status = _get(address, base_url, "api/status", token)
        kernels = _get(address, base_url, "api/kernels?no_track_activity=1", token)
    except (OSError, ValueError):
        return None
    if status.get("connections") or any(k.get("execution_state") == "busy" for k in kernels):
        return 0.0
    last = datetime.fromisoformat(str(status["last_activity"]).replace("Z", "+00:00"))
    return max((datetime.now(timezone.utc) - last).total_seconds(), 0.0)


def answers(address: str, base_url: str, token: str, timeout: float = 2.0) -> bool:
    """Whether its Jupyter answers `/api/status` now."""
    try:
        _get(address, base_url, "api/status", token, timeout)
        return True
    except (OSError, ValueError):
        return False


def _get(address: str, base_url: str, path: str, token: str, timeout: float = ASK_TIMEOUT):
    request = urllib.request.Request(
        f"http://{address}{base_url}{path}", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())
