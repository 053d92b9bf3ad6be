"""`spell.client.hyper`: hyperparameter searches, with Spell's names."""

from spell_jupyter.client.hyper import (
    FLOAT,
    INT,
    LINEAR,
    LOG,
    REVERSE_LOG,
    HyperSearch,
    HyperService,
    RangeSpec,
    ValueSpec,
)

__all__ = [
    "FLOAT",
    "INT",
    "LINEAR",
    "LOG",
    "REVERSE_LOG",
    "HyperSearch",
    "HyperService",
    "RangeSpec",
    "ValueSpec",
]
