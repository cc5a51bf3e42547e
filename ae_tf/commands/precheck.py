"""Checks of flags, paths and Parquet schemas that run before TensorFlow (or Beam) is imported.

Importing TensorFlow takes 5-10 s on a small machine; a mistyped path or column should not wait for it.
These checks need only the local filesystem and pyarrow (Parquet footers, the model's metadata JSON),
raise the one-line error the full command would raise later, and leave remote paths (gs://...) to the
command itself, which checks everything again.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections.abc import Sequence

from ae_tf.contracts import ModelMetadata
from ae_tf.errors import InputNotFound, InvalidInput, OutputExists
from ae_tf.inputs.features import check_schema, parse_feature_columns
from ae_tf.model.export import METADATA_FILE, ModelDirError, parse_metadata

OUTPUT_TEMP_DIR = "_temporary"  # pipelines.io.parquet.TEMP_DIR: left by a killed run, ignored by the emptiness check


def is_local(path: str) -> bool:
    return "://" not in path


def local_files(pattern: str) -> list[str] | None:
    """Files a local glob or directory names (a directory: its *.parquet); None for a remote pattern."""
    if not is_local(pattern):
        return None
    if os.path.isdir(pattern):
        pattern = pattern.rstrip("/") + "/*.parquet"
    hidden = {"include_hidden": True} if sys.version_info >= (3, 11) else {}
    files = sorted(p for p in glob.glob(pattern, **hidden) if not os.path.isdir(p))
    if not files:
        raise InputNotFound(f"{pattern}: no input file matches")
    return files


def read_schema(path: str):
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path)
    except Exception as err:  # ArrowInvalid and friends: not Parquet, truncated, unreadable
        raise InvalidInput(f"{path}: not a readable Parquet file ({err})") from None


def check_columns(path: str, columns: Sequence[str]) -> None:
    """The named feature columns exist in the file (the message of ae_tf.inputs.features.infer_feature_spec)."""
    names = read_schema(path).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise InvalidInput(f"{path}: feature column {missing[0]!r} not found; columns are: {', '.join(names)}")


def check_training_input(input_pattern: str | None, features: str | Sequence[str] | None, output: str | None = None,
                         overwrite: bool = False) -> None:
    """`ae-tf train` / `sweep`: the Parquet input exists, has the feature columns, the output is free."""
    if input_pattern:
        files = local_files(input_pattern)
        if files and features:
            check_columns(files[0], parse_feature_columns(features))
    if output and is_local(output) and os.path.exists(output) and not overwrite:
        raise OutputExists(f"{output}: already exists; choose a new path or pass --overwrite")


def local_model_metadata(model_dir: str) -> ModelMetadata | None:
    """Metadata of a local model directory (errors as ae_tf.model.export.read_metadata's); None for a remote path
    or a registry (resolved to its champion by the command itself)."""
    if not is_local(model_dir):
        return None
    if os.path.exists(os.path.join(model_dir, "champion.json")) or os.path.isdir(os.path.join(model_dir, "versions")):
        return None
    if not os.path.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: model directory not found")
    if not os.path.exists(os.path.join(model_dir, "saved_model.pb")):
        raise ModelDirError(f"{model_dir}: not a SavedModel (no saved_model.pb)")
    path = os.path.join(model_dir, "assets", METADATA_FILE)
    if not os.path.exists(path):
        raise ModelDirError(f"{model_dir}: SavedModel has no {METADATA_FILE} in assets; not an ae-tf model")
    with open(path, "rb") as f:
        return parse_metadata(f.read(), model_dir)


def _encode_flags(argv: Sequence[str]) -> argparse.Namespace:
    """The few `ae-tf encode` flags checked here; the pipeline's own parser reads (and checks) them all."""
    p = argparse.ArgumentParser(add_help=False)
    for flag in ("--model", "--input", "--output", "--keep-columns"):
        p.add_argument(flag, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--skip-bad-files", action="store_true")
    return p.parse_known_args(list(argv))[0]


def check_encode_args(argv: Sequence[str]) -> None:
    """`ae-tf encode`: model directory, input files, their schema against the model, the output."""
    try:
        args = _encode_flags(argv)
    except SystemExit:  # a malformed flag: the pipeline's parser says what is wrong
        return
    metadata = local_model_metadata(args.model) if args.model else None
    files = local_files(args.input) if args.input else None
    if files and metadata and not args.skip_bad_files:
        schema = read_schema(files[0])
        check_schema(schema, metadata.spec, source=files[0])
        for name in [c.strip() for c in (args.keep_columns or "").split(",") if c.strip()]:
            if name not in schema.names:
                raise InvalidInput(f"{files[0]}: kept column {name!r} not found; columns are: {', '.join(schema.names)}")
    if args.output and is_local(args.output) and os.path.isdir(args.output) and not args.overwrite \
            and [n for n in os.listdir(args.output) if n != OUTPUT_TEMP_DIR]:
        raise InvalidInput(f"{args.output}: output directory is not empty; choose a new one or pass --overwrite")


def check_demo_args(argv: Sequence[str]) -> None:
    """`ae-tf demo`: the --workdir it will replace is an earlier demo's (or absent)."""
    from ae_tf.inputs.demo_data import check_workdir

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workdir", default="demo_output")
    try:
        check_workdir(p.parse_known_args(list(argv))[0].workdir)
    except SystemExit:  # a malformed flag: the demo's parser says what is wrong
        return
