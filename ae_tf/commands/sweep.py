"""`ae-tf sweep`: the flags and the handler (the work is in ae_tf.model.sweep)."""

from __future__ import annotations

import argparse

from ae_tf.commands.flags import add_input_arguments, add_model_arguments, model_kwargs
from ae_tf.commands.help import HelpFormatter
from ae_tf.defaults import default_of
from ae_tf.errors import OutputExists
from ae_tf.model.sweep import SweepConfig
from ae_tf.model.train import TrainConfig


def add_parser(sub) -> None:
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
    p.add_argument("--max-rows", type=int, default=default_of(SweepConfig, "max_rows"),
                   help="train/validation rows kept for the PCA comparison")
    add_model_arguments(p)
    p.add_argument("--epochs", type=int, default=10, help="epochs per size (short schedule)")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience per size")
    p.add_argument("--batch-size", type=int, default=default_of(TrainConfig, "batch_size"), help="rows per training step")
    p.add_argument("--learning-rate", type=float, default=default_of(TrainConfig, "learning_rate"), help="Adam learning rate")
    p.add_argument("--validation-fraction", type=float, default=default_of(TrainConfig, "validation_fraction"),
                   help="rows held out (the comparison rows)")
    p.add_argument("--seed", type=int, default=default_of(TrainConfig, "seed"),
                   help="seed for the split, shuffling and initial weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep in --output-dir")


def run(args: argparse.Namespace) -> int:
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
