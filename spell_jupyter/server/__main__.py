"""`python -m spell_jupyter.server`: a headless Jupyter server with only the Spell extension."""

from .app import SpellJupyter

if __name__ == "__main__":
    SpellJupyter.launch_instance()
