"""The service layer: run submission, lifecycles, scheduling and SpellFS. Never imports tornado."""

from .lifecycle import RunEngine
from .resources import ResourceService
from .service import RunService

__all__ = ["ResourceService", "RunEngine", "RunService"]
