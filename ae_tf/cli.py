"""The `ae-tf` command.

Model-side commands (train) live here. Pipeline commands (encode, demo) are Beam programs in the
`pipelines` package; they are imported only when invoked, so `ae_tf` itself never imports Beam and a
trainer image without Beam can still run `ae-tf train`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from ae_tf.cli_models import (
    add_input_arguments,
    add_model_arguments,
    add_sweep_parser,
    add_tfds_parser,
    cmd_sweep,
    cmd_tfds_to_parquet,
    family_summary,
    model_kwargs,
)
from ae_tf.cli_registry import add_models_parser, add_retrain_parser, cmd_models, cmd_retrain
from ae_tf.cli_report import add_report_parser, cmd_report

# Beam programs behind `ae-tf NAME`: the same as `python -m MODULE`.
PIPELINE_COMMANDS = {
    "encode": ("pipelines.encode", "batch-encode Parquet into embedding Parquet (Beam pipeline)"),
    "demo": ("pipelines.demo", "make demo data, train, export and encode it end to end"),
    "reduce": ("pipelines.reduce", "PCA-reduce embedding Parquet; saves the fit (Beam pipeline)"),
    "dedup": ("pipelines.dedup", "find exact and near-duplicate rows of embedding Parquet (Beam pipeline)"),
}

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, PermissionError, FloatingPointError)


def configure_logging(verbose: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The local runner logs a worker's traceback before re-raising it; the CLI reports the error itself
    # (one line for user errors, the full traceback otherwise), so Beam's copy is shown only with --verbose.
    logging.getLogger("apache_beam").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    logging.getLogger().handlers[0].addFilter(lambda record: verbose or record.levelno > logging.WARNING
                                             or "Resource module is not available" not in record.getMessage())


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train an autoencoder on Parquet and export a SavedModel directory",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_input_arguments(p)
    p.add_argument("--code-size", type=int, required=True, help="numbers in each embedding (the bottleneck)")
    p.add_argument("--output", required=True, help="model directory to write (a SavedModel)")
    add_model_arguments(p)
    p.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=256, help="rows per training step")
    p.add_argument("--learning-rate", type=float, default=3e-3,
                   help="Adam learning rate (halved when validation loss stalls for half the patience)")
    p.add_argument("--min-steps-per-epoch", type=int, default=100,
                   help="a small dataset is cycled so each epoch has at least this many steps")
    p.add_argument("--validation-fraction", type=float, default=0.1, help="rows held out for validation")
    p.add_argument("--patience", type=int, default=5, help="epochs without validation improvement before stopping")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, shuffling and initial weights")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU (ignored on CPU)")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoints and run files (default: OUTPUT.run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last finished epoch (backup in the checkpoint dir)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard logs to CHECKPOINT_DIR/tensorboard (tensorboard --logdir ...)")


def cmd_train(args: argparse.Namespace) -> int:
    from ae_tf.anomaly import describe_score
    from ae_tf.train import make_train_config, train

    config = make_train_config(
        args.input, args.features, args.output, args.code_size, **model_kwargs(args), epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, min_steps_per_epoch=args.min_steps_per_epoch,
        validation_fraction=args.validation_fraction, patience=args.patience, seed=args.seed,
        mixed_precision=args.mixed_precision, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
        resume=args.resume, tensorboard=args.tensorboard,
    )
    result = train(config)
    meta = result.metadata
    training = meta["training"]
    print(f"model      {args.output}  (version {meta['model_version']})")
    print(f"family     {meta['family']}, code size {meta['code_size']}, features {','.join(meta['feature_spec']['columns'])}")
    print(f"training   {training['epochs_run']} epochs on {training['device']}, best epoch {training['best_epoch']}, "
          f"{training['seconds']}s")
    print(f"loss       train {training['train_loss']:.5f}, validation {training['validation_loss'] or float('nan'):.5f}")
    if family_summary(meta):
        print(f"metrics    {family_summary(meta)}")
    print(f"anomaly    threshold {meta['anomaly_threshold']['value']:.5f} "
          f"(quantile {meta['anomaly_threshold']['quantile']} of validation {describe_score(meta)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ae-tf", description="Autoencoder embeddings for Parquet data.")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_parser(sub)
    add_retrain_parser(sub)
    add_models_parser(sub)
    add_sweep_parser(sub)
    add_tfds_parser(sub)
    add_report_parser(sub)
    for name, (_module, text) in PIPELINE_COMMANDS.items():
        sub.add_parser(name, help=f"{text}; `ae-tf {name} --help` for its flags", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv[:1]
    configure_logging(verbose)
    if verbose:
        argv = argv[1:]
    try:
        if argv and argv[0] in PIPELINE_COMMANDS:
            module = importlib.import_module(PIPELINE_COMMANDS[argv[0]][0])
            return int(module.main(argv[1:]) or 0)
        args = build_parser().parse_args(argv)
        if args.command == "train":
            return cmd_train(args)
        if args.command == "retrain":
            return cmd_retrain(args)
        if args.command == "models":
            return cmd_models(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "tfds-to-parquet":
            return cmd_tfds_to_parquet(args)
        if args.command == "report":
            return cmd_report(args)
        build_parser().print_help()
        return 2
    except USER_ERRORS as err:
        print(f"ae-tf: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ae-tf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
