"""Spell's own package name, so that Spell scripts (`import spell.client`) run unchanged."""
