"""Machine types: names users pick with `-t`, matched case-insensitively."""

from __future__ import annotations

from ..errors import InvalidInput


class MachineTypes:
    """A table name -> resources; the local backend of the spine offers CPU only."""

    def __init__(self, table: dict[str, dict]):
        self.table = table
        self._by_lower = {name.lower(): name for name in table}

    def canonical(self, name: str) -> str:
        found = self._by_lower.get(name.strip().lower())
        if found is None:
            known = ", ".join(sorted(self.table))
            raise InvalidInput(f"unknown machine type {name!r}: known machine types are {known}")
        return found
