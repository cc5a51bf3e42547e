"""Encode Parquet into embedding Parquet with an ae-tf model directory.

    python -m pipelines.encode --model MODEL_DIR --input 'data/*.parquet' --output OUT_DIR [Beam options]

Flow: footers planned at launch -> splits spread over workers -> whole Arrow record batches ->
the model (AutoencoderModelHandler, loaded once per worker), called on sub-batches of
`--model-batch-rows` rows (automatic: sized from the network against a memory budget) -> kept columns +
embedding + reconstruction_error (rows that cannot be encoded -> _rejected/ with the reason) -> one
temporary shard per split -> published under final names -> `_SUCCESS` manifest written last.
Reading runs a batch ahead and writing a batch behind, on threads, so they overlap the model
(pipelines.io.overlap). Rows are checked in the same step that encodes them: image files are decoded once, by the model, whose
`prepare_images` signature flags the files that do not decode.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.utils import shared

import ae_tf
from ae_tf.contracts import EncodeManifest, ModelMetadata
from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.embeddings import (
    IS_ANOMALY,
    RECONSTRUCTION_ERROR,
    RESERVED,
    encoded_batch,
    output_schema,
)
from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import FeatureError, FeatureSpec, check_schema
from ae_tf.model.anomaly import resolve_threshold
from ae_tf.model.batching import auto_model_batch_rows
from ae_tf.model.export import check_model_dir
from ae_tf.registry.registry import resolve_model_dir
from ae_tf.vectors.codes import Codec, codec_of
from pipelines.io.coders import BATCH
from pipelines.io.compact_output import resolve_codec
from pipelines.io.parquet import (
    METRICS_NAMESPACE,
    TEMP_DIR,
    FileFooter,
    InputError,
    ParquetSplit,
    ReadParquetBatches,
    ShardResult,
    WriteParquetShards,
    check_output,
    float_columns,
    match_files,
    publish_shards,
    read_footer,
    remove_temporary,
    splits_for,
    utc_now,
    write_manifest,
)
from pipelines.parts.inference import CHECKED, AutoencoderModelHandler
from pipelines.runner.launch import execute, main_with_summary, prepare_launch
from pipelines.runner.options import encode_arg_parser, split_args

log = logging.getLogger(__name__)


REJECTED_DIR = "_rejected"
REJECTED = "rejected"
SOURCE_ROW = "source_row"
SOURCE_FILE = "source_file"
REASON = "reason"


class TooManyRejectedRows(InvalidInput):
    """More rows failed validation than --max-rejected-fraction allows: the output is not published."""


@dataclasses.dataclass(frozen=True)
class EncodePlan:
    """Everything decided at launch, before any worker starts: checked inputs, schemas, shard count."""

    model_dir: str
    model_version: str
    spec: FeatureSpec
    inputs: tuple[str, ...]
    splits: tuple[ParquetSplit, ...]
    keep_columns: tuple[str, ...]
    schema: pa.Schema
    rejected_schema: pa.Schema
    output_dir: str
    batch_rows: int = BATCH_ROWS
    compression: str = "zstd"
    max_rejected_fraction: float = 0.01
    skipped_files: tuple[tuple[str, str], ...] = ()
    anomaly_threshold: float | None = None
    anomaly_rule: str = ""
    run_id: str = ""
    model_batch_rows: int = 0  # rows per model call, resolved at launch (automatic unless given)

    @property
    def rows_in(self) -> int:
        return sum(s.num_rows for s in self.splits)

    @property
    def temp_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{TEMP_DIR}/{self.run_id}"

    @property
    def rejected_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{REJECTED_DIR}"

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([*self.spec.columns, *self.keep_columns]))

    def source_of(self, split_index: int) -> str:
        return self.splits[split_index].path


def _same_column(first: FileFooter, other: FileFooter, name: str) -> None:
    a, b = first.schema.field(name).type, other.schema.field(name).type
    if a != b:
        raise InputError(f"{other.path}: column {name!r} is {b} here but {a} in {first.path}; "
                         "input files must share one schema")


def _check_footers(footers: list[FileFooter], spec: FeatureSpec, keep_columns: Sequence[str]) -> None:
    for footer in footers:
        check_schema(footer.schema, spec, source=footer.path)
        for name in keep_columns:
            if name not in footer.schema.names:
                raise InputError(f"{footer.path}: kept column {name!r} not found; "
                                 f"columns are: {', '.join(footer.schema.names)}")
            _same_column(footers[0], footer, name)


def plan_encode(model_dir: str, input_pattern: str, output_dir: str, keep_columns: Sequence[str] | None = None,
                batch_rows: int = BATCH_ROWS, max_rows_per_split: int = MAX_ROWS_PER_SPLIT, compression: str = "zstd",
                overwrite: bool = False, skip_bad_files: bool = False,
                max_rejected_fraction: float = 0.01, flag_anomalies: bool = False,
                anomaly_threshold: float | None = None, anomaly_quantile: float | None = None,
                model_batch_rows: int | None = None, model_memory_mb: float | None = None,
                embedding_dtype: str = "float32", codec: Codec | None = None) -> EncodePlan:
    """Check model, inputs and output before launching; every problem is one line naming the path/column.

    With `skip_bad_files`, unreadable files and files whose schema does not fit are left out and listed in
    the manifest instead of stopping the run. `model_batch_rows=None` sizes model calls automatically
    from the model's activations against `model_memory_mb` (ae_tf.model.batching).
    """
    if not 0 <= max_rejected_fraction <= 1:
        raise InputError(f"--max-rejected-fraction must be within [0, 1], got {max_rejected_fraction}")
    model_dir = resolve_model_dir(model_dir)  # a registry -> its champion's version dir, fixed at launch
    metadata = check_model_dir(model_dir)
    model = ModelMetadata.from_dict(metadata, source=model_dir)
    spec = model.spec
    try:
        model_batch_rows = model_batch_rows or auto_model_batch_rows(model, model_memory_mb)
    except ValueError as err:  # a budget that is not a positive number (flag or environment)
        raise InputError(str(err)) from None
    threshold, rule = None, ""
    if flag_anomalies or anomaly_threshold is not None or anomaly_quantile is not None:
        threshold, rule = resolve_threshold(model, anomaly_threshold, anomaly_quantile)
    files = match_files(input_pattern)
    footers: list[FileFooter] = []
    skipped: list[tuple[str, str]] = []
    for path in files:
        try:
            footer = read_footer(path)
            check_schema(footer.schema, spec, source=path)
            footers.append(footer)
        except (InputError, FeatureError) as err:
            if not skip_bad_files:
                raise
            skipped.append((path, str(err)))
    if not footers:
        raise InputError(f"{input_pattern}: no readable input file ({len(skipped)} skipped)")
    if keep_columns is None:
        keep_columns = [n for n in footers[0].schema.names if n not in spec.columns and n not in RESERVED]
    for name in keep_columns:
        if name in RESERVED or name in (REASON, SOURCE_FILE, SOURCE_ROW):
            raise InputError(f"--keep-columns: {name!r} is an output column name; rename it in the input")
    kept_footers = []
    for footer in footers:
        try:
            _check_footers([footers[0], footer], spec, keep_columns)
            kept_footers.append(footer)
        except (InputError, FeatureError) as err:
            if not skip_bad_files:
                raise
            skipped.append((footer.path, str(err)))
    splits = splits_for(kept_footers, max_rows_per_split)
    first = kept_footers[0].schema
    codec = resolve_codec(embedding_dtype, model_dir, splits, spec.columns, spec, codec)  # pipelines.io.compact_output
    schema = output_schema(first, keep_columns, model.code_size, model.model_version, model_dir,
                           flag_anomalies=threshold is not None, codec=codec)
    rejected_schema = pa.schema([first.field(n) for n in keep_columns] + [
        pa.field(REASON, pa.string()), pa.field(SOURCE_FILE, pa.string()), pa.field(SOURCE_ROW, pa.int64())])
    check_output(output_dir, overwrite)  # read-only: the run prepares it (pipelines.launch.execute)
    return EncodePlan(model_dir, model.model_version,
                      spec, tuple(f.path for f in kept_footers), tuple(splits), tuple(keep_columns), schema,
                      rejected_schema, output_dir, batch_rows, compression, max_rejected_fraction,
                      tuple(skipped), threshold, rule, run_id=time.strftime("%Y%m%d-%H%M%S"),
                      model_batch_rows=model_batch_rows)


def rejected_rows(rows: pa.RecordBatch, reasons: Sequence[str], source_file: str, schema: pa.Schema,
                  source_rows: np.ndarray) -> pa.RecordBatch:
    """Kept columns of rejected rows + why + where they came from (file and row number in it)."""
    columns = []
    for field in schema:
        if field.name == REASON:
            columns.append(pa.array(list(reasons), pa.string()))
        elif field.name == SOURCE_FILE:
            columns.append(pa.array([source_file] * rows.num_rows, pa.string()))
        elif field.name == SOURCE_ROW:
            columns.append(pa.array(np.asarray(source_rows, dtype=np.int64)))
        else:
            columns.append(rows.column(field.name))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def rejected_by_model(index: int, offset: int, batch: pa.RecordBatch, error: Exception,
                      plan: EncodePlan) -> tuple[int, pa.RecordBatch]:
    """A batch whose model call raised: every row of it is rejected with the error's first line."""
    reason = f"model error: {str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
    return index, rejected_rows(batch, [reason] * batch.num_rows, plan.source_of(index), plan.rejected_schema,
                                np.arange(offset, offset + batch.num_rows))


