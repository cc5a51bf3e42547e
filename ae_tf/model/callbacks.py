"""Training callbacks that make long runs readable and stop bad ones early."""

from __future__ import annotations

import json
import logging
import time

import keras
import numpy as np

from ae_tf.errors import TrainingDiverged

log = logging.getLogger(__name__)


def epoch_line(logs: dict) -> str:
    """The metrics of one epoch, losses first; a metric equal to its loss (a plain autoencoder's
    `reconstruction` is its loss) is left out rather than printed twice."""
    numbers = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
    repeats = {k for k in numbers if k.endswith("reconstruction") and
               numbers[k] == numbers.get(k.replace("reconstruction", "loss"))}
    order = sorted(numbers, key=lambda k: (k not in ("loss", "val_loss"), k.startswith("val_"), k))
    return " ".join(f"{k}={numbers[k]:.5f}" if abs(numbers[k]) >= 1e-3 else f"{k}={numbers[k]:.3g}"
                    for k in order if k not in repeats)


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch (losses and seconds), readable in plain logs and CI output; Keras' own
    per-epoch line is turned off (`fit(verbose=0)`), so each epoch is printed once."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        total = (self.params or {}).get("epochs")
        log.info("epoch %d%s: %s (%.1fs)", epoch + 1, f"/{total}" if total else "", epoch_line(logs),
                 time.perf_counter() - self._start)


class PausePoint(keras.callbacks.Callback):
    """For the interrupt tests only (AE_TF_PAUSE_AT=batches): wait after the first training batch."""

    def on_train_batch_end(self, batch, logs=None):
        from ae_tf.interrupts import pause_point

        pause_point("batches")


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss with a message that says what to try."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True
            raise TrainingDiverged(
                f"training loss became {loss} at batch {batch}: lower --learning-rate or check the input"
            )


class EpochHistory(keras.callbacks.Callback):
    """Appends each finished epoch's metrics to a JSON-lines file, so a resumed run keeps the whole curve."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):

        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    @staticmethod
    def read(path: str) -> dict:
        """{metric: [value per epoch]}, the shape of Keras' History, last record per epoch winning."""

        by_epoch = {}
        with open(path) as f:
            for line in f:
                if line.strip():
                    record = json.loads(line)
                    by_epoch[record.pop("epoch")] = record
        keys = sorted({k for r in by_epoch.values() for k in r})
        return {k: [by_epoch[e].get(k, float("nan")) for e in sorted(by_epoch)] for k in keys}
