"""The service layer: what the REST handlers call. Validation and authorization-aware
operations on runs (RunManager) and SpellFS (SpellFSManager); runs are driven through the
engine's narrow interface (`engine.RunControl`), never through a backend."""

from .runs import DEFAULT_MOUNT_URLS, RunManager
from .spellfs import SpellFSManager

__all__ = ["DEFAULT_MOUNT_URLS", "RunManager", "SpellFSManager"]
