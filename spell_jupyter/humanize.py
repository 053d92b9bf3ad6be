"""Sizes and durations for people. Standard library only (the CLI and the engine share it)."""

from __future__ import annotations


def human_size(size: float) -> str:
    """1536 -> '1.5KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """67.05 -> '1m7.1s'."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h{minutes}m{secs:.0f}s"
    if minutes:
        return f"{minutes}m{secs:.1f}s"
    return f"{secs:.2f}s"
