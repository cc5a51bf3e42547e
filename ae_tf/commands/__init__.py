"""The `ae-tf` command line: one module per command, and the one shape every command has in the table.

A model-side command (ae_tf.commands.train, ...) is a module with `add_parser(sub)` and `run(args) -> int`.
A pipeline command (pipelines.commands) is a module with `main(argv) -> int` that parses its own flags,
because Beam's options pass through it. Both are rows of one table, `ae_tf_cli.COMMANDS`; ae_tf.commands.main
builds the parser and dispatches from whatever table it is given, so nothing in ae_tf names a pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

from ae_tf.errors import UserError

# What the CLI reports as the user's mistake: one line, exit 2, no traceback (ae_tf.errors); anything
# else is a bug: its traceback and exit 1.
USER_ERRORS = (UserError,)


@dataclass(frozen=True)
class Command:
    """One row of the command table; `load` imports the module only when the command is used."""

    name: str
    load: Callable[[], ModuleType]
    help: str = ""  # shown in `ae-tf --help` for own_flags commands (the others give it to add_parser)
    own_flags: bool = False  # the module's main(argv) parses its flags (Beam's options pass through it)
    tensorflow: bool = False  # runs a model in this process: TensorFlow is imported once the flags are checked
    # own_flags commands: light checks of paths and columns before Beam and TensorFlow load (not for --help)
    precheck: Callable[[Sequence[str]], None] | None = None
