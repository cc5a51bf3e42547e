"""How many rows go to the model in one call: sized from the network against a memory budget.

An Arrow batch is sized for reading (65,536 rows by default); a 256x256 conv model holds ~22 MB of
activations per row, so a whole batch in one call needs terabytes. The encoder therefore calls the model on
sub-batches of `model_batch_rows` rows. Automatic sizing divides a memory budget (default 1 GiB,
`--model-memory-mb` or the AE_TF_MODEL_MEMORY_MB environment variable) by the bytes one row needs inside
the model: every layer output of encoder and decoder (recorded at export as `activation_floats_per_row`),
plus the prepared input held by the prefetching decoder. Tabular models need a few hundred bytes per row,
so they get sub-batches larger than any Arrow batch: one call per batch, as before.
"""

from __future__ import annotations

import math
import os

from ae_tf.contracts import ModelMetadata
from ae_tf.errors import InvalidInput

DEFAULT_MEMORY_MB = 1024
MEMORY_ENV = "AE_TF_MODEL_MEMORY_MB"
MAX_MODEL_BATCH_ROWS = 1 << 20
# Models exported before `activation_floats_per_row` was recorded: this many floats per input number
# (a conv autoencoder of 4 layers measures ~28; dense models far less).
_FALLBACK_ACTIVATIONS_PER_INPUT = 32


def activation_floats_per_row(model) -> int:
    """Floats one row occupies across the prepared input and every layer output of encoder and decoder."""
    total = 0
    for network in (model.encoder, model.decoder):
        total += math.prod(d for d in network.inputs[0].shape[1:])
        for layer in network.layers:
            total += math.prod(d for d in layer.output.shape[1:])
    return int(total)


def memory_budget_mb(requested: float | None = None) -> float:
    """The budget in MiB: the flag when given, else AE_TF_MODEL_MEMORY_MB, else 1024."""
    if requested is not None:
        value = float(requested)
    else:
        text = os.environ.get(MEMORY_ENV, "")
        try:
            value = float(text) if text else DEFAULT_MEMORY_MB
        except ValueError:
            raise InvalidInput(f"{MEMORY_ENV} must be a number of MiB, got {text!r}") from None
    if value <= 0:
        raise InvalidInput(f"the model memory budget must be positive, got {value} MiB")
    return value


def bytes_per_row(metadata: ModelMetadata) -> int:
    """Bytes one row needs inside the model (activations + one prefetched prepared input), from metadata."""
    input_floats = int(metadata.feature_spec["width"])
    activations = (metadata.inference or {}).get("activation_floats_per_row")
    if activations is None:
        activations = _FALLBACK_ACTIVATIONS_PER_INPUT * input_floats
    return _row_bytes(int(activations), input_floats)


def auto_model_batch_rows(metadata: ModelMetadata, budget_mb: float | None = None) -> int:
    """Rows per model call that keep one call's working memory within the budget (at least 1)."""
    return _rows_in_budget(bytes_per_row(metadata), budget_mb, MAX_MODEL_BATCH_ROWS)


def rows_within_budget(model, width: int, budget_mb: float | None = None, cap: int = 4096) -> int:
    """Rows per call of an in-memory Keras model (training's scoring passes) within the same budget: a
    4,096-row batch of 256x256 photos would need ~90 GB of activations."""
    return _rows_in_budget(_row_bytes(activation_floats_per_row(model), int(width)), budget_mb, cap)


def _row_bytes(activation_floats: int, input_floats: int) -> int:
    """float32 bytes of one row's activations plus one prepared input row."""
    return 4 * (activation_floats + input_floats)


def _rows_in_budget(row_bytes: int, budget_mb: float | None, cap: int) -> int:
    return max(1, min(cap, int(memory_budget_mb(budget_mb) * 2**20 // row_bytes)))


def parse_model_batch_rows(text: str | int | None) -> int | None:
    """`--model-batch-rows auto|N` -> None (automatic) or a positive row count."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "auto")):
        return None
    try:
        rows = int(text)
    except ValueError:
        raise InvalidInput(f"--model-batch-rows must be 'auto' or a positive number of rows, got {text!r}") from None
    if rows < 1:
        raise InvalidInput(f"--model-batch-rows must be at least 1, got {rows}")
    return rows
