"""The `ae-tf` command.

Model-side commands (train) live here. Pipeline commands (encode, demo) are Beam programs in the
`pipelines` package; they are imported only when invoked, so `ae_tf` itself never imports Beam and a
trainer image without Beam can still run `ae-tf train`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from ae_tf import __version__, interrupts
from ae_tf.commands.flags import (
    add_input_arguments,
    add_model_arguments,
    add_sweep_parser,
    add_tfds_parser,
    cmd_sweep,
    cmd_tfds_to_parquet,
    family_summary,
    model_kwargs,
    schedule_summary,
)
from ae_tf.commands.help import HelpFormatter
from ae_tf.commands.registry import add_models_parser, add_retrain_parser, cmd_models, cmd_retrain
from ae_tf.commands.report import add_report_parser, cmd_report
from ae_tf.defaults import default_of
from ae_tf.errors import BUG_LINE, UserError, user_error_in
from ae_tf.model.quiet_tf import import_tensorflow, quiet_environment
from ae_tf.model.train import TrainConfig

# Beam programs behind `ae-tf NAME`: the same as `python -m MODULE`.
PIPELINE_COMMANDS = {
    "encode": ("pipelines.encode", "batch-encode Parquet into embedding Parquet (Beam pipeline)"),
    "demo": ("pipelines.demo", "make demo data, train, export, encode and report on it end to end"),
    "reduce": ("pipelines.reduce", "PCA-reduce embedding Parquet; saves the fit (Beam pipeline)"),
    "dedup": ("pipelines.dedup", "find exact and near-duplicate rows of embedding Parquet (Beam pipeline)"),
    "refresh": ("pipelines.refresh", "keep an embeddings store current: encode only new files, switch CURRENT"),
}

# Pipelines that run a model in this process: TensorFlow is imported (quietly) once their flags are checked.
TENSORFLOW_PIPELINES = ("encode", "demo")



def configure_logging(verbose: bool = False) -> None:
    quiet_environment()
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("absl", "tensorflow", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The local runner logs a worker's traceback before re-raising it; the CLI reports the error itself
    # (one line for user errors, the full traceback otherwise), so Beam's copy is shown only with --verbose.
    logging.getLogger("apache_beam").setLevel(logging.DEBUG if verbose else logging.CRITICAL)
    logging.getLogger().handlers[0].addFilter(lambda record: verbose or record.levelno > logging.WARNING
                                             or "Resource module is not available" not in record.getMessage())


TRAIN_DESCRIPTION = """\
Train an autoencoder on feature columns of Parquet files (or a TensorFlow Datasets split) and export it
as a model directory: a SavedModel that `ae-tf encode` runs, with the feature spec, the training
metrics and a calibrated anomaly threshold in its metadata. Training stops early when the validation
loss stops improving; checkpoints and run files go beside the model (OUTPUT.run).

  ae-tf train --input 'data/*.parquet' --features pixels --code-size 8 --output models/digits
