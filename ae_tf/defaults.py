"""Defaults that several configs share, and the one way argument parsers read a config's defaults.

A default is written once: in the config dataclass (TrainConfig, SweepConfig, ReportConfig, ModelConfig)
or, for the Parquet batch and split sizes that every pipeline plan and the training reader use, here.
Parsers call `default_of(Config, "field")` instead of repeating the value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

BATCH_ROWS = 65536  # rows per Arrow record batch read from Parquet (pipelines, training reader)
MAX_ROWS_PER_SPLIT = 2_000_000  # large files are split at row groups into units of about this many rows


def default_of(config: type, name: str) -> Any:
    """The default of field `name` of dataclass `config` (a KeyError names a field that does not exist)."""
    for field in dataclasses.fields(config):
        if field.name == name:
            if field.default is not dataclasses.MISSING:
                return field.default
            if field.default_factory is not dataclasses.MISSING:
                return field.default_factory()
            raise KeyError(f"{config.__name__}.{name} has no default")
    raise KeyError(f"{config.__name__} has no field {name!r}")
