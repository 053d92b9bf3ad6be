"""`spell.client.runs`: runs and their service, with Spell's constants."""

from spell_jupyter.client.runs import LogEntry, Run, RunsService

EQUALS = RunsService.EQUALS
GREATER_THAN = RunsService.GREATER_THAN
GREATER_THAN_EQUALS = RunsService.GREATER_THAN_EQUALS
LESS_THAN = RunsService.LESS_THAN
LESS_THAN_EQUALS = RunsService.LESS_THAN_EQUALS
FINAL = RunsService.FINAL

__all__ = [
    "EQUALS",
    "FINAL",
    "GREATER_THAN",
    "GREATER_THAN_EQUALS",
    "LESS_THAN",
    "LESS_THAN_EQUALS",
    "LogEntry",
    "Run",
    "RunsService",
]
