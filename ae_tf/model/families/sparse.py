"""Sparse autoencoder: a penalty keeps most code units near zero for any one row.

Two penalties (`--sparsity`):
  kl  sigmoid code units; the batch-mean activation of each unit is pulled towards `--sparsity-target`
      with KL(target || mean activation), summed over units (the classic sparse autoencoder).
  l1  ReLU code units; the mean absolute activation is penalised (L1 activity regularisation).
`--sparsity-weight` scales the penalty. Training reports `code_activation` (mean activation of the code)
and `sparsity_penalty` as Keras metrics, so the log shows that the code is sparse.
"""

from __future__ import annotations

import keras
from keras import ops

from ae_tf.inputs.features import FeatureSpec
from ae_tf.model.families.base import Autoencoder, ModelConfig
from ae_tf.model.families.layers import make_corruption
from ae_tf.model.families.networks import build_networks

EPSILON = 1e-6


class SparseAutoencoder(Autoencoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.activation_tracker = keras.metrics.Mean(name="code_activation")
        self.penalty_tracker = keras.metrics.Mean(name="sparsity_penalty")

    def regularization(self, outputs, training=True):
        code = ops.cast(outputs["code"], "float32")
        self.activation_tracker.update_state(ops.mean(code, axis=-1))
        if self.config.sparsity == "kl":
            rho = self.config.sparsity_target
            rho_hat = ops.clip(ops.mean(code, axis=0), EPSILON, 1 - EPSILON)
            divergence = rho * ops.log(rho / rho_hat) + (1 - rho) * ops.log((1 - rho) / (1 - rho_hat))
            penalty = ops.sum(divergence)
        else:
            penalty = ops.mean(ops.abs(code))
        self.penalty_tracker.update_state(penalty)
        return self.config.sparsity_weight * penalty

    def describe(self) -> dict:
        return {**super().describe(), "sparsity": {"penalty": self.config.sparsity,
                                                   "weight": self.config.sparsity_weight,
                                                   "target": self.config.sparsity_target}}


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    activation = "sigmoid" if config.sparsity == "kl" else "relu"
    network, encoder, decoder = build_networks(config, spec, code_activation=activation)
    return SparseAutoencoder(prepare, encoder, decoder, config, corruption=make_corruption(*config.corruption()),
                             network=network, name=f"sparse_{network}_autoencoder")
