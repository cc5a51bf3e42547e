"""Encode Parquet into embedding Parquet with an ae-tf model directory.

    python -m pipelines.encode --model MODEL_DIR --input 'data/*.parquet' --output OUT_DIR [Beam options]

Flow: footers planned at launch -> splits spread over workers -> whole Arrow record batches ->
RunInference(AutoencoderModelHandler) -> kept columns + embedding + reconstruction_error -> one temporary
shard per split -> published under final names -> `_SUCCESS` manifest written last.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

import ae_tf
from ae_tf.embeddings import RECONSTRUCTION_ERROR, RESERVED, encoded_batch, output_schema
from ae_tf.export import read_metadata
from ae_tf.features import FeatureSpec, check_schema
from pipelines.inference import AutoencoderModelHandler
from pipelines.options import encode_arg_parser, local_runner_if_unset, pipeline_options, split_args
from pipelines.parquet import (
    TEMP_DIR,
    InputError,
    ParquetSplit,
    ReadParquetBatches,
    ShardResult,
    WriteParquetShards,
    match_files,
    open_parquet,
    plan_splits,
    prepare_output,
    publish_shards,
    read_manifest,
    utc_now,
    write_manifest,
)

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class EncodePlan:
    """Everything decided at launch, before any worker starts: checked inputs, schema, shard count."""

    model_dir: str
    model_version: str
    spec: FeatureSpec
    inputs: tuple[str, ...]
    splits: tuple[ParquetSplit, ...]
    keep_columns: tuple[str, ...]
    schema: pa.Schema
    output_dir: str
    batch_rows: int = 65536
    compression: str = "zstd"
    run_id: str = ""

    @property
    def rows_in(self) -> int:
        return sum(s.num_rows for s in self.splits)

    @property
    def temp_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{TEMP_DIR}/{self.run_id}"

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.spec.columns, *self.keep_columns]))


def plan_encode(model_dir: str, input_pattern: str, output_dir: str, keep_columns: Sequence[str] | None = None,
                batch_rows: int = 65536, max_rows_per_split: int = 2_000_000, compression: str = "zstd",
                overwrite: bool = False) -> EncodePlan:
    """Check model, inputs and output before launching; every problem is one line naming the path/column."""
    metadata = read_metadata(model_dir)
    spec = FeatureSpec.from_dict(metadata["feature_spec"])
    files = match_files(input_pattern)
    splits, _ = plan_splits(files, max_rows_per_split)
    schemas = {path: open_parquet(path).schema_arrow for path in files}
    first = schemas[files[0]]
    for path, schema in schemas.items():
        check_schema(schema, spec, source=path)
    if keep_columns is None:
        keep_columns = [n for n in first.names if n not in spec.columns and n not in RESERVED]
    for name in keep_columns:
        if name in RESERVED:
            raise InputError(f"--keep-columns: {name!r} is an output column name; rename it in the input")
        for path, schema in schemas.items():
            if name not in schema.names:
                raise InputError(f"{path}: kept column {name!r} not found; columns are: {', '.join(schema.names)}")
    schema = output_schema(first, keep_columns, int(metadata["code_size"]), metadata["model_version"], model_dir)
    prepare_output(output_dir, overwrite)
    return EncodePlan(model_dir, metadata["model_version"], spec, tuple(files), tuple(splits),
                      tuple(keep_columns), schema, output_dir, batch_rows, compression,
                      run_id=time.strftime("%Y%m%d-%H%M%S"))


def assemble_rows(keyed: tuple[int, PredictionResult], schema: pa.Schema) -> tuple[int, pa.RecordBatch]:
    """Kept columns from the input batch + the model's outputs, in the output schema."""
    index, result = keyed
    out = result.inference
    return index, encoded_batch(result.example, out.column(0).flatten().to_numpy().reshape(len(out), -1),
                                out.column(1).to_numpy(), schema)


