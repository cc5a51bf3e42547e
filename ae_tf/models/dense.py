"""Dense (fully connected) autoencoder for tabular rows and flat vectors."""

from __future__ import annotations

import keras

from ae_tf.models.base import Autoencoder, ModelConfig, Standardize


def build_model(config: ModelConfig, width: int, standardize: Standardize) -> Autoencoder:
    """Mirror-image MLP: width -> hidden... -> code (linear) -> reversed hidden... -> width (linear)."""
    encoder = keras.Sequential(
        [keras.Input((width,))]
        + [keras.layers.Dense(h, activation=config.activation) for h in config.hidden]
        + [keras.layers.Dense(config.code_size, name="code")],
        name="encoder",
    )
    decoder = keras.Sequential(
        [keras.Input((config.code_size,))]
        + [keras.layers.Dense(h, activation=config.activation) for h in reversed(config.hidden)]
        + [keras.layers.Dense(width, dtype="float32", name="reconstruction")],
        name="decoder",
    )
    return Autoencoder(standardize, encoder, decoder, config, name="dense_autoencoder")
