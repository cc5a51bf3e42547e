"""Model families: one module each, one factory shape `build_model(config, width, standardize)`."""

from __future__ import annotations

from ae_tf.models import dense
from ae_tf.models.base import Autoencoder, ModelConfig, Standardize

FAMILIES = {"dense": dense.build_model}


def build_model(config: ModelConfig, width: int, standardize: Standardize) -> Autoencoder:
    """Build the family named in `config` (validated first, so a typo fails before any data is read)."""
    config.validate()
    if config.family not in FAMILIES:
        raise ValueError(f"--model must be one of {', '.join(sorted(FAMILIES))}, got {config.family!r}")
    return FAMILIES[config.family](config, width, standardize)


__all__ = ["FAMILIES", "Autoencoder", "ModelConfig", "Standardize", "build_model"]
