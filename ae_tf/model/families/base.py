"""What every autoencoder family shares: input preparation inside the model, and encode/decode/score.

A family supplies an encoder and a decoder network (ae_tf.model.families.dense or .conv) and, where it needs one,
a subclass that adds a loss term (sparse, vae). The base class owns the contract that export relies on:
`encode(raw features) -> code`, `decode(code) -> reconstruction in the input's scale`,
`score(raw features) -> one reconstruction error per row` (mean squared error in the space the model was
trained in: standardised units for tabular rows, [0, 1] pixels for images).

Training-time corruption (denoising) sits between the prepared input and the encoder and is active only
when Keras trains; encode/score/decode never see it. Every family reports the plain reconstruction error
as the Keras metric `reconstruction`, so families with different losses can be compared.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ae_tf.model.families.config import ModelConfig


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


def row_mean(values):
    """Mean over every axis but the first: one number per row, for vectors and images alike."""
    return ops.mean(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


def row_sum(values):
    return ops.sum(ops.reshape(values, (ops.shape(values)[0], -1)), axis=-1)


class Autoencoder(keras.Model):
    """prepare -> [corruption, training only] -> encoder -> code -> decoder; rebuilds its prepared input.

    `call` (used only by fit/evaluate) returns a dict with the reconstruction and the code so that loss
    terms of subclasses can read what they need; the serving methods are encode/decode/score.
    """

    def __init__(self, prepare: keras.layers.Layer, encoder: keras.Model, decoder: keras.Model,
                 config: ModelConfig, corruption: keras.layers.Layer | None = None, network: str = "dense",
                 **kwargs):
        super().__init__(**kwargs)
        self.network = network
        self.prepare = prepare
        self.encoder = encoder
        self.decoder = decoder
        self.config = config
        self.corruption = corruption
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")

    # -- training ---------------------------------------------------------------------------------------

    def corrupt(self, x, training=False):
        return x if self.corruption is None else self.corruption(x, training=training)

    def call(self, x, training=False):
        clean = self.prepare(x)
        code = self.encoder(self.corrupt(clean, training), training=training)
        return {"reconstruction": self.decoder(code, training=training), "code": code}

    def regularization(self, outputs, training=True):
        """Extra loss terms of a family (none here); subclasses update their own metrics in it."""
        return 0.0

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = self.prepare(x)
        errors = row_mean(ops.square(target - ops.cast(y_pred["reconstruction"], "float32")))
        self.reconstruction_tracker.update_state(errors)
        loss = ops.mean(errors) + self.regularization(y_pred, training=training)
        if self.losses:
            loss = loss + ops.cast(ops.sum(self.losses), "float32")
        return loss

    # -- serving (what the SavedModel signatures call) --------------------------------------------------

    def embed(self, clean):
        """Prepared input -> code (deterministic): what the decoder rebuilds from."""
        return ops.cast(self.encoder(clean, training=False), "float32")

    def embedding(self, clean, code):
        """The embedding served for a code: the code itself, or with `mirror_invariant` (images) the mean of
        the codes of the image and its left-right mirror, so both orientations embed identically."""
        if not self.config.mirror_invariant or len(clean.shape) != 4:
            return code
        return (code + self.embed(ops.flip(clean, axis=2))) / 2.0

    def _error(self, clean, code):
        rebuilt = ops.cast(self.decoder(code, training=False), "float32")
        return row_mean(ops.square(clean - rebuilt))

    def encode(self, x):
        clean = self.prepare(x)
        return self.embedding(clean, self.embed(clean))

    def decode(self, code):
        return self.prepare.invert(self.decoder(code, training=False))

    def score(self, x):
        clean = self.prepare(x)
        return self._error(clean, self.embed(clean))

    def encode_and_score(self, x):
        """Both in one pass: an image is decoded once, not twice."""
        clean = self.prepare(x)
        code = self.embed(clean)
        return self.embedding(clean, code), self._error(clean, code)

    def describe(self) -> dict:
        """Family settings for the model metadata (what was actually built, defaults resolved)."""
        noise, mask = self.config.corruption() if self.corruption is not None else (0.0, 0.0)
        return {"family": self.config.family, "network": self.network, "code_size": self.config.code_size,
                "corruption": {"noise_stddev": noise, "mask_fraction": mask},
                "mirror_invariant": bool(self.config.mirror_invariant)}
