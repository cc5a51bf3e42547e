"""Command-line pieces for the model families: the flags `train` and `sweep` share, and the lines `train`
prints about the family and the schedule.

Family flags, and which family reads them:
  --model dense|conv|denoising|sparse|vae   --base dense|conv (network under denoising/sparse/vae)
  --noise-stddev, --mask-fraction           training-time corruption; any family (denoising defaults to 0.5)
  --sparsity kl|l1, --sparsity-weight, --sparsity-target                   sparse
  --beta                                                                   vae
  --image-size, --channels, --filters                                      image features, conv
  --mirror-invariant                                                       image features
"""

from __future__ import annotations

import argparse

from ae_tf.contracts import ModelMetadata
from ae_tf.model.families.config import FAMILY_NAMES, ModelConfig

DEFAULTS = ModelConfig()


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", default=None, help="Parquet files: a glob or a directory (local or gs://)")
    p.add_argument("--features", default=None,
                   help="one list column (list<float> or fixed_size_list<float>), comma-separated numeric columns, "
                        "or one image column (binary, struct<bytes, path>, or a list of pixels with --model conv); "
                        "with --tfds: the feature to use (default: its image)")
    p.add_argument("--tfds", default=None, metavar="NAME[:SPLIT]",
                   help="train on a TensorFlow Datasets split instead of Parquet, e.g. mnist or fashion_mnist:train")
    p.add_argument("--tfds-data-dir", default=None, help="where TFDS keeps (and downloads) datasets")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="family", default="dense", choices=FAMILY_NAMES, help="model family")
    p.add_argument("--base", default=None, choices=["dense", "conv"],
                   help="network under denoising/sparse/vae (default: conv for images, dense otherwise)")
    p.add_argument("--hidden", default=",".join(map(str, DEFAULTS.hidden)),
                   help="dense hidden layer sizes from input to code, comma-separated")
    p.add_argument("--activation", default=DEFAULTS.activation, help="activation of the hidden layers")
    p.add_argument("--normalization", default=DEFAULTS.normalization, choices=["auto", "feature", "global", "none"],
                   help="auto: per column for scalar columns, one scale for a vector column (images: [0, 1])")
    p.add_argument("--noise-stddev", type=float, default=None,
                   help="Gaussian noise added to the input while training (denoising; any family)")
    p.add_argument("--mask-fraction", type=float, default=None,
                   help="fraction of input values zeroed while training (masking noise; any family)")
    p.add_argument("--sparsity", default=DEFAULTS.sparsity, choices=["kl", "l1"],
                   help="sparse: KL to --sparsity-target on sigmoid codes, or L1 on ReLU codes")
    p.add_argument("--sparsity-weight", type=float, default=DEFAULTS.sparsity_weight, help="sparse: penalty weight")
    p.add_argument("--sparsity-target", type=float, default=DEFAULTS.sparsity_target,
                   help="sparse (kl): target mean activation of each code unit")
    p.add_argument("--beta", type=float, default=DEFAULTS.beta, help="vae: weight of the KL term")
    p.add_argument("--image-size", default=None, help="images are resized to SIZE or HxW (default: the first image's size)")
    p.add_argument("--channels", type=int, default=None, choices=[1, 3], help="image channels (default: the first image's)")
    p.add_argument("--filters", default=",".join(map(str, DEFAULTS.filters)),
                   help="conv: filters per stride-2 layer (each halves the image side)")
    p.add_argument("--mirror-invariant", action="store_true", default=None,
                   help="images: embed each photo as the mean of its code and its mirror image's code, so "
                        "left-right flipped copies get the same embedding (reconstruction is unchanged)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """Parsed family flags -> make_train_config keyword arguments."""
    return dict(family=args.family, base=args.base, hidden=args.hidden, activation=args.activation,
                normalization=args.normalization, noise_stddev=args.noise_stddev, mask_fraction=args.mask_fraction,
                sparsity=args.sparsity, sparsity_weight=args.sparsity_weight, sparsity_target=args.sparsity_target,
                beta=args.beta, image_size=args.image_size, channels=args.channels, filters=args.filters,
                mirror_invariant=args.mirror_invariant, tfds=args.tfds, tfds_data_dir=args.tfds_data_dir)


def family_summary(metadata: ModelMetadata) -> str | None:
    """One line of what the family reports (validation values at the best epoch), for `ae-tf train`."""
    metrics = (metadata.training or {}).get("metrics", {})
    shown = [f"{name} {metrics[f'val_{name}']:.5g}" for name in
             ("reconstruction", "kl", "nll", "elbo", "code_activation", "sparsity_penalty") if f"val_{name}" in metrics]
    return "validation " + ", ".join(shown) if shown else None


def schedule_summary(training: dict) -> str:
    """One line for `ae-tf train`: passes per epoch (and the step floor when it raised them), and the cache."""
    plan, cache = training.get("schedule") or {}, training.get("cache") or {}
    line = f"{plan.get('passes_per_epoch', 1)} pass(es) per epoch of {plan.get('rows', 0):,} rows"
    if plan.get("raised"):
        line += f" (raised by --min-steps {plan['min_steps']:,}: {plan['min_steps_origin']})"
    return line + f"; cache {'in memory' if cache.get('enabled') else 'off'} (--cache {cache.get('mode')})"
