"""The two network shapes every family builds on: dense (any feature) and conv (images)."""

from __future__ import annotations

import keras

from ae_tf.inputs.features import IMAGE, FeatureSpec
from ae_tf.model.families import conv, dense
from ae_tf.model.families.base import ModelConfig

NETWORKS = {"dense": dense.networks, "conv": conv.networks}


def build_networks(config: ModelConfig, spec: FeatureSpec, code_units: int | None = None,
                   code_activation: str | None = None) -> tuple[str, keras.Model, keras.Model]:
    """(network name, encoder, decoder) for `config.resolve_base` (conv for images unless --base dense)."""
    network = config.resolve_base(spec.kind == IMAGE)
    encoder, decoder = NETWORKS[network](config, spec, code_units or config.code_size, code_activation)
    return network, encoder, decoder
