"""`spell.api.models`: the parameter specs of hyperparameter searches."""

from spell_jupyter.client.hyper import FLOAT, INT, LINEAR, LOG, REVERSE_LOG, RangeSpec, ValueSpec

__all__ = ["FLOAT", "INT", "LINEAR", "LOG", "REVERSE_LOG", "RangeSpec", "ValueSpec"]
