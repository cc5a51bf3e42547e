"""Variational autoencoder: the encoder gives a Gaussian over codes, the decoder a Gaussian over inputs.

- The encoder emits mean and log-variance (2 x code_size); training samples a code with the
  reparameterisation trick (mean + sigma * eps), so gradients flow through the sampling.
- The decoder's output variance is one number for all features, set to its optimal value, the mean
  squared error (the "optimal sigma" VAE of Rybkin et al., 2021): in training it is the batch's own MSE,
  and a moving average of it is kept in the model for evaluation. This balances reconstruction against
  the KL term whatever the data's scale, without a hand-tuned weight; `--beta` still scales the KL term.
- Loss per row: -log p(x | z) + beta * KL(q(z | x) || N(0, I)). Training reports `reconstruction` (MSE,
  as every family), `nll` (the first term), `kl` and `elbo` (= -(nll + kl), in nats per row; an
  unbiased one-sample estimate, so val_elbo is the held-out ELBO). nll and elbo are densities of the
  stored values (the standardisation's Jacobian is included; images: pixels scaled to [0, 1]).
- The embedding is the mean; decode/score use the mean too (deterministic). `sample(n)` decodes n codes
  drawn from the prior: the SavedModel's extra `sample` signature.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ae_tf.inputs.features import FeatureSpec
from ae_tf.model.families.base import Autoencoder, ModelConfig, Standardize, row_sum
from ae_tf.model.families.layers import make_corruption
from ae_tf.model.families.networks import build_networks

LOG_VARIANCE_LIMIT = 10.0  # clip encoder log-variances: exp(+-10) keeps early steps finite
MOVING_AVERAGE = 0.9


class VariationalAutoencoder(Autoencoder):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seed_generator = keras.random.SeedGenerator()
        self.decoder_log_variance = self.add_weight(shape=(), initializer="zeros", trainable=False,
                                                    name="decoder_log_variance")
        self.kl_tracker = keras.metrics.Mean(name="kl")
        self.nll_tracker = keras.metrics.Mean(name="nll")
        self.elbo_tracker = keras.metrics.Mean(name="elbo")

    def split(self, hidden):
        hidden = ops.cast(hidden, "float32")
        k = self.config.code_size
        log_var = ops.clip(hidden[:, k:], -LOG_VARIANCE_LIMIT, LOG_VARIANCE_LIMIT)
        return hidden[:, :k], log_var

    def call(self, x, training=False):
        # always sampled: evaluate() then measures the same ELBO training optimises
        clean = self.prepare(x)
        mean, log_var = self.split(self.encoder(self.corrupt(clean, training), training=training))
        eps = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        code = mean + ops.exp(0.5 * log_var) * eps
        return {"reconstruction": self.decoder(code, training=training), "code": code, "mean": mean,
                "log_var": log_var}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = self.prepare(x)
        squared = row_sum(ops.square(target - ops.cast(y_pred["reconstruction"], "float32")))
        features = float(math.prod(target.shape[1:]))
        errors = squared / features
        self.reconstruction_tracker.update_state(errors)
        if training:
            log_sigma2 = ops.log(ops.mean(errors) + 1e-6)
            self.decoder_log_variance.assign(MOVING_AVERAGE * self.decoder_log_variance
                                             + (1 - MOVING_AVERAGE) * ops.stop_gradient(log_sigma2))
        else:
            log_sigma2 = self.decoder_log_variance
        nll = 0.5 * (squared / ops.exp(log_sigma2) + features * (log_sigma2 + math.log(2 * math.pi)))
        if isinstance(self.prepare, Standardize):  # density of the raw values, not the standardised ones
            nll = nll + ops.sum(ops.log(self.prepare.scale))
        mean, log_var = y_pred["mean"], y_pred["log_var"]
        kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1)
        self.nll_tracker.update_state(nll)
        self.kl_tracker.update_state(kl)
        self.elbo_tracker.update_state(-(nll + kl))
        return ops.mean(nll + self.config.beta * kl)

    def embed(self, clean):
        mean, _ = self.split(self.encoder(clean, training=False))
        return mean

    def sample(self, n):
        """n codes from the prior N(0, I), decoded into rows (or images) in the input's scale."""
        import tensorflow as tf

        code = tf.random.normal(tf.stack([tf.cast(n, tf.int32), self.config.code_size]))
        return self.decode(code)

    def describe(self) -> dict:
        return {**super().describe(), "beta": self.config.beta,
                "decoder_variance": float(ops.convert_to_numpy(ops.exp(self.decoder_log_variance)))}


def build_model(config: ModelConfig, spec: FeatureSpec, prepare: keras.layers.Layer) -> Autoencoder:
    network, encoder, decoder = build_networks(config, spec, code_units=2 * config.code_size)
    return VariationalAutoencoder(prepare, encoder, decoder, config,
                                  corruption=make_corruption(*config.corruption()), network=network,
                                  name=f"variational_{network}_autoencoder")
