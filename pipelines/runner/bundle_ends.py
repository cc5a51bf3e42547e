"""Bundle ends that do not wait on Beam's step-timing thread, for runs on the in-process runner.

Beam's SDK harness times each step with a sampler thread that sleeps between samples (the sleep grows from
2 ms to 200 ms), and every bundle's end joins that thread, so a bundle that ran for a second waits up to
200 ms more. The in-process runner runs the stages' bundles one after another: a 100k-row dedup (26
bundles) spent 0.44 s of its 6.9 s there, a 1M-row one 0.75 s. While a local run executes, samplers get a
LOCAL_SAMPLING_PERIOD_MS ceiling instead: at most that wait per bundle, for about a hundred wake-ups a
second while a bundle runs. Remote runners (Dataflow) build their samplers in their own workers, untouched.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from apache_beam.runners.worker import statesampler

LOCAL_SAMPLING_PERIOD_MS = 10


@contextlib.contextmanager
def quick_bundle_ends() -> Iterator[None]:
    """Samplers made inside the block (one per bundle processor) sample every LOCAL_SAMPLING_PERIOD_MS at most."""
    default = statesampler.StateSampler

    class QuickSampler(default):
        def __init__(self, prefix, counter_factory, sampling_period_ms=LOCAL_SAMPLING_PERIOD_MS):
            super().__init__(prefix, counter_factory, min(sampling_period_ms, LOCAL_SAMPLING_PERIOD_MS))

    statesampler.StateSampler = QuickSampler  # the bundle processor looks the class up when it makes one
    try:
        yield
    finally:
        statesampler.StateSampler = default
