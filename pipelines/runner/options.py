"""Command-line options of the pipelines: our own flags via argparse, everything else to Beam.

Local runs default to Beam's in-process runner chosen explicitly, so nothing tries to download a runner
binary; `--runner DataflowRunner ...` and other Beam options pass straight through.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions

from ae_tf.defaults import BATCH_ROWS, MAX_ROWS_PER_SPLIT

BEAM_OPTIONS_EPILOG = ("Any other flag is a Beam pipeline option, e.g. --runner DataflowRunner --project P --region R "
                       "--temp_location gs://B/tmp. Without --runner the local in-process runner is used.")


def pipeline_arg_parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=prog, description=description, epilog=BEAM_OPTIONS_EPILOG)


def add_output_flags(parser: argparse.ArgumentParser, batch_help: str = "rows per Arrow batch") -> None:
    """Reading, writing and rerun flags that every Parquet-to-Parquet pipeline takes."""
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help=f"{batch_help} (default: %(default)s)")
    parser.add_argument("--max-rows-per-split", type=int, default=MAX_ROWS_PER_SPLIT,
                        help="large files are split at row groups into units of about this many rows (default: %(default)s)")
    parser.add_argument("--compression", default="zstd", help="Parquet codec of the output (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --output")
    add_progress_flag(parser)


def encode_arg_parser() -> argparse.ArgumentParser:
    parser = pipeline_arg_parser(
        "ae-tf encode", "Encode Parquet rows into embedding Parquet with an ae-tf model directory (a Beam pipeline).")
    parser.add_argument("--model", required=True,
                        help="model directory written by `ae-tf train`, or a model registry (its champion)")
    parser.add_argument("--input", required=True, help="Parquet files: a glob or a directory (local or gs://)")
    parser.add_argument("--output", required=True, help="output directory: part-*.parquet and _SUCCESS")
    parser.add_argument("--keep-columns", default=None,
                        help="comma-separated columns copied to the output (default: every non-feature column)")
    add_output_flags(parser, batch_help="rows per Arrow batch read")
    add_model_batch_flags(parser)
    parser.add_argument("--flag-anomalies", action="store_true",
                        help="add anomaly_score and is_anomaly: the model's anomaly score above its calibrated "
                             "threshold (99th percentile of the validation scores, from its metadata)")
    parser.add_argument("--anomaly-threshold", type=float, default=None,
                        help="flag rows whose anomaly_score exceeds this value (implies --flag-anomalies)")
    parser.add_argument("--anomaly-quantile", type=float, default=None,
                        help="flag rows above this quantile of the model's validation anomaly scores, "
                             "e.g. 0.995 (implies --flag-anomalies)")
    parser.add_argument("--skip-bad-files", action="store_true",
                        help="leave out unreadable files and files whose schema does not fit (listed in _SUCCESS)")
    parser.add_argument("--max-rejected-fraction", type=float, default=0.01,
                        help="fail, publishing nothing but _rejected/, when more rows than this fraction cannot "
                             "be encoded (default: %(default)s)")
    from pipelines.io.compact_output import add_embedding_dtype_flag

    add_embedding_dtype_flag(parser)
    add_gpu_flag(parser)
    return parser


def _model_batch_rows(text: str) -> int | None:
    from ae_tf.model.batching import parse_model_batch_rows

    try:
        return parse_model_batch_rows(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_model_batch_flags(parser: argparse.ArgumentParser) -> None:
    """`--model-batch-rows` and the memory budget that sizes it when automatic (ae_tf.model.batching)."""
    from ae_tf.model.batching import DEFAULT_MEMORY_MB, MEMORY_ENV

    parser.add_argument("--model-batch-rows", type=_model_batch_rows, default=None, metavar="auto|N",
                        help="rows per model call, whatever --batch-rows is; auto sizes it from the model's "
                             "activations against --model-memory-mb (default: auto; the value used is in _SUCCESS)")
    parser.add_argument("--model-memory-mb", type=float, default=None,
                        help=f"memory budget of one model call when --model-batch-rows is auto (default: "
                             f"${MEMORY_ENV} or {DEFAULT_MEMORY_MB})")


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--progress-interval", type=float, default=3.0,
                        help="seconds between progress lines on the local runner; 0 turns them off "
                             "(default: %(default)s)")


def split_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """Our flags -> namespace; the rest are Beam's (presets such as --gpu expanded into Beam options)."""
    args, beam_args = parser.parse_known_args(argv)
    if getattr(args, "gpu", None) is not None:
        from pipelines.runner.dataflow import with_gpu_preset

        beam_args = with_gpu_preset(beam_args, args.gpu)
    return args, beam_args


def add_gpu_flag(parser: argparse.ArgumentParser) -> None:
    """`--gpu [TYPE[:COUNT]]`: the Dataflow GPU worker preset (pipelines.runner.dataflow explains what it sets)."""
    from pipelines.runner.dataflow import DEFAULT_GPU

    parser.add_argument("--gpu", nargs="?", const=DEFAULT_GPU, default=None, metavar="TYPE[:COUNT]",
                        help=f"Dataflow GPU workers (default type {DEFAULT_GPU}): adds the accelerator with its "
                             "driver, a machine type that carries it, and one SDK process (one model copy) per "
                             "worker; needs --sdk_container_image built from deploy/dataflow/Dockerfile")


class LaunchOptions(PipelineOptions):
    """PipelineOptions that make each view once. Beam (2.77) builds and runs a fresh argparse parser on
    every `view_as`, and building a pipeline asks hundreds of times (type checks, transform expansion):
    about 760 views, 0.5 s or more, for the dedup graph. Views share this object's option values, so a
    kept view stays current; the cache is not pickled."""

    def view_as(self, cls):
        views = self.__dict__.setdefault("_views", {})  # not through __setattr__: that stores an option
        view = views.get(cls)
        if view is None or view._all_options is not self._all_options:
            view = views[cls] = super().view_as(cls)
        return view

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def pipeline_options(beam_args: Sequence[str], save_main_session: bool = True) -> PipelineOptions:
    options = LaunchOptions(list(beam_args))
    options.view_as(SetupOptions).save_main_session = save_main_session
    return options


def local_runner_if_unset(options: PipelineOptions):
    """The in-process runner when the user named none; None means: use the runner they asked for."""
    if options.view_as(StandardOptions).runner:
        return None
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return FnApiRunner()
