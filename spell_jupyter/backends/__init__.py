"""Backends run a command somewhere and report its output and exit, behind one interface."""

from .base import Backend, LaunchRequest, ProcessState, ProcessStatus

__all__ = ["Backend", "LaunchRequest", "ProcessState", "ProcessStatus"]
