"""Defaults live once, in the config dataclasses: every flag that mirrors a config field defaults to it."""

from __future__ import annotations

import dataclasses

import pytest

from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT, default_of
from ae_tf.model.sweep import SweepConfig
from ae_tf.model.train import TrainConfig
from ae_tf.registry.retrain import RetrainConfig
from ae_tf.report.report import ReportConfig
from ae_tf_cli import build_parser

TRAIN = ["train", "--input", "x", "--features", "a", "--code-size", "2", "--output", "o"]
CASES = [
    (TRAIN, TrainConfig, ["epochs", "batch_size", "learning_rate", "min_steps", "cache", "cache_limit_gb",
                          "validation_fraction", "patience", "seed"]),
    (["sweep", "--input", "x", "--features", "a", "--output-dir", "o"], SweepConfig, ["tolerance", "max_rows"]),
    (["sweep", "--input", "x", "--features", "a", "--output-dir", "o"], TrainConfig,
     ["batch_size", "learning_rate", "validation_fraction", "seed"]),
    (["report", "--model", "m", "--output", "o"], ReportConfig, ["input_rows", "max_points", "seed"]),
    (["retrain", "--registry", "r", "--input", "x"], RetrainConfig, ["min_improvement", "eval_rows"]),
]


@pytest.mark.parametrize("argv, config, names", CASES)
def test_parser_defaults_are_the_configs(argv, config, names):
    parsed = vars(build_parser().parse_args(argv))
    assert {n: parsed[n] for n in names} == {n: default_of(config, n) for n in names}


def test_pipeline_flags_and_plans_share_the_batch_and_split_sizes():
    from pipelines.encode import EncodePlan
    from pipelines.runner.options import encode_arg_parser, split_args

    args, _ = split_args(encode_arg_parser(), ["--model", "m", "--input", "x", "--output", "o"])
    assert (args.batch_rows, args.max_rows_per_split) == (BATCH_ROWS, MAX_ROWS_PER_SPLIT)
    assert default_of(EncodePlan, "batch_rows") == BATCH_ROWS == default_of(TrainConfig, "read_rows")


def test_default_of_names_a_missing_field():
    with pytest.raises(KeyError, match="no field 'nope'"):
        default_of(TrainConfig, "nope")
    assert dataclasses.is_dataclass(TrainConfig)
