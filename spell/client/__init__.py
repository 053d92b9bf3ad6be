"""`spell.client`: the Python API under Spell's name (`spell.client.from_environment()`)."""

from spell_jupyter.client import *  # noqa: F403
from spell_jupyter.client import __all__, from_environment  # noqa: F401
