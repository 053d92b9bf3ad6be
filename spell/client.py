"""`spell.client` is `spell_jupyter.client` under Spell's name."""

from spell_jupyter.client import *  # noqa: F403
from spell_jupyter.client import __all__, from_environment  # noqa: F401
