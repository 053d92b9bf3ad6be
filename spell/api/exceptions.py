"""`spell.api.exceptions`: what the client raises, under Spell's names."""

from spell_jupyter.client.errors import (
    APIError,
    ServerUnavailable,
    SpellClientError,
    UnsupportedArgument,
    WaitError,
)

ClientException = SpellClientError  # Spell's base class of client errors
BadRequest = APIError

__all__ = [
    "APIError",
    "BadRequest",
    "ClientException",
    "ServerUnavailable",
    "SpellClientError",
    "UnsupportedArgument",
    "WaitError",
]
