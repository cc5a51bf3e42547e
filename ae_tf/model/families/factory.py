"""The family registry: name -> factory, and the input layer every family starts with."""

from __future__ import annotations

import keras
import numpy as np

from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import IMAGE, VECTOR, FeatureSpec
from ae_tf.model.families import conv, denoising, dense, sparse, vae
from ae_tf.model.families.base import Autoencoder, Standardize
from ae_tf.model.families.config import ModelConfig
from ae_tf.model.families.layers import ImageInput

FAMILIES = {
    "dense": dense.build_model,
    "conv": conv.build_model,
    "denoising": denoising.build_model,
    "sparse": sparse.build_model,
    "vae": vae.build_model,
}


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    """Build the family named in `config` (validated first, so a typo fails before any data is read)."""
    config.validate()
    if config.mirror_invariant and spec.kind != IMAGE:
        raise InvalidInput(f"--mirror-invariant needs an image feature column; {', '.join(spec.columns)} is {spec.kind}")
    if config.family not in FAMILIES:
        raise InvalidInput(f"--model must be one of {', '.join(sorted(FAMILIES))}, got {config.family!r}")
    return FAMILIES[config.family](config, spec, prepare)


def input_layer(spec: FeatureSpec, stats=None, normalization: str = "auto") -> tuple[keras.layers.Layer, dict]:
    """The model's first layer and its description for the metadata.

    Images: decode/resize/scale to [0, 1] (no statistics needed). Numbers: standardise with the training
    statistics (`stats`, an ae_tf.inputs.data.FeatureStats): `auto` is per column for scalar columns and one
    scale for a vector column.
    """
    if spec.kind == IMAGE:
        return ImageInput(spec.image.to_dict(), name="image_input"), {"mode": "image", "range": [0.0, 1.0]}
    mode = normalization
    if mode == "auto":
        mode = "global" if spec.kind == VECTOR else "feature"
    shift, scale = stats.scales(mode)
    layer = Standardize(np.asarray(shift), np.asarray(scale), name="standardize")
    return layer, {"mode": mode, "shift": np.asarray(shift).tolist(), "scale": np.asarray(scale).tolist()}

