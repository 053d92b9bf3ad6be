"""`spell.metrics.send_metric(name, value, index=None)`, as in Spell."""

from spell_jupyter.client.metrics import send_metric

__all__ = ["send_metric"]
