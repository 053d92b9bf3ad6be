"""`spell.api`: Spell's model and exception modules, for scripts that import them."""
