"""`ae-tf train`: the flags and the handler (the work is in ae_tf.model.train)."""

from __future__ import annotations

import argparse

from ae_tf.commands.flags import (
    add_input_arguments,
    add_model_arguments,
    family_summary,
    model_kwargs,
    schedule_summary,
)
from ae_tf.commands.help import HelpFormatter
from ae_tf.defaults import default_of
from ae_tf.model.quiet_tf import import_tensorflow
from ae_tf.model.train import TrainConfig

TRAIN_DESCRIPTION = """\
Train an autoencoder on feature columns of Parquet files (or a TensorFlow Datasets split) and export it
as a model directory: a SavedModel that `ae-tf encode` runs, with the feature spec, the training
metrics and a calibrated anomaly threshold in its metadata. Training stops early when the validation
loss stops improving; checkpoints and run files go beside the model (OUTPUT.run).

  ae-tf train --input 'data/*.parquet' --features pixels --code-size 8 --output models/digits
"""


def add_parser(sub) -> None:
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
    p.add_argument("--validation-fraction", type=float,
                   default=default_of(TrainConfig, "validation_fraction"), help="rows held out for validation")
    p.add_argument("--patience", type=int, default=default_of(TrainConfig, "patience"),
                   help="epochs without validation improvement before stopping")
    p.add_argument("--seed", type=int, default=default_of(TrainConfig, "seed"), help="seed for the split, shuffling and initial weights")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU (ignored on CPU)")
    p.add_argument("--checkpoint-dir", default=None, help="checkpoints and run files (default: OUTPUT.run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run from its last finished epoch (backup in the checkpoint dir)")
    p.add_argument("--tensorboard", action="store_true",
                   help="write TensorBoard logs to CHECKPOINT_DIR/tensorboard (tensorboard --logdir ...)")


def run(args: argparse.Namespace) -> int:
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
    meta = result.contract
    training = meta.training
    print(f"model      {args.output}  (version {meta.model_version})")
    print(f"family     {meta.family}, code size {meta.code_size}, features {','.join(meta.feature_spec['columns'])}")
    print(f"training   {training['epochs_run']} epochs on {training['device']}, best epoch {training['best_epoch']}, "
          f"{training['seconds']}s")
    print(f"schedule   {schedule_summary(training)}")
    print(f"loss       train {training['train_loss']:.5f}, validation {training['validation_loss'] or float('nan'):.5f}")
    if family_summary(meta):
        print(f"metrics    {family_summary(meta)}")
    threshold = meta.anomaly_threshold or {}
    print(f"anomaly    threshold {threshold['value']:.5f} "
          f"(quantile {threshold['quantile']} of validation {describe_score(meta)})")
    return 0