def publish(results: list[ShardResult], plan: EncodePlan, started: str) -> dict:
    """Final step, run once: rename shards, check conservation, then write `_SUCCESS`."""
    shards = publish_shards(plan.output_dir, plan.temp_dir, results, len(plan.splits))
    rows_out = sum(s["rows"] for s in shards)
    if rows_out != plan.rows_in:
        raise RuntimeError(f"{plan.output_dir}: read {plan.rows_in} rows but wrote {rows_out}; not publishing")
    error_max = max((r.value_max for r in results if r.rows), default=None)
    manifest = {
        "reconstruction_error": {"mean": sum(r.value_sum for r in results) / rows_out if rows_out else None,
                                 "max": error_max},
        "rows_in": plan.rows_in, "rows_out": rows_out, "rows_rejected": 0,
        "model_dir": plan.model_dir, "model_version": plan.model_version, "output_dir": plan.output_dir,
        "inputs": list(plan.inputs), "shards": shards, "code_size": plan.schema.field("embedding").type.list_size,
        "keep_columns": list(plan.keep_columns), "started_at": started, "finished_at": utc_now(),
        "ae_tf_version": ae_tf.__version__,
    }
    write_manifest(plan.output_dir, manifest)
    return manifest


class EncodeParquet(beam.PTransform):
    """PBegin -> the manifest dict (one element), having written the embedding Parquet of `plan`."""

    def __init__(self, plan: EncodePlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        handler = KeyedModelHandler(AutoencoderModelHandler(plan.model_dir))
        return (
            pbegin
            | "ReadParquet" >> ReadParquetBatches(plan.splits, plan.read_columns, plan.batch_rows)
            | "EncodeBatches" >> RunInference(handler)
            | "AssembleRows" >> beam.Map(assemble_rows, plan.schema)
            | "WriteShards" >> WriteParquetShards(plan.temp_dir, plan.schema, plan.compression,
                                                  stats_column=RECONSTRUCTION_ERROR)
            | "CollectShards" >> beam.combiners.ToList()
            | "PublishOutput" >> beam.Map(publish, plan, utc_now())
        )


def build_pipeline(p: beam.Pipeline, plan: EncodePlan):
    return p | "EncodeParquet" >> EncodeParquet(plan)


def run(argv: Sequence[str] | None = None, save_main_session: bool = True, test_pipeline=None) -> dict | None:
    """Parse flags, plan, run; returns the manifest (None when the runner did not execute it, e.g. a dry run)."""
    args, beam_args = split_args(encode_arg_parser(), argv)
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    plan = plan_encode(args.model, args.input, args.output, keep, args.batch_rows, args.max_rows_per_split,
                       args.compression, args.overwrite)
    log.info("encoding %d rows from %d file(s) in %d split(s) with model %s",
             plan.rows_in, len(plan.inputs), len(plan.splits), plan.model_version)
    options = pipeline_options(beam_args, save_main_session)
    pipeline = test_pipeline or beam.Pipeline(runner=local_runner_if_unset(options), options=options)
    build_pipeline(pipeline, plan)
    result = pipeline.run()
    result.wait_until_finish()
    try:
        return read_manifest(plan.output_dir)
    except (OSError, FileNotFoundError):
        return None


def summarize(manifest: dict, seconds: float) -> str:
    """The short report printed after a run: rows, code size, reconstruction error, speed, paths."""
    mean_error = manifest["reconstruction_error"]["mean"]
    return "\n".join([
        f"rows       in {manifest['rows_in']:,}  out {manifest['rows_out']:,}  rejected {manifest['rows_rejected']:,}",
        f"model      {manifest['model_dir']}  (version {manifest['model_version']}), code size {manifest['code_size']}",
        f"error      mean reconstruction error {mean_error if mean_error is not None else float('nan'):.5f}",
        f"speed      {manifest['rows_in'] / max(seconds, 1e-9):,.0f} rows/s ({seconds:.1f}s wall, launch included)",
        f"output     {manifest['output_dir']}/part-*.parquet ({len(manifest['shards'])} shard(s)) and _SUCCESS",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf encode` / `python -m pipelines.encode`: run and print the summary."""
    started = time.perf_counter()
    manifest = run(argv)
    if manifest is None:
        print("pipeline submitted; no local output to summarise (remote runner or dry run)")
        return 0
    print(summarize(manifest, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    from ae_tf.cli import main as cli_main

    sys.exit(cli_main(["encode", *sys.argv[1:]]))
