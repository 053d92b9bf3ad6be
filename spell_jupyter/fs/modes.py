"""File modes as SpellFS keeps them: what tarfile's "data" filter would extract."""

from __future__ import annotations


def data_mode(mode: int) -> int:
    """No setuid/setgid/sticky, no group/other write, owner read-write; execute bits only
    where the owner may execute."""
    mode = (mode & 0o755) | 0o600
    return mode if mode & 0o100 else mode & ~0o111
