"""One base for every error that is the user's to fix: a flag, a path, a file's content, a missing extra.

The CLI prints a UserError as one line (`ae-tf: error: ...`) and exits 2; any other exception is a bug in
ae-tf: its traceback is printed and the exit status is 1. So raise a UserError (or a subclass) for bad
input, and let everything else propagate. Each subclass below also derives from the built-in exception
that callers caught before (ValueError, FileNotFoundError...), so `except ValueError` keeps working.

Beam keeps an exception's type when a step raises it in-process (it re-raises the same class with the
step's name appended, the original as its context), so `user_error_in` finds a UserError raised inside a
pipeline by walking the exception chain. A multi-process or remote runner sends only the worker's text;
then the last "ClassName: message" line naming a UserError class is rebuilt as that class.
"""

from __future__ import annotations

import re

BUG_LINE = "ae-tf: this is a bug in ae-tf, not in your input; please report it with the traceback above"


class UserError(Exception):
    """Bad input from whoever runs ae-tf; its message names the file, column, row or flag."""


class InvalidInput(UserError, ValueError):
    """A flag value, a file's content or a schema that cannot be used."""


class InputNotFound(UserError, FileNotFoundError):
    """A path or pattern that names nothing."""


class OutputExists(UserError, FileExistsError):
    """An output path that is taken (and --overwrite was not given)."""


class MissingDependency(UserError, RuntimeError):
    """An optional extra that this command needs is not installed."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss became NaN or infinite: the data or the learning rate, not a bug."""


def user_error_in(err: BaseException | None) -> UserError | None:
    """The innermost UserError in `err`'s chain (its cause and context), else None.

    Innermost: Beam's re-raised copy carries the step's name in its message; the original does not."""
    found = None
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, UserError):
            found = err
        err = err.__cause__ or err.__context__
    return found


def _user_error_classes(base: type[UserError] = UserError) -> dict[str, type[UserError]]:
    found = {base.__name__: base}
    for sub in base.__subclasses__():
        found.update(_user_error_classes(sub))
    return found


def user_error_in_text(err: BaseException) -> UserError | None:
    """A worker's UserError that reached us only as text (multi-process or remote runners), else None."""
    classes = _user_error_classes()
    names = "|".join(sorted(map(re.escape, classes), key=len, reverse=True))
    hits = re.findall(rf"(?<![\w])(?:[\w]+\.)*({names}): (.+)", str(err))
    if not hits:
        return None
    name, message = hits[-1]
    return classes[name](message.strip().rstrip("'\" ").replace("\\n", " ").split(" [while running")[0])
