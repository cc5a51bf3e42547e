"""Command-line pieces for the model families: the flags `train` and `sweep` share, and the `sweep` and
`tfds-to-parquet` commands. Kept apart from ae_tf.commands.main so the main module stays a thin dispatcher.

Family flags, and which family reads them:
  --model dense|conv|denoising|sparse|vae   --base dense|conv (network under denoising/sparse/vae)
  --noise-stddev, --mask-fraction           training-time corruption; any family (denoising defaults to 0.5)
  --sparsity kl|l1, --sparsity-weight, --sparsity-target                   sparse
  --beta                                                                   vae
  --image-size, --channels, --filters                                      image features, conv
"""

from __future__ import annotations

import argparse

from ae_tf.commands.help import HelpFormatter
from ae_tf.defaults import default_of
from ae_tf.errors import OutputExists
from ae_tf.model.families.config import FAMILY_NAMES, ModelConfig
from ae_tf.model.sweep import SweepConfig
from ae_tf.model.train import TrainConfig

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


def model_kwargs(args: argparse.Namespace) -> dict:
    """Parsed family flags -> make_train_config keyword arguments."""
    return dict(family=args.family, base=args.base, hidden=args.hidden, activation=args.activation,
                normalization=args.normalization, noise_stddev=args.noise_stddev, mask_fraction=args.mask_fraction,
                sparsity=args.sparsity, sparsity_weight=args.sparsity_weight, sparsity_target=args.sparsity_target,
                beta=args.beta, image_size=args.image_size, channels=args.channels, filters=args.filters,
                tfds=args.tfds, tfds_data_dir=args.tfds_data_dir)


def family_summary(metadata: dict) -> str | None:
    """One line of what the family reports (validation values at the best epoch), for `ae-tf train`."""
    metrics = metadata.get("training", {}).get("metrics", {})
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


# --- ae-tf sweep ------------------------------------------------------------------------------------------


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="train one model per code size and compare held-out error with PCA",
                       formatter_class=HelpFormatter,
                       description="Start small, grow only while reconstruction is unacceptable: trains one model "
                                   "per --code-sizes entry on a short schedule, prints held-out reconstruction error "
                                   "next to PCA of the same size, marks the smallest size within --tolerance of the "
                                   "best, and saves OUTPUT_DIR/sweep.png and sweep.json.")
    add_input_arguments(p)
    p.add_argument("--code-sizes", default="2,4,8,16,32", help="comma-separated code sizes to try")
    p.add_argument("--output-dir", required=True, help="directory for code-K/ models, sweep.json and sweep.png")
    p.add_argument("--tolerance", type=float, default=default_of(SweepConfig, "tolerance"),
                   help="chosen: smallest size with error <= best + TOLERANCE x held-out variance")
    p.add_argument("--max-rows", type=int, default=default_of(SweepConfig, "max_rows"), help="train/validation rows kept for the PCA comparison")
    add_model_arguments(p)
    p.add_argument("--epochs", type=int, default=10, help="epochs per size (short schedule)")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience per size")
    p.add_argument("--batch-size", type=int, default=default_of(TrainConfig, "batch_size"), help="rows per training step")
    p.add_argument("--learning-rate", type=float, default=default_of(TrainConfig, "learning_rate"), help="Adam learning rate")
    p.add_argument("--validation-fraction", type=float, default=default_of(TrainConfig, "validation_fraction"), help="rows held out (the comparison rows)")
    p.add_argument("--seed", type=int, default=default_of(TrainConfig, "seed"), help="seed for the split, shuffling and initial weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --output-dir")


def cmd_sweep(args: argparse.Namespace) -> int:
    import os

    from ae_tf.commands.precheck import check_training_input
    from ae_tf.model.quiet_tf import import_tensorflow
    from ae_tf.model.sweep import SweepConfig, parse_code_sizes, run_sweep
    from ae_tf.model.train import make_train_config

    sizes = parse_code_sizes(args.code_sizes)
    template = make_train_config(
        args.input, args.features, os.path.join(args.output_dir, "template"), sizes[0], epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, learning_rate=args.learning_rate,
        validation_fraction=args.validation_fraction, seed=args.seed, overwrite=args.overwrite,
        **model_kwargs(args),
    )
    config = SweepConfig(template, sizes, args.output_dir, args.tolerance, args.max_rows)
    config.validate()
    check_training_input(template.input, template.features)
    if os.path.isdir(args.output_dir) and os.listdir(args.output_dir) and not args.overwrite:
        raise OutputExists(f"{args.output_dir}: not empty; choose a new directory or pass --overwrite")
    import_tensorflow()
    result = run_sweep(config)
    print(result.table())
    print(f"chosen     code size {result.chosen} (best {result.best}; within {args.tolerance:.0%} of the held-out "
          f"variance {result.variance:.4g})")
    if result.range_note:
        print(f"note       {result.range_note}")
    print(f"written    {result.path}" + (f", {result.plot}" if result.plot else " (no plot: matplotlib missing)"))
    return 0


# --- ae-tf tfds-to-parquet --------------------------------------------------------------------------------


def add_tfds_parser(sub) -> None:
    p = sub.add_parser("tfds-to-parquet", help="write a TensorFlow Datasets split as Parquet (images as bytes)",
                       formatter_class=HelpFormatter)
    p.add_argument("name", metavar="NAME[:SPLIT]", help="TFDS dataset, e.g. mnist or fashion_mnist:test")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory for part-NNNNN.parquet")
    p.add_argument("--data-dir", default=None, help="where TFDS keeps (and downloads) datasets")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="rows in each Parquet file")
    p.add_argument("--limit", type=int, default=None, help="write only the first N rows")
    p.add_argument("--overwrite", action="store_true", help="replace part files in a non-empty OUT_DIR")


def cmd_tfds_to_parquet(args: argparse.Namespace) -> int:
    from ae_tf.inputs.tfds_source import tfds_to_parquet
    from ae_tf.model.quiet_tf import import_tensorflow

    import_tensorflow()

    summary = tfds_to_parquet(args.name, args.out_dir, args.data_dir, args.rows_per_file, args.overwrite, args.limit)
    print(f"dataset    {summary['dataset']} split {summary['split']}: {summary['rows']:,} rows")
    print(f"columns    {', '.join(summary['columns'])}")
    print(f"output     {args.out_dir.rstrip('/')}/part-*.parquet ({len(summary['files'])} file(s))")
    return 0
