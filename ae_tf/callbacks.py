"""Training callbacks that make long runs readable and stop bad ones early."""

from __future__ import annotations

import logging
import time

import keras
import numpy as np

log = logging.getLogger(__name__)


class EpochSummary(keras.callbacks.Callback):
    """One log line per epoch (losses and seconds), readable in plain logs and CI output."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        parts = [f"{k}={v:.5f}" for k, v in sorted((logs or {}).items()) if isinstance(v, (int, float))]
        log.info("epoch %d: %s (%.1fs)", epoch + 1, " ".join(parts), time.perf_counter() - self._start)


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss with a message that says what to try."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            self.model.stop_training = True
            raise FloatingPointError(
                f"training loss became {loss} at batch {batch}: lower --learning-rate or check the input"
            )
