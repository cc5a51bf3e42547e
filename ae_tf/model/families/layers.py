"""Layers the families share: image input preparation and training-time corruption."""

from __future__ import annotations

import keras
from keras import ops

from ae_tf.inputs.images import ImageSpec, to_model_space


@keras.saving.register_keras_serializable("ae_tf")
class ImageInput(keras.layers.Layer):
    """Stored image (encoded bytes, or a flat pixel array) -> float32 [rows, h, w, c] in [0, 1].

    Lives inside the model so the SavedModel decodes and resizes by itself; the same functions prepare
    training batches in tf.data, and an already-prepared batch (rank 4) passes through unchanged.
    """

    def __init__(self, image: dict, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.image = ImageSpec.from_dict(image)

    def call(self, x):
        return to_model_space(x, self.image)

    def invert(self, y):
        """Model output -> image in [0, 1] (the scale decode/sample return)."""
        return ops.clip(ops.cast(y, "float32"), 0.0, 1.0)

    def get_config(self):
        return {**super().get_config(), "image": self.image.to_dict()}


@keras.saving.register_keras_serializable("ae_tf")
class Corruption(keras.layers.Layer):
    """Denoising corruption, active only in training: Gaussian noise and/or masking noise.

    Masking sets a random `mask_fraction` of the values to zero without rescaling the rest (unlike
    Dropout): the network must fill them in from the others. Zero is the column mean after
    standardisation, and black for images.
    """

    def __init__(self, noise_stddev: float = 0.0, mask_fraction: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.noise_stddev = float(noise_stddev)
        self.mask_fraction = float(mask_fraction)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        pass  # no weights; defined so Keras knows the layer is complete before its first training call

    def call(self, x, training=False):
        if not training:
            return x
        if self.noise_stddev > 0:
            x = x + keras.random.normal(ops.shape(x), stddev=self.noise_stddev, seed=self.seed_generator,
                                        dtype=x.dtype)
        if self.mask_fraction > 0:
            keep = keras.random.uniform(ops.shape(x), seed=self.seed_generator) >= self.mask_fraction
            x = x * ops.cast(keep, x.dtype)
        return x

    def get_config(self):
        return {**super().get_config(), "noise_stddev": self.noise_stddev, "mask_fraction": self.mask_fraction,
                "seed": self.seed}


def make_corruption(noise_stddev: float, mask_fraction: float, seed: int | None = None) -> Corruption | None:
    """None when there is nothing to corrupt, so a plain model has no extra layer at all."""
    if noise_stddev <= 0 and mask_fraction <= 0:
        return None
    return Corruption(noise_stddev, mask_fraction, seed=seed, name="corruption")
