"""The `ae-tf` entry point: the one command table, ae_tf's model commands followed by the pipelines'.

It sits above both packages so that neither imports the other the wrong way: ae_tf never imports Beam or
the pipelines, and a pipeline never calls back into this table (its `python -m` entry runs its own row
through ae_tf.commands.main.run_alone). Pipeline modules, and so Beam, are imported only when one runs.

    ae-tf COMMAND ...   ==   python -m ae_tf_cli COMMAND ...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ae_tf.commands import Command
from ae_tf.commands import main as commands_main
from pipelines.commands import PIPELINE_COMMANDS

COMMANDS: tuple[Command, ...] = (*commands_main.MODEL_COMMANDS, *PIPELINE_COMMANDS)


def build_parser() -> argparse.ArgumentParser:
    """The `ae-tf` parser over the whole table (pipeline commands parse their own flags when run)."""
    return commands_main.build_parser(COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf ...`: returns the exit status."""
    return commands_main.main_for(COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
