"""pipelines.runner.bundle_ends: local bundles sample their steps with a short period, and only inside the block."""

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.worker import statesampler
from apache_beam.testing.util import assert_that, equal_to

from pipelines.runner.bundle_ends import LOCAL_SAMPLING_PERIOD_MS, quick_bundle_ends

PERIODS: list[int] = []  # module level: the DoFns are pickled, a module's function by reference


def record(x):
    PERIODS.append(statesampler.get_current_tracker().sampling_period_ms)
    return x


def sampling_periods() -> list[int]:
    """Runs a two-stage pipeline on the in-process runner; the sampling period each bundle ran under."""
    PERIODS.clear()
    with beam.Pipeline(runner=FnApiRunner()) as p:
        sums = (p | beam.Create([(i % 3, i) for i in range(30)]) | "Before" >> beam.Map(record) | beam.GroupByKey()
                | beam.MapTuple(lambda k, v: (k, sum(v))) | "After" >> beam.Map(record))
        assert_that(sums, equal_to([(0, 135), (1, 145), (2, 155)]))
    return list(PERIODS)


def test_local_bundles_sample_with_the_short_period_only_inside_the_block():
    default = statesampler.StateSampler
    with quick_bundle_ends():
        inside = sampling_periods()
    outside = sampling_periods()
    assert inside and set(inside) == {LOCAL_SAMPLING_PERIOD_MS}
    assert outside and set(outside) == {statesampler.DEFAULT_SAMPLING_PERIOD_MS} != {LOCAL_SAMPLING_PERIOD_MS}
    assert statesampler.StateSampler is default


def test_the_default_class_comes_back_after_an_error():
    default = statesampler.StateSampler
    try:
        with quick_bundle_ends():
            assert statesampler.StateSampler is not default
            raise RuntimeError("a failed run")
    except RuntimeError:
        pass
    assert statesampler.StateSampler is default
