"""PCA-reduce embedding Parquet: fit in one pass, save the fit, write the reduced vectors.

    python -m pipelines.reduce --input 'embeddings/*.parquet' --output OUT_DIR [--components K | --variance 0.95]
        [--fit-sample FRACTION] [--keep-columns id] [Beam options]

Flow: the vector column is checked in every file at launch -> pass 1: whole Arrow batches -> moments
(count, mean, scatter; float64) combined across workers -> eigendecomposition -> pass 2 (waits for the
fit, a side input): kept columns + `reduced` fixed_size_list<float32>[K] -> one temporary shard per split
-> the PCA artifact (OUT_DIR/_pca: pca.json, pca.npz, explained_variance.png) -> shards published ->
`_SUCCESS` manifest written last. `--pca-from DIR` applies an earlier fit instead of fitting.

Expected result (tests/test_reduce.py): the same components (up to sign), explained variance (to 1e-6
relative) and reduced vectors as scikit-learn's PCA on the same rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence

import apache_beam as beam
import pyarrow as pa

import ae_tf
from ae_tf.contracts import ReduceManifest
from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT
from ae_tf.embeddings import embedding_array
from ae_tf.vectors.pca import (
    JSON_NAME,
    NPZ_NAME,
    PLOT_NAME,
    Moments,
    PcaFit,
    fit_pca,
    fit_sample_mask,
    plot_explained_variance,
)
from pipelines.io.output_files import exists, read_bytes, write_bytes
from pipelines.io.parquet import (
    TEMP_DIR,
    InputError,
    ShardResult,
    WriteParquetShards,
    check_output,
    publish_shards,
    utc_now,
    write_manifest,
)
from pipelines.io.vector_input import ReadNumberedBatches, VectorInput, check_columns, plan_vector_input
from pipelines.runner.launch import (
    add_output_flags,
    execute,
    main_with_summary,
    pipeline_arg_parser,
    prepare_launch,
)
from pipelines.runner.options import split_args

log = logging.getLogger(__name__)

REDUCED = "reduced"
ARTIFACT_DIR = "_pca"  # starts with "_": readers of OUT_DIR (pandas, pyarrow, DuckDB globs) skip it
PCA_DIR_KEY = b"ae_tf.pca_dir"
PCA_COMPONENTS_KEY = b"ae_tf.pca_components"


def reduce_arg_parser() -> argparse.ArgumentParser:
    parser = pipeline_arg_parser(
        "ae-tf reduce", "PCA-reduce the vectors of embedding Parquet (a Beam pipeline): fit in one pass, save the fit "
                        "(JSON, .npz, plot), write kept columns + `reduced`.")
    parser.add_argument("--input", required=True, help="embedding Parquet: a glob or a directory (local or gs://)")
    parser.add_argument("--output", required=True, help="output directory: part-*.parquet, _pca/ and _SUCCESS")
    parser.add_argument("--column", default="embedding", help="vector column to reduce (default: %(default)s)")
    parser.add_argument("--keep-columns", default=None,
                        help="comma-separated columns copied to the output (default: every column but --column)")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--components", type=int, default=None, help="keep this many principal components")
    size.add_argument("--variance", type=float, default=None,
                      help="keep the fewest components explaining this fraction of the variance (default 0.95)")
    parser.add_argument("--fit-sample", type=float, default=1.0,
                        help="fit on this fraction of rows, chosen by a seeded hash of each row (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --fit-sample (default: %(default)s)")
    parser.add_argument("--whiten", action="store_true", help="scale each reduced column to unit variance")
    parser.add_argument("--pca-from", default=None,
                        help="apply the fit saved by an earlier run (its output directory or its _pca directory)")
    add_output_flags(parser)
    return parser


@dataclasses.dataclass(frozen=True)
class ReducePlan:
    """Everything decided at launch: checked inputs, kept columns, how many components, where things go."""

    vectors: VectorInput
    keep_columns: tuple[str, ...]
    output_dir: str
    components: int | None = None
    variance: float | None = None
    fit_sample: float = 1.0
    seed: int = 0
    whiten: bool = False
    prefit: PcaFit | None = None  # from --pca-from: no fitting pass
    pca_from: str | None = None
    batch_rows: int = BATCH_ROWS
    compression: str = "zstd"
    run_id: str = ""

    @property
    def temp_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{TEMP_DIR}/{self.run_id}"

    @property
    def artifact_dir(self) -> str:
        return f"{self.output_dir.rstrip('/')}/{ARTIFACT_DIR}"

    @property
    def read_columns(self) -> list[str]:
        return list(dict.fromkeys([self.vectors.column, *self.keep_columns]))


def load_pca(path: str) -> PcaFit:
    """A saved fit from its directory, or from a reduce output directory holding `_pca/`."""
    for directory in (path.rstrip("/"), f"{path.rstrip('/')}/{ARTIFACT_DIR}"):
        json_path = f"{directory}/{JSON_NAME}"
        if exists(json_path):
            return PcaFit.from_json_bytes(read_bytes(json_path), source=json_path)
    raise InputError(f"{path}: no {JSON_NAME} here or in {path.rstrip('/')}/{ARTIFACT_DIR} (--pca-from)")


def plan_reduce(input_pattern: str, output_dir: str, column: str = "embedding",
                keep_columns: Sequence[str] | None = None, components: int | None = None,
                variance: float | None = None, fit_sample: float = 1.0, seed: int = 0, whiten: bool = False,
                pca_from: str | None = None, batch_rows: int = BATCH_ROWS, max_rows_per_split: int = MAX_ROWS_PER_SPLIT,
                compression: str = "zstd", overwrite: bool = False) -> ReducePlan:
    """Check inputs, flags and output before launching; every problem is one line naming the path or flag."""
    vectors = plan_vector_input(input_pattern, column, max_rows_per_split)
    if keep_columns is None:
        keep_columns = [n for n in vectors.schema.names if n != column]
    if REDUCED in keep_columns:
        raise InputError(f"--keep-columns: {REDUCED!r} is the output column; rename it in the input or leave it out")
    check_columns(vectors, keep_columns, "--keep-columns")
    if components is not None and variance is not None:
        raise InputError("give either --components or --variance, not both")
    if components is not None and not 1 <= components <= vectors.width:
        raise InputError(f"--components must be between 1 and {vectors.width} (the size of {column!r}), got {components}")
    if variance is not None and not 0.0 < variance <= 1.0:
        raise InputError(f"--variance must be a fraction in (0, 1], got {variance}")
    if not 0.0 < fit_sample <= 1.0:
        raise InputError(f"--fit-sample must be a fraction in (0, 1], got {fit_sample}")
    prefit = None
    if pca_from is not None:
        if components is not None or variance is not None or fit_sample != 1.0:
            raise InputError("--pca-from applies a saved fit: leave out --components, --variance and --fit-sample")
        prefit = load_pca(pca_from)
        if prefit.n_features != vectors.width:
            raise InputError(f"{pca_from}: the saved PCA expects {prefit.n_features} numbers per row, "
                             f"column {column!r} holds {vectors.width}")
    elif vectors.rows < 2:
        raise InputError(f"{input_pattern}: PCA needs at least 2 rows to fit, the input has {vectors.rows}")
    check_output(output_dir, overwrite)  # read-only: the run prepares it (pipelines.launch.execute)
    return ReducePlan(vectors, tuple(keep_columns), output_dir, components, variance, fit_sample, seed, whiten,
                      prefit, pca_from, batch_rows, compression, run_id=time.strftime("%Y%m%d-%H%M%S"))


class MomentsFn(beam.CombineFn):
    """(split index, first row, RecordBatch) elements -> Moments of their vectors (the sampled rows only)."""

    def __init__(self, vectors: VectorInput, fit_sample: float = 1.0, seed: int = 0):
        self._vectors = vectors
        self._fit_sample = fit_sample
        self._seed = seed

    def create_accumulator(self) -> Moments:
        return Moments()

    def add_input(self, accumulator: Moments, element) -> Moments:
        index, first_row, batch = element
        matrix = self._vectors.matrix(batch, index, first_row)
        return accumulator.merge(Moments.of(matrix[fit_sample_mask(matrix, self._fit_sample, self._seed)]))

    def merge_accumulators(self, accumulators) -> Moments:
        merged = Moments()
        for accumulator in accumulators:
            merged = merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: Moments) -> Moments:
        return accumulator


def fit_from_moments(moments: Moments, plan: ReducePlan) -> PcaFit:
    info = {"inputs": list(plan.vectors.inputs), "column": plan.vectors.column, "fit_sample": plan.fit_sample,
            "seed": plan.seed, "created_at": utc_now(), "ae_tf_version": ae_tf.__version__}
    return fit_pca(moments, plan.components, plan.variance, info)


def reduced_schema(plan: ReducePlan, fit: PcaFit) -> pa.Schema:
    """Kept columns as in the input + `reduced` fixed_size_list<float32>[K]; input metadata carried over."""
    fields = [plan.vectors.schema.field(name) for name in plan.keep_columns]
    fields.append(pa.field(REDUCED, pa.list_(pa.float32(), fit.n_components)))
    metadata = {k: v for k, v in (plan.vectors.schema.metadata or {}).items() if k.startswith(b"ae_tf.")}
    metadata.update({PCA_DIR_KEY: (plan.pca_from or plan.artifact_dir).encode(),
                     PCA_COMPONENTS_KEY: str(fit.n_components).encode()})
    return pa.schema(fields, metadata=metadata)


def project_batch(element, plan: ReducePlan, fit: PcaFit) -> tuple[int, pa.RecordBatch]:
    """One input batch -> its kept columns + the PCA projection of its vectors."""
    index, first_row, batch = element
    schema = reduced_schema(plan, fit)
    reduced = fit.transform(plan.vectors.matrix(batch, index, first_row), whiten=plan.whiten)
    columns = []
    for field in schema:
        if field.name == REDUCED:
            columns.append(embedding_array(reduced) if len(reduced) else pa.array([], type=field.type))
        else:
            column = batch.column(field.name)
            columns.append(column.cast(field.type) if column.type != field.type else column)
    return index, pa.RecordBatch.from_arrays(columns, schema=schema)


def save_artifact(fit: PcaFit, directory: str) -> dict:
    """pca.json, pca.npz and the explained-variance plot; returns their paths."""
    paths = {"json": f"{directory}/{JSON_NAME}", "npz": f"{directory}/{NPZ_NAME}", "plot": f"{directory}/{PLOT_NAME}"}
    write_bytes(paths["json"], fit.to_json_bytes(), "application/json")
    write_bytes(paths["npz"], fit.to_npz_bytes())
    try:
        write_bytes(paths["plot"], plot_explained_variance(fit), "image/png")
    except ImportError:
        log.warning("no %s: matplotlib is not installed (pip install 'ae-tf[report]'); the numbers are in %s",
                    PLOT_NAME, JSON_NAME)
        paths["plot"] = None
    return paths


def publish(results: list[ShardResult], plan: ReducePlan, started: str, fit: PcaFit) -> dict:
    """Final step, run once: save the fit, rename shards, check conservation, then write `_SUCCESS`."""
    artifact = {"from": plan.pca_from} if plan.prefit is not None else save_artifact(fit, plan.artifact_dir)
    shards = publish_shards(plan.output_dir, plan.temp_dir, results, len(plan.vectors.splits))
    rows_out = sum(s["rows"] for s in shards)
    if rows_out != plan.vectors.rows:
        raise RuntimeError(f"{plan.output_dir}: read {plan.vectors.rows} rows but wrote {rows_out}; not publishing")
    manifest = ReduceManifest(
        rows_in=plan.vectors.rows, rows_out=rows_out, rows_rejected=0,
        inputs=list(plan.vectors.inputs), output_dir=plan.output_dir, shards=shards,
        column=plan.vectors.column, keep_columns=list(plan.keep_columns),
        pca={"n_components": fit.n_components, "n_features": fit.n_features, "selected_by": fit.selected_by,
             "explained_variance_ratio_kept": float(fit.explained_variance_ratio[: fit.n_components].sum()),
             "fit_rows": fit.n_rows, "fit_sample": plan.fit_sample, "whiten": plan.whiten, "artifact": artifact},
        started_at=started, finished_at=utc_now(), ae_tf_version=ae_tf.__version__,
    ).to_dict()
    write_manifest(plan.output_dir, manifest)
    return manifest


class FitPca(beam.PTransform):
    """PBegin -> one PcaFit: moments of every batch combined across workers, then eigendecomposed."""

    def __init__(self, plan: ReducePlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        return (
            pbegin
            | "ReadForFit" >> ReadNumberedBatches(plan.vectors, [plan.vectors.column], plan.batch_rows,
                                                         progress_key=f"reduce-{plan.run_id}")
            | "CombineMoments" >> beam.CombineGlobally(MomentsFn(plan.vectors, plan.fit_sample, plan.seed))
            | "Eigendecompose" >> beam.Map(fit_from_moments, plan)
        )


class ReduceParquet(beam.PTransform):
    """PBegin -> the manifest dict (one element), having written the reduced Parquet and the fit of `plan`."""

    def __init__(self, plan: ReducePlan):
        super().__init__()
        self._plan = plan

    def expand(self, pbegin):
        plan = self._plan
        if plan.prefit is not None:
            fit = pbegin | "LoadSavedPca" >> beam.Create([plan.prefit])
        else:
            fit = pbegin | "FitPca" >> FitPca(plan)
        fit_view = beam.pvalue.AsSingleton(fit)
        return (
            pbegin
            | "ReadForProjection" >> ReadNumberedBatches(plan.vectors, plan.read_columns, plan.batch_rows,
                                                                progress_key=f"reduce-{plan.run_id}")
            | "ProjectBatches" >> beam.Map(project_batch, plan, fit_view)
            | "WriteShards" >> WriteParquetShards(plan.temp_dir, None, plan.compression)
            | "CollectShards" >> beam.combiners.ToList()
            | "PublishOutput" >> beam.Map(publish, plan, utc_now(), fit_view)
        )


def build_pipeline(p: beam.Pipeline, plan: ReducePlan):
    return p | "ReduceParquet" >> ReduceParquet(plan)


def plan_from_args(args: argparse.Namespace) -> ReducePlan:
    keep = [c.strip() for c in args.keep_columns.split(",") if c.strip()] if args.keep_columns else None
    return plan_reduce(args.input, args.output, args.column, keep, args.components, args.variance, args.fit_sample,
                       args.seed, args.whiten, args.pca_from, args.batch_rows, args.max_rows_per_split,
                       args.compression, args.overwrite)


def run(argv: Sequence[str] | None = None, save_main_session: bool = True, test_pipeline=None) -> dict | None:
    """Parse flags, plan, run; returns the manifest (None when the runner did not execute it, e.g. a dry run)."""
    args, beam_args = split_args(reduce_arg_parser(), argv)
    plan = plan_from_args(args)
    log.info("reducing %d rows x %d from %d file(s) in %d split(s)", plan.vectors.rows, plan.vectors.width,
             len(plan.vectors.inputs), len(plan.vectors.splits))
    return execute(prepare_launch(beam_args, save_main_session), lambda p: build_pipeline(p, plan), plan.output_dir,
                   f"reduce-{plan.run_id}", "reduce", args.progress_interval, test_pipeline)


def summarize(manifest: dict, seconds: float) -> str:
    """The short report printed after a run."""
    pca = manifest["pca"]
    selected = ", ".join(f"{k} {v}" for k, v in pca["selected_by"].items())
    artifact = pca["artifact"].get("from") or f"{manifest['output_dir']}/{ARTIFACT_DIR}"
    return "\n".join([
        f"rows       in {manifest['rows_in']:,}  out {manifest['rows_out']:,}",
        f"pca        {pca['n_features']} -> {pca['n_components']} components ({selected}), "
        f"{pca['explained_variance_ratio_kept']:.2%} of the variance kept; fitted on {pca['fit_rows']:,} rows",
        f"speed      {manifest['rows_in'] / max(seconds, 1e-9):,.0f} rows/s ({seconds:.1f}s wall, launch included)",
        f"output     {manifest['output_dir'].rstrip('/')}/part-*.parquet ({len(manifest['shards'])} shard(s)) and _SUCCESS",
        f"fit        {artifact} ({JSON_NAME}, {NPZ_NAME}, {PLOT_NAME})",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """`ae-tf reduce` / `python -m pipelines.reduce`: run and print the summary."""
    return main_with_summary(run, summarize, argv)


if __name__ == "__main__":
    from ae_tf.commands.main import run_alone
    from pipelines.commands import REDUCE

    sys.exit(run_alone(REDUCE))  # this pipeline's own row: flags checked, one-line errors, no CLI table
