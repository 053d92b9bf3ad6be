"""`spell_jupyter.metrics.send_metric(name, value, index=None)`: the same as `spell.metrics`."""

from .client.metrics import send_metric

__all__ = ["send_metric"]
