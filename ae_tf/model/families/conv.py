"""Convolutional autoencoder for images: stride-2 convolutions down to a flat code, and back up.

With `filters=(32, 64)` a 28x28 image goes 28 -> 14 -> 7, is flattened into a Dense code of `code_size`
numbers, and the decoder mirrors it with transposed convolutions. The image side must be a multiple of
2**len(filters) (checked when the feature spec is resolved, before any training).
"""

from __future__ import annotations

import keras

from ae_tf.inputs.features import IMAGE, FeatureError, FeatureSpec
from ae_tf.model.families.base import Autoencoder, ModelConfig
from ae_tf.model.families.layers import make_corruption


def networks(config: ModelConfig, spec: FeatureSpec, code_units: int,
             code_activation: str | None = None) -> tuple[keras.Model, keras.Model]:
    if spec.kind != IMAGE:
        raise FeatureError(f"a conv model needs an image column; {','.join(spec.columns)} is a {spec.kind} feature")
    image = spec.image
    steps = 2 ** len(config.filters)
    if image.height % steps or image.width % steps:
        raise FeatureError(f"image size {image.height}x{image.width} must be a multiple of {steps} for "
                           f"{len(config.filters)} conv layers; pass --image-size")
    inner = (image.height // steps, image.width // steps, config.filters[-1])
    encoder = keras.Sequential(
        [keras.Input(image.shape)]
        + [keras.layers.Conv2D(f, 3, strides=2, padding="same", activation=config.activation)
           for f in config.filters]
        + [keras.layers.Flatten(), keras.layers.Dense(code_units, activation=code_activation, name="code")],
        name="encoder",
    )
    decoder = keras.Sequential(
        [keras.Input((config.code_size,)),
         keras.layers.Dense(inner[0] * inner[1] * inner[2], activation=config.activation),
         keras.layers.Reshape(inner)]
        + [keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation=config.activation)
           for f in reversed(config.filters)]
        + [keras.layers.Conv2D(image.channels, 3, padding="same", activation="sigmoid", dtype="float32",
                               name="reconstruction")],
        name="decoder",
    )
    return encoder, decoder


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    encoder, decoder = networks(config, spec, config.code_size)
    return Autoencoder(prepare, encoder, decoder, config, corruption=make_corruption(*config.corruption()),
                       network="conv", name="conv_autoencoder")
