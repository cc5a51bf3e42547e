"""The `ae-tf` command: logging, Ctrl-C, one-line user errors, and dispatch over a command table.

The table itself is `ae_tf_cli.COMMANDS` (model commands from here, pipeline commands from pipelines.commands);
this module takes it as an argument, so ae_tf never imports Beam or the pipelines. A pipeline run as
`python -m pipelines.NAME` comes here through `run_alone` with its own row of the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from ae_tf import __version__, interrupts
from ae_tf.commands import USER_ERRORS, Command
from ae_tf.commands import models as models_command
from ae_tf.commands import report as report_command
from ae_tf.commands import retrain as retrain_command
from ae_tf.commands import sweep as sweep_command
from ae_tf.commands import tfds as tfds_command
from ae_tf.commands import train as train_command
from ae_tf.errors import BUG_LINE, user_error_in
from ae_tf.model.quiet_tf import import_tensorflow, quiet_environment

__all__ = ["MODEL_COMMANDS", "USER_ERRORS", "build_parser", "configure_logging", "main_for", "run_alone",
           "run_command"]

# The model-side commands, in `ae-tf --help` order; pipeline commands follow them (pipelines.commands).
MODEL_COMMANDS: tuple[Command, ...] = (
    Command("train", lambda: train_command),
    Command("retrain", lambda: retrain_command),
    Command("models", lambda: models_command),
    Command("sweep", lambda: sweep_command),
    Command("tfds-to-parquet", lambda: tfds_command),
    Command("report", lambda: report_command),
)


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


def build_parser(commands: Sequence[Command] = MODEL_COMMANDS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ae-tf", description="Autoencoder embeddings for Parquet data.")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"ae-tf {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in commands:
        if command.own_flags:  # its flags are its module's: `ae-tf NAME --help` shows them
            sub.add_parser(command.name, help=f"{command.help}; `ae-tf {command.name} --help` for its flags",
                           add_help=False)
        else:
            command.load().add_parser(sub)
    return parser


def main_for(commands: Sequence[Command], argv: Sequence[str] | None = None) -> int:
    """The whole `ae-tf` process over `commands`: what `ae_tf_cli.main` runs."""
    # Ctrl-C / SIGTERM: one line, exit 130 / 143 within seconds, whatever is running (ae_tf.interrupts)
    with interrupts.handled("ae-tf"):
        argv = list(sys.argv[1:] if argv is None else argv)
        verbose = "--verbose" in argv[:1]
        configure_logging(verbose)
        if verbose:
            argv = argv[1:]
        return run_command(commands, argv)


def run_alone(command: Command, argv: Sequence[str] | None = None) -> int:
    """`python -m pipelines.NAME ...`: the same process handling as `ae-tf NAME ...`, for that one command."""
    return main_for((command,), [command.name, *(sys.argv[1:] if argv is None else argv)])


def run_command(commands: Sequence[Command], argv: Sequence[str]) -> int:
    """One command line inside a configured process; a user error is one line on stderr and exit 2."""
    try:
        return _dispatch(commands, list(argv))
    except USER_ERRORS as err:
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


def _dispatch(commands: Sequence[Command], argv: list[str]) -> int:
    by_name = {command.name: command for command in commands}
    command = by_name.get(argv[0]) if argv else None
    if command is not None and command.own_flags:
        wants_help = bool({"-h", "--help"} & set(argv[1:]))
        if command.precheck is not None and not wants_help:
            command.precheck(argv[1:])  # bad paths and columns: an error before Beam and TensorFlow
        if command.tensorflow and not wants_help:
            import_tensorflow()
        return int(command.load().main(argv[1:]) or 0)
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.run_command = lambda line: run_command(commands, line)  # a command that runs another (retrain -> encode)
    return int(by_name[args.command].load().run(args) or 0)
