"""Dense (fully connected) autoencoder for tabular rows and flat vectors (images are flattened)."""

from __future__ import annotations

import keras

from ae_tf.inputs.features import IMAGE, FeatureSpec
from ae_tf.model.families.base import Autoencoder, ModelConfig
from ae_tf.model.families.layers import make_corruption


def networks(config: ModelConfig, spec: FeatureSpec, code_units: int,
             code_activation: str | None = None) -> tuple[keras.Model, keras.Model]:
    """Mirror-image MLP: input -> hidden... -> code -> reversed hidden... -> input shape.

    The code layer is linear unless a family asks otherwise (sparse: sigmoid or ReLU); `code_units` may
    differ from the decoder's input size (a VAE's encoder emits mean and log-variance).
    """
    image = spec.image if spec.kind == IMAGE else None
    in_shape = image.shape if image else (spec.width,)
    flat = [keras.layers.Flatten()] if image else []
    encoder = keras.Sequential(
        [keras.Input(in_shape)] + flat
        + [keras.layers.Dense(h, activation=config.activation) for h in config.hidden]
        + [keras.layers.Dense(code_units, activation=code_activation, name="code")],
        name="encoder",
    )
    # images live in [0, 1]: a sigmoid output keeps reconstructions (and VAE samples) in range
    out = [keras.layers.Dense(image.size, activation="sigmoid", dtype="float32", name="reconstruction"),
           keras.layers.Reshape(image.shape, dtype="float32")] if image else \
          [keras.layers.Dense(spec.width, dtype="float32", name="reconstruction")]
    decoder = keras.Sequential(
        [keras.Input((config.code_size,))]
        + [keras.layers.Dense(h, activation=config.activation) for h in reversed(config.hidden)]
        + out,
        name="decoder",
    )
    return encoder, decoder


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    encoder, decoder = networks(config, spec, config.code_size)
    return Autoencoder(prepare, encoder, decoder, config, corruption=make_corruption(*config.corruption()),
                       network="dense", name="dense_autoencoder")
