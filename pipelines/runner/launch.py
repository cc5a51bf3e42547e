"""What every pipeline's `run()` and `main()` share: flags common to all, runner choice, the progress line,
clean one-line failures, reading the manifest back, and the printed summary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import apache_beam as beam

from ae_tf import interrupts
from pipelines.io.parquet import InputError, read_manifest
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
    options = pipeline_options(beam_args, save_main_session)
    skip_for_options(options)  # --no_auth: no credential look-up with back-off (pipelines.runner.gcs_auth)
    return Launch(options, local_runner_if_unset(options))


def user_error_in(err: BaseException, kinds: tuple[type[Exception], ...]) -> Exception | None:
    """Beam wraps worker exceptions; recover our one-line user errors from the chain or the message."""
    seen = err
    while seen is not None:
        if isinstance(seen, kinds):
            return seen
        seen = seen.__cause__ or seen.__context__
    text = str(err)
    for kind in kinds:
        marker = f"{kind.__name__}: "
        if marker in text:
            return kind(text.split(marker, 1)[1].strip().splitlines()[0].rstrip("'\" "))
    return None


def execute(launch: Launch, build: Callable[[beam.Pipeline], object], output_dir: str, progress_key: str,
            label: str, progress_interval: float, test_pipeline=None,
            user_errors: tuple[type[Exception], ...] = (InputError,)) -> dict | None:
    """Build and run the pipeline; returns its `_SUCCESS` manifest (None when nothing ran here, e.g. a
    Dataflow dry run or a remote runner that has not written it)."""
    pipeline = test_pipeline or beam.Pipeline(runner=launch.runner, options=launch.options)
    build(pipeline)
    interrupts.pause_point("planning")  # tests: a signal after planning, before any batch
    try:
        with local_progress(progress_key, label, launch.local, progress_interval):
            pipeline.run().wait_until_finish()
    except Exception as err:
        clean = user_error_in(err, user_errors)
        if clean is None:
            raise
        raise clean from None
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
