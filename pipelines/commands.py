"""The pipeline rows of the `ae-tf` command table: `ae-tf NAME` is the same as `python -m pipelines.NAME`.

Each row imports its pipeline (and so Beam) only when the command runs, so `ae-tf train` and `ae-tf --help`
never load Beam. ae_tf_cli joins these rows to ae_tf's own (ae_tf.commands.main.MODEL_COMMANDS).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from ae_tf.commands import Command


def _encode() -> ModuleType:
    from pipelines import encode

    return encode


def _demo() -> ModuleType:
    from pipelines import demo

    return demo


def _reduce() -> ModuleType:
    from pipelines import reduce

    return reduce


def _dedup() -> ModuleType:
    from pipelines import dedup

    return dedup


def _refresh() -> ModuleType:
    from pipelines import refresh

    return refresh


def _check_encode(argv: Sequence[str]) -> None:
    from ae_tf.commands.precheck import check_encode_args

    check_encode_args(argv)


def _check_demo(argv: Sequence[str]) -> None:
    from ae_tf.commands.precheck import check_demo_args

    check_demo_args(argv)


ENCODE = Command("encode", _encode, "batch-encode Parquet into embedding Parquet (Beam pipeline)",
                 own_flags=True, tensorflow=True, precheck=_check_encode)
DEMO = Command("demo", _demo, "make demo data, train, export, encode and report on it end to end",
               own_flags=True, tensorflow=True, precheck=_check_demo)
REDUCE = Command("reduce", _reduce, "PCA-reduce embedding Parquet; saves the fit (Beam pipeline)", own_flags=True)
DEDUP = Command("dedup", _dedup, "find exact and near-duplicate rows of embedding Parquet (Beam pipeline)",
                own_flags=True)
REFRESH = Command("refresh", _refresh,
                  "keep an embeddings store current: encode only new files, switch CURRENT", own_flags=True)

PIPELINE_COMMANDS: tuple[Command, ...] = (ENCODE, DEMO, REDUCE, DEDUP, REFRESH)