class _EncodeBatchesDoFn(beam.DoFn):
    """Checks and encodes whole batches and lays out the output rows. Rows that cannot be encoded (nulls,
    NaN, files that do not decode...) become dead-letter rows with a reason, and so does every row of a
    batch whose model call fails, instead of failing the job.

    The model is loaded once per worker process (Shared, in setup) through AutoencoderModelHandler, the
    same handler that users can give to Beam's RunInference, and each batch goes through its
    `run_inference` (with CHECKED). Our pipeline calls the handler directly: the RunInference transform
    would add a batching step and PredictionResult elements that Beam samples by pickling (~10% of a run).
    """

    def __init__(self, plan: EncodePlan):
        self._plan = plan
        self._handler = AutoencoderModelHandler(plan.model_dir, model_batch_rows=plan.model_batch_rows)
        self._shared = shared.Shared()
        self._rows = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_encoded")
        self._rejected = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "rows_rejected")
        self._failed = beam.metrics.Metrics.counter(METRICS_NAMESPACE, "batches_failed_in_model")
        self._latency = beam.metrics.Metrics.distribution(METRICS_NAMESPACE, "model_call_ms_per_batch")

    def setup(self):
        tag = f"ae_tf:{self._plan.model_dir}:{self._plan.model_batch_rows}"
        self._model = self._shared.acquire(self._handler.load_model, tag=tag)

    def process(self, element):
        index, offset, batch = element
        plan = self._plan
        started = time.perf_counter()
        try:
            result = next(iter(self._handler.run_inference([batch], self._model, CHECKED))).inference
        except Exception as err:  # routed to the dead letter output; the conservation check still holds
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(REJECTED, rejected_by_model(index, offset, batch, err, plan))
            return
        self._latency.update(int((time.perf_counter() - started) * 1000))
        check = result.check
        if not check.all_valid:
            keep = pa.array(check.valid)
            bad = batch.filter(pc.invert(keep))
            self._rejected.inc(bad.num_rows)
            yield beam.pvalue.TaggedOutput(REJECTED, (index, rejected_rows(
                bad, check.reasons[~check.valid], plan.source_of(index), plan.rejected_schema,
                offset + np.flatnonzero(~check.valid))))
            batch = batch.filter(keep)
        self._rows.inc(batch.num_rows)
        yield index, encoded_batch(batch, result.embedding, result.error, plan.schema, plan.anomaly_threshold,
                                   anomaly_score=result.anomaly_score)


