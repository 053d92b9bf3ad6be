"""The store: the single source of truth for runs, their history and their logs."""

from .database import connect_database
from .repository import RunStore

__all__ = ["RunStore", "connect_database"]
