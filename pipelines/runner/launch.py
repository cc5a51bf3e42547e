"""What every pipeline's `run()` and `main()` share: flags common to all, runner choice, the progress line,
clean one-line failures, reading the manifest back, and the printed summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence

import apache_beam as beam

from ae_tf import interrupts
from ae_tf.errors import user_error_in, user_error_in_text
from ae_tf.malloc import tune_malloc
from pipelines.io.parquet import read_manifest, start_output
from pipelines.runner.bundle_ends import quick_bundle_ends
from pipelines.runner.gcs_auth import skip_for_options
from pipelines.runner.options import (  # noqa: F401 (the flag helpers are importable from here too)
    BEAM_OPTIONS_EPILOG,
    add_output_flags,
    local_runner_if_unset,
    pipeline_arg_parser,
    pipeline_options,
)
from pipelines.runner.progress import local_progress


@dataclasses.dataclass
class Launch:
    """Beam options and the runner: the in-process one unless the user named a runner (then None)."""

    options: object
    runner: object | None

    @property
    def local(self) -> bool:
        return self.runner is not None


def prepare_launch(beam_args: Sequence[str], save_main_session: bool = True) -> Launch:
    tune_malloc()  # big arrays and shuffle buffers are reused, not faulted in again (ae_tf.malloc)
    options = pipeline_options(beam_args, save_main_session)
    skip_for_options(options)  # --no_auth: no credential look-up with back-off (pipelines.runner.gcs_auth)
    return Launch(options, local_runner_if_unset(options))


def is_dry_run(options) -> bool:
    """--dry_run: the runner builds the job without running it, so nothing on disk may change."""
    from apache_beam.options.pipeline_options import TestOptions

    return bool(options is not None and options.view_as(TestOptions).dry_run)


def execute(launch: Launch, build: Callable[[beam.Pipeline], object], output_dir: str, progress_key: str,
            label: str, progress_interval: float, test_pipeline=None,
            output_dirs: Sequence[str] | None = None) -> dict | None:
    """Build and run the pipeline; returns its `_SUCCESS` manifest (None when nothing ran here, e.g. a
    Dataflow dry run or a remote runner that has not written it).

    `output_dirs` (default: `output_dir`) are prepared here, when the run starts (old manifests retracted),
    not while planning; a dry run (--dry_run) leaves them untouched."""
    pipeline = test_pipeline or beam.Pipeline(runner=launch.runner, options=launch.options)
    build(pipeline)
    dry_run = is_dry_run(launch.options)
    if not dry_run:
        start_output(*(output_dirs if output_dirs is not None else [output_dir]))
    interrupts.pause_point("planning")  # tests: a signal after planning, before any batch
    try:
        with local_progress(progress_key, label, launch.local, progress_interval), \
                (quick_bundle_ends() if launch.local else contextlib.nullcontext()):
            pipeline.run().wait_until_finish()
    except Exception as err:
        clean = user_error_in(err) or user_error_in_text(err)  # in-process Beam keeps the type; others send text
        if clean is None:
            raise
        raise clean from None
    if dry_run:  # an earlier run's manifest is not this run's
        return None
    try:
        return read_manifest(output_dir)
    except (OSError, FileNotFoundError):
        return None


def main_with_summary(run: Callable[[Sequence[str] | None], dict | None], summarize: Callable[[dict, float], str],
                      argv: Sequence[str] | None) -> int:
    """`ae-tf NAME` / `python -m pipelines.NAME`: run, then print the summary (or say nothing ran here)."""
    started = time.perf_counter()
    manifest = run(argv)
    if manifest is None:
        print("pipeline submitted; no local output to summarise (remote runner or dry run)")
        return 0
    print(summarize(manifest, time.perf_counter() - started))
    return 0