def publish(results: list[ShardResult], rejected: list[ShardResult], plan: EncodePlan, started: str) -> dict:
    """Final step, run once: publish rejected rows, check conservation and the reject budget, then the
    shards, then `_SUCCESS` last."""
    rejected_shards = publish_shards(plan.rejected_dir, f"{plan.temp_dir}/{REJECTED}", rejected,
                                     len(plan.splits), require_all=False)
    rows_rejected = sum(s["rows"] for s in rejected_shards)
    rows_out = sum(r.rows for r in results)
    if rows_out + rows_rejected != plan.rows_in:
        raise RuntimeError(f"{plan.output_dir}: read {plan.rows_in} rows but wrote {rows_out} and rejected "
                           f"{rows_rejected}; output not published")
    if rows_rejected > plan.max_rejected_fraction * plan.rows_in:
        remove_temporary(plan.output_dir)
        raise TooManyRejectedRows(
            f"{plan.output_dir}: {rows_rejected:,} of {plan.rows_in:,} rows rejected "
            f"({rows_rejected / max(plan.rows_in, 1):.1%}), above --max-rejected-fraction "
            f"{plan.max_rejected_fraction}; reasons per row in {plan.rejected_dir}/; output not published")
    shards = publish_shards(plan.output_dir, f"{plan.temp_dir}/main", results, len(plan.splits))
    remove_temporary(plan.output_dir)
    error_max = max((r.value_max for r in results if r.rows), default=None)
    manifest = EncodeManifest(
        rows_in=plan.rows_in, rows_out=rows_out, rows_rejected=rows_rejected,
        reconstruction_error={"mean": sum(r.value_sum for r in results) / rows_out if rows_out else None,
                              "max": error_max},
        model_dir=plan.model_dir, model_version=plan.model_version, output_dir=plan.output_dir,
        inputs=list(plan.inputs), shards=shards, code_size=plan.schema.field("embedding").type.list_size,
        rejected_shards=[f"{REJECTED_DIR}/{s['file']}" for s in rejected_shards],
        skipped_files=[{"file": path, "reason": reason} for path, reason in plan.skipped_files],
        keep_columns=list(plan.keep_columns), started_at=started, finished_at=utc_now(),
        model_batch_rows=plan.model_batch_rows,
        anomalies=None if plan.anomaly_threshold is None else {
            "threshold": plan.anomaly_threshold, "rule": plan.anomaly_rule,
            "rows_flagged": sum(r.true_count for r in results)},
        ae_tf_version=ae_tf.__version__,
        embedding_codec=(codec_of(plan.schema) or Codec()).to_dict(),
    ).to_dict()
    write_manifest(plan.output_dir, manifest)
    return manifest


