"""`ae-tf retrain`: train a challenger, judge it against the champion, promote only a better one.

The work is in ae_tf.registry.retrain. `--then-encode` runs the `encode` command of the same command table
in this process (`args.run_command`, set by ae_tf.commands.main), so nothing here names or imports Beam.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from ae_tf.commands.help import HelpFormatter
from ae_tf.defaults import default_of
from ae_tf.registry.retrain import RetrainConfig

log = logging.getLogger(__name__)

# Exit codes of `ae-tf retrain` (schedulers branch on them; see deploy/).
EXIT_PROMOTED = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_KEPT = 3
EXIT_ENCODE_FAILED = 4

RETRAIN_EPILOG = f"""\
exit codes:
  {EXIT_PROMOTED}  promoted: the challenger is the new champion (and --then-encode succeeded)
  {EXIT_FAILED}  failed: training or evaluation crashed; the registry is unchanged
  {EXIT_BAD_INPUT}  bad arguments or input data (a one-line error); the registry is unchanged
  {EXIT_KEPT}  kept: the challenger is not better by --min-improvement, or another retrain promoted first;
     the challenger is registered as a version, the champion is unchanged
  {EXIT_ENCODE_FAILED}  promoted, but the --then-encode pipeline failed

Training settings not given are copied from the champion's own training config; the first retrain
into an empty registry needs --features and --code-size.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("retrain", help="train a challenger and promote it only if it beats the champion",
                       description="Train a challenger on new data, judge it and the champion on the same "
                                   "held-out rows, and promote it only when it is better.",
                       epilog=RETRAIN_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--registry", required=True, help="registry directory (local or gs://); created if absent")
    p.add_argument("--input", required=True,
                   help="Parquet files: a glob or a directory; with --latest-partitions, partition directories")
    p.add_argument("--latest-partitions", type=int, default=None, metavar="N",
                   help="train on the N newest partitions (directories holding the files, newest = last by name)")
    p.add_argument("--min-improvement", type=float, default=default_of(RetrainConfig, "min_improvement"),
                   help="relative error reduction needed to promote (default: %(default)s = 1%%)")
    p.add_argument("--eval-input", default=None,
                   help="judge both models on these files (default: the rows training held out)")
    p.add_argument("--eval-rows", type=int, default=default_of(RetrainConfig, "eval_rows"), help="at most this many rows are judged (default: %(default)s)")
    p.add_argument("--then-encode", nargs=2, metavar=("INPUT", "OUTPUT"), default=None,
                   help="after a promotion, encode INPUT into OUTPUT with the new champion")
    p.add_argument("--encode-options", default="",
                   help='extra flags for that encode run, e.g. --encode-options="--overwrite --runner DataflowRunner"')
    g = p.add_argument_group("training settings (default: the champion's)")
    g.add_argument("--features", default=None, help="feature columns, as for `ae-tf train`")
    g.add_argument("--code-size", type=int, default=None, help="numbers in each embedding")
    g.add_argument("--hidden", default=None, help="hidden layer sizes, comma-separated")
    g.add_argument("--activation", default=None, help="activation of the hidden layers")
    g.add_argument("--normalization", default=None, choices=["auto", "feature", "global", "none"],
                   help="input scaling, as for `ae-tf train`")
    g.add_argument("--epochs", type=int, default=None, help="maximum epochs")
    g.add_argument("--batch-size", type=int, default=None, help="rows per training step")
    g.add_argument("--learning-rate", type=float, default=None, help="Adam learning rate")
    g.add_argument("--validation-fraction", type=float, default=None, help="rows held out for validation")
    g.add_argument("--patience", type=int, default=None, help="epochs without improvement before stopping")
    g.add_argument("--seed", type=int, default=None, help="seed for the split, shuffling and weights")
    g.add_argument("--mixed-precision", action="store_true", default=None, help="float16 compute on a GPU")


def encode_command(model_dir: str, input_pattern: str, output: str, options: str) -> list[str]:
    """The `ae-tf encode ...` command line of `--then-encode`."""
    return ["encode", "--model", model_dir, "--input", input_pattern, "--output", output, *shlex.split(options)]


def run(args: argparse.Namespace) -> int:
    from ae_tf.model.quiet_tf import import_tensorflow
    from ae_tf.registry.retrain import PROMOTED, RetrainConfig, run_retrain

    train = {k: getattr(args, k) for k in ("hidden", "activation", "normalization", "epochs", "batch_size",
                                           "learning_rate", "validation_fraction", "patience", "seed",
                                           "mixed_precision")}
    config = RetrainConfig(
        registry=args.registry, input=args.input, latest_partitions=args.latest_partitions,
        features=args.features, code_size=args.code_size, train=train, min_improvement=args.min_improvement,
        eval_input=args.eval_input, eval_rows=args.eval_rows,
    )
    from ae_tf.commands.precheck import local_files
    from ae_tf.errors import UserError

    if not args.latest_partitions:
        local_files(args.input)  # a mistyped input: the one-line error before TensorFlow loads
    import_tensorflow()
    try:
        outcome = run_retrain(config)
    except UserError:
        raise
    except Exception as err:  # a crash in training or evaluation: one line, traceback with --verbose
        log.debug("retrain failed", exc_info=True)
        print(f"ae-tf retrain: failed: {type(err).__name__}: {err} (registry unchanged; --verbose for the "
              f"traceback)", file=sys.stderr)
        return EXIT_FAILED
    report = outcome.report
    champion = report["champion"]
    print(f"challenger {outcome.version}: error {report['challenger']['error']:.6g} on {report['sample']['rows']:,} "
          f"held-out rows")
    print(f"champion   {champion['version']}: error {champion['error']:.6g}" if champion else "champion   none")
    print(f"decision   {outcome.decision}: {report['reason']}")
    print(f"report     {outcome.report_path}")
    if outcome.decision != PROMOTED:
        return EXIT_KEPT
    if args.then_encode:
        from ae_tf.registry.registry import Registry

        command = encode_command(Registry(args.registry).version_dir(outcome.version), *args.then_encode,
                                 args.encode_options)
        log.info("encoding with the new champion: ae-tf %s", shlex.join(command))
        code = args.run_command(command)  # the `encode` of the same command table, in this process
        if code != 0:
            print(f"ae-tf retrain: promoted {outcome.version}, but the encode step failed (exit {code})",
                  file=sys.stderr)
            return EXIT_ENCODE_FAILED
    return EXIT_PROMOTED
