"""Model families: one module each, one factory shape `build_model(config, spec, prepare) -> Autoencoder`.

`config` is the ModelConfig, `spec` the FeatureSpec (vector, scalars or image), `prepare` the input layer
made by `input_layer` (standardisation for numbers, decoding and scaling for images), so every family
gets raw stored values in and keeps the SavedModel contract.

  dense.py      MLP (flattens images)          conv.py    stride-2 conv encoder/decoder for images
  denoising.py  dense/conv + training noise    sparse.py  KL or L1 penalty on the code
  vae.py        variational, `sample` signature
ModelConfig imports without TensorFlow (the CLI validates flags instantly); everything else is loaded
on first use.
"""

from __future__ import annotations

from ae_tf.model.families.config import FAMILY_NAMES, ModelConfig

_LAZY = {"FAMILIES": "factory", "build_model": "factory", "input_layer": "factory", "Autoencoder": "base",
         "Standardize": "base", "ImageInput": "layers"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ae_tf.model.families.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ae_tf.model.families' has no attribute {name!r}")


__all__ = ["FAMILIES", "FAMILY_NAMES", "Autoencoder", "ImageInput", "ModelConfig", "Standardize", "build_model",
           "input_layer"]