class EncodeParquet(beam.PTransform):
    """PBegin -> the manifest dict (one element), having written the embedding Parquet of `plan`."""

    def __init__(self, plan: EncodePlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        encoded = (
            pbegin
            | "ReadParquet" >> ReadParquetBatches(plan.splits, plan.read_columns, plan.batch_rows, with_offsets=True,
                                                  progress_key=f"encode-{plan.run_id}", prefetch=1)
            | "EncodeBatches" >> beam.ParDo(_EncodeBatchesDoFn(plan)).with_output_types(BATCH).with_outputs(
                REJECTED, main="rows")
        )
        rejected = (
            encoded[REJECTED]
            | "WriteRejectedShards" >> WriteParquetShards(f"{plan.temp_dir}/{REJECTED}", plan.rejected_schema,
                                                          plan.compression)
        )
        return (
            encoded.rows
            | "WriteShards" >> WriteParquetShards(
                f"{plan.temp_dir}/main", plan.schema, plan.compression, stats_column=RECONSTRUCTION_ERROR,
                count_column=IS_ANOMALY if plan.anomaly_threshold is not None else None, background=True,
                plain_columns=float_columns(plan.schema, RESERVED))
            | "CollectShards" >> beam.combiners.ToList()
            | "PublishOutput" >> beam.Map(publish, beam.pvalue.AsList(rejected), plan, utc_now())
        )


def build_pipeline(p: beam.Pipeline, plan: EncodePlan):
    return p | "EncodeParquet" >> EncodeParquet(plan)


def run(argv: Sequence[str] | None = None, save_main_session: bool = True, test_pipeline=None) -> dict | None:
    """Parse flags, plan, run; returns the manifest (None when the runner did not execute it, e.g. a dry run)."""
    args, beam_args = split_args(encode_arg_parser(), argv)
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    plan = plan_encode(args.model, args.input, args.output, keep, args.batch_rows, args.max_rows_per_split,
                       args.compression, args.overwrite, args.skip_bad_files, args.max_rejected_fraction,
                       args.flag_anomalies, args.anomaly_threshold, args.anomaly_quantile,
                       args.model_batch_rows, args.model_memory_mb, args.embedding_dtype)
    log.info("encoding %d rows from %d file(s) in %d split(s) with model %s, %d rows per model call%s",
             plan.rows_in, len(plan.inputs), len(plan.splits), plan.model_version, plan.model_batch_rows,
             f"; skipping {len(plan.skipped_files)} bad file(s)" if plan.skipped_files else "")
    return execute(prepare_launch(beam_args, save_main_session), lambda p: build_pipeline(p, plan), plan.output_dir,
                   f"encode-{plan.run_id}", "encode", args.progress_interval, test_pipeline)


def summarize(manifest: dict, seconds: float) -> str:
    """The short report printed after a run: rows, code size, reconstruction error, speed, paths."""
    mean_error = manifest["reconstruction_error"]["mean"]
    return "\n".join([
        f"rows       in {manifest['rows_in']:,}  out {manifest['rows_out']:,}  rejected {manifest['rows_rejected']:,}",
        f"model      {manifest['model_dir']}  (version {manifest['model_version']}), code size {manifest['code_size']}",
        f"error      mean reconstruction error {mean_error if mean_error is not None else float('nan'):.5f}",
        *([f"anomalies  {manifest['anomalies']['rows_flagged']:,} rows flagged above "
           f"{manifest['anomalies']['threshold']:.5f} ({manifest['anomalies']['rule']})"]
          if manifest.get("anomalies") else []),
        f"speed      {manifest['rows_in'] / max(seconds, 1e-9):,.0f} rows/s ({seconds:.1f}s wall, launch included)",
        f"output     {manifest['output_dir'].rstrip('/')}/part-*.parquet ({len(manifest['shards'])} shard(s)) and _SUCCESS",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf encode` / `python -m pipelines.encode`: run and print the summary."""
    return main_with_summary(run, summarize, argv)


if __name__ == "__main__":
    from ae_tf.commands.main import run_alone
    from pipelines.commands import ENCODE

    sys.exit(run_alone(ENCODE))  # this pipeline's own row: flags checked, one-line errors, no CLI table
