"""Denoising autoencoder: learn to rebuild the clean input from a corrupted copy.

Not a separate network: the dense or conv network (`--base`, default conv for images) with a Corruption
layer that is active only while Keras trains. `--noise-stddev` (Gaussian) and `--mask-fraction` (masking
noise) choose the corruption; with neither, Gaussian noise of stddev 0.5 (in the model's input units:
standardised values, or [0, 1] pixels; the classic denoising setting, and the strongest anomaly
detector on breast_cancer in benchmarks/quality.py). Those two flags also work on every other family; `--model
denoising` is the named recipe. The exported encode/score/decode never corrupt.
"""

from __future__ import annotations

import keras

from ae_tf.inputs.features import FeatureSpec
from ae_tf.model.families.base import Autoencoder, ModelConfig
from ae_tf.model.families.layers import make_corruption
from ae_tf.model.families.networks import build_networks


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    network, encoder, decoder = build_networks(config, spec)
    return Autoencoder(prepare, encoder, decoder, config, corruption=make_corruption(*config.corruption()),
                       network=network, name=f"denoising_{network}_autoencoder")
