"""Which source a training run reads: Parquet files (ae_tf.inputs.data) or a TFDS split (ae_tf.inputs.tfds_source).

Above both, so neither imports the other (a TFDS source reuses the Parquet side's split and statistics).
"""

from __future__ import annotations

from ae_tf.inputs.data import ParquetSource, image_request, match_files, resolve_spec
from ae_tf.inputs.tfds_source import TfdsSource


def open_source(config):
    """The training input of a TrainConfig: Parquet files (`input`) or a TFDS dataset (`tfds`)."""
    request = image_request(config.model)
    if getattr(config, "tfds", None):
        return TfdsSource.open(config.tfds, config.tfds_data_dir, config.features, request,
                               config.validation_fraction, config.seed)
    files = match_files(config.input)
    spec = resolve_spec(files, config.features, request)
    return ParquetSource(files, spec, config.validation_fraction, config.seed, config.read_rows)
