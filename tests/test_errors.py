"""One error base: a UserError is one line and exit 2, anything else is a bug (traceback, exit 1), and a
UserError raised inside a Beam step comes back as itself, found by type on the exception chain."""

from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

import ae_tf.commands.report as report_command
import ae_tf_cli as cli
from ae_tf.errors import (
    BUG_LINE,
    InputNotFound,
    InvalidInput,
    OutputExists,
    UserError,
    user_error_in,
    user_error_in_text,
)
from ae_tf.inputs.features import FeatureError
from ae_tf.model.export import ModelDirError
from pipelines.encode import TooManyRejectedRows
from pipelines.io.parquet import InputError


def test_every_user_error_shares_the_base_and_keeps_its_builtin():
    for kind in (InvalidInput, FeatureError, ModelDirError, InputError, TooManyRejectedRows):
        assert issubclass(kind, UserError) and issubclass(kind, ValueError)
    assert issubclass(InputNotFound, FileNotFoundError) and issubclass(OutputExists, FileExistsError)


def _fail_with(error: BaseException):
    def command(_args):
        raise error
    return command


def test_cli_user_error_is_one_line_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(report_command, "run", _fail_with(InvalidInput("data.parquet: column 'x' not found")))
    assert cli.main(["report", "--model", "m", "--output", "o"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == ["ae-tf: error: data.parquet: column 'x' not found"]


@pytest.mark.parametrize("error", [ValueError("operands could not be broadcast"), KeyError("embedding"),
                                   FileNotFoundError("/tmp/x")])
def test_cli_anything_else_is_a_bug_with_its_traceback(monkeypatch, capsys, error):
    monkeypatch.setattr(report_command, "run", _fail_with(error))
    assert cli.main(["report", "--model", "m", "--output", "o"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and err[-1] == BUG_LINE
    assert any(type(error).__name__ in line for line in err)


def _bad_row(_x):
    raise InputError("part-0.parquet: row 3: column 'vec' has NaN")


def test_a_user_error_raised_in_a_beam_step_comes_back_by_type():
    with pytest.raises(Exception) as caught, beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([1]) | beam.Map(_bad_row)
    found = user_error_in(caught.value)
    assert isinstance(found, InputError)
    assert str(found) == "part-0.parquet: row 3: column 'vec' has NaN"  # the original, without Beam's step name
    assert user_error_in(RuntimeError("InputError: looks like one")) is None  # no message parsing


def test_a_worker_user_error_that_arrives_as_text_is_rebuilt_by_class_name():
    """Multi-process and remote runners send only the worker's traceback text."""
    text = ("Traceback (most recent call last):\n  File \"worker.py\", line 1\n"
            "pipelines.io.parquet.InputError: data/a.parquet: column 'x' is missing [while running 'Read']\n")
    found = user_error_in_text(RuntimeError(text))
    assert isinstance(found, InputError)
    assert str(found) == "data/a.parquet: column 'x' is missing"
    assert user_error_in_text(RuntimeError("ValueError: shapes (3,) and (4,) not aligned")) is None
