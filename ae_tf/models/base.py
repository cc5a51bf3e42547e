"""What every autoencoder family shares: normalisation inside the model, and encode/decode/score.

A family supplies an encoder and a decoder; the base class owns the contract that export relies on:
`encode(raw features) -> code`, `decode(code) -> raw-space reconstruction`, `score(raw features) -> one
reconstruction error per row` (mean squared error in the normalised space the model was trained in).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
from keras import ops


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture settings; defaults are the documented recipe (`ae-tf train --help`)."""

    family: str = "dense"
    code_size: int = 8
    hidden: tuple[int, ...] = (128, 64)
    activation: str = "gelu"
    normalization: str = "auto"

    def validate(self) -> None:
        if self.code_size < 1:
            raise ValueError(f"--code-size must be at least 1, got {self.code_size}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"--hidden sizes must be positive, got {self.hidden}")
        if self.normalization not in ("auto", "feature", "global", "none"):
            raise ValueError(f"--normalization must be auto, feature, global or none, got {self.normalization!r}")


@keras.saving.register_keras_serializable("ae_tf")
class Standardize(keras.layers.Layer):
    """(x - shift) / scale with constants fitted on the training data, so raw values go into the model."""

    def __init__(self, shift, scale, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._shift_init = np.asarray(shift, dtype=np.float32)
        self._scale_init = np.asarray(scale, dtype=np.float32)
        self.shift = self.add_weight(
            shape=self._shift_init.shape, initializer=keras.initializers.Constant(self._shift_init),
            trainable=False, name="shift",
        )
        self.scale = self.add_weight(
            shape=self._scale_init.shape, initializer=keras.initializers.Constant(self._scale_init),
            trainable=False, name="scale",
        )

    def call(self, x):
        return (ops.cast(x, "float32") - self.shift) / self.scale

    def invert(self, y):
        return ops.cast(y, "float32") * self.scale + self.shift

    def get_config(self):
        return {**super().get_config(), "shift": self._shift_init.tolist(), "scale": self._scale_init.tolist()}


class Autoencoder(keras.Model):
    """normalise -> encoder -> code -> decoder; trained to rebuild its (normalised) input."""

    def __init__(self, standardize: Standardize, encoder: keras.Model, decoder: keras.Model,
                 config: ModelConfig, **kwargs):
        super().__init__(**kwargs)
        self.standardize = standardize
        self.encoder = encoder
        self.decoder = decoder
        self.config = config

    def call(self, x, training=False):
        return self.decoder(self.encoder(self.standardize(x), training=training), training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = self.standardize(x)
        loss = ops.mean(ops.square(target - ops.cast(y_pred, "float32")))
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        return loss

    def encode(self, x):
        return ops.cast(self.encoder(self.standardize(x), training=False), "float32")

    def decode(self, code):
        return self.standardize.invert(self.decoder(code, training=False))

    def score(self, x):
        target = self.standardize(x)
        rebuilt = ops.cast(self.decoder(self.encoder(target, training=False), training=False), "float32")
        return ops.mean(ops.square(target - rebuilt), axis=-1)