"""


def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train an autoencoder on Parquet and export a SavedModel directory",
                       description=TRAIN_DESCRIPTION, formatter_class=HelpFormatter)
    add_input_arguments(p)
    p.add_argument("--code-size", type=int, required=True, help="numbers in each embedding (the bottleneck)")
    p.add_argument("--output", required=True, help="model directory to write (a SavedModel)")
    add_model_arguments(p)
    p.add_argument("--epochs", type=int, default=default_of(TrainConfig, "epochs"),
                   help="maximum passes over the training rows (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int, default=default_of(TrainConfig, "batch_size"), help="rows per training step")
    p.add_argument("--learning-rate", type=float, default=default_of(TrainConfig, "learning_rate"),
                   help="Adam learning rate (halved when validation loss stalls for half the patience)")
    p.add_argument("--min-steps", type=int, default=default_of(TrainConfig, "min_steps"),
                   help="raise the passes of a small dataset to at least this many steps (logged); None: 100 per "
                        "epoch for rows of <= 1,024 values, 0 for larger images; 0: exactly --epochs passes")
    p.add_argument("--cache", default=default_of(TrainConfig, "cache"), choices=["auto", "memory", "none"],
                   help="keep decoded rows in memory between passes; auto: when they fit --cache-limit-gb")
    p.add_argument("--cache-limit-gb", type=float, default=default_of(TrainConfig, "cache_limit_gb"),
                   help="budget of --cache auto; None: a quarter of physical memory, at most 4")
    p.add_argument("--validation-fraction", type=float, default=default_of(TrainConfig, "validation_fraction"), help="rows held out for validation")
    p.add_argument("--patience", type=int, default=default_of(TrainConfig, "patience"), help="epochs without validation improvement before stopping")
    p.add_argument("--seed", type=int, default=default_of(TrainConfig, "seed"), help="seed for the split, shuffling and initial weights")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU (ignored on CPU)")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoints and run files (default: OUTPUT.run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last finished epoch (backup in the checkpoint dir)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard logs to CHECKPOINT_DIR/tensorboard (tensorboard --logdir ...)")


def cmd_train(args: argparse.Namespace) -> int:
    from ae_tf.commands.precheck import check_training_input
    from ae_tf.model.anomaly import describe_score
    from ae_tf.model.train import make_train_config, train

    config = make_train_config(
        args.input, args.features, args.output, args.code_size, **model_kwargs(args), epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, min_steps=args.min_steps,
        cache=args.cache, cache_limit_gb=args.cache_limit_gb,
        validation_fraction=args.validation_fraction, patience=args.patience, seed=args.seed,
        mixed_precision=args.mixed_precision, checkpoint_dir=args.checkpoint_dir, overwrite=args.overwrite,
        resume=args.resume, tensorboard=args.tensorboard,
    )
    check_training_input(config.input, config.features, config.output, config.overwrite)
    import_tensorflow()
    result = train(config)
    meta = result.metadata
    training = meta["training"]
    print(f"model      {args.output}  (version {meta['model_version']})")
    print(f"family     {meta['family']}, code size {meta['code_size']}, features {','.join(meta['feature_spec']['columns'])}")
    print(f"training   {training['epochs_run']} epochs on {training['device']}, best epoch {training['best_epoch']}, "
          f"{training['seconds']}s")
    print(f"schedule   {schedule_summary(training)}")
    print(f"loss       train {training['train_loss']:.5f}, validation {training['validation_loss'] or float('nan'):.5f}")
    if family_summary(meta):
        print(f"metrics    {family_summary(meta)}")
    print(f"anomaly    threshold {meta['anomaly_threshold']['value']:.5f} "
          f"(quantile {meta['anomaly_threshold']['quantile']} of validation {describe_score(meta)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ae-tf", description="Autoencoder embeddings for Parquet data.")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ae-tf {__version__}")
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
    # Ctrl-C / SIGTERM: one line, exit 130 / 143 within seconds, whatever is running (ae_tf.interrupts)
    with interrupts.handled("ae-tf"):
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv[:1]
    configure_logging(verbose)
    if verbose:
        argv = argv[1:]
    try:
        if argv and argv[0] in PIPELINE_COMMANDS:
            from ae_tf.commands.precheck import check_pipeline_args

            check_pipeline_args(argv[0], argv[1:])  # bad paths and columns: an error before Beam and TensorFlow
            if argv[0] in TENSORFLOW_PIPELINES and not {"-h", "--help"} & set(argv[1:]):
                import_tensorflow()
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
    except UserError as err:  # bad input: one line, no traceback (ae_tf.errors)
        print(f"ae-tf: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a KeyboardInterrupt that no signal raised (interrupts.handled sees signals)
        print("ae-tf: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        user = user_error_in(err)  # a UserError that a library wrapped (Beam re-raises a step's error)
        if user is not None:
            print(f"ae-tf: error: {user}", file=sys.stderr)
            return 2
        if interrupts.received() is not None:  # ended by a signal: interrupts.handled says so in one line
            raise
        traceback.print_exc()
        print(BUG_LINE, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
