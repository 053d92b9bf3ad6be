"""SpellFS: the one namespace of run outputs, uploads and public data."""

from .paths import NAMESPACES, normalize
from .spellfs import SpellFS

__all__ = ["NAMESPACES", "SpellFS", "normalize"]
