"""The service layer: run submission, lifecycles and scheduling. Never imports tornado."""

from .lifecycle import RunEngine
from .service import RunService

__all__ = ["RunEngine", "RunService"]
