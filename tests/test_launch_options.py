"""pipelines.runner.options.LaunchOptions: one view per options class, always current, never pickled."""

import pickle

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, SetupOptions, StandardOptions, TypeOptions
from apache_beam.testing.util import assert_that, equal_to

from pipelines.runner.options import LaunchOptions, pipeline_options


def count_new_views(monkeypatch) -> list:
    """The classes of the views PipelineOptions makes from now on (LaunchOptions asks it only on a miss)."""
    made = []
    original = PipelineOptions.view_as

    def counting(self, cls):
        made.append(cls)
        return original(self, cls)

    monkeypatch.setattr(PipelineOptions, "view_as", counting)
    return made


def test_views_are_made_once_and_stay_current(monkeypatch):
    made = count_new_views(monkeypatch)
    options = LaunchOptions(["--runner", "DirectRunner", "--type_check_strictness", "ALL_REQUIRED"])
    standard = options.view_as(StandardOptions)
    assert options.view_as(StandardOptions) is standard and made == [StandardOptions]
    assert standard.runner == "DirectRunner" and options.view_as(TypeOptions).type_check_strictness == "ALL_REQUIRED"
    standard.runner = "DataflowRunner"  # a change through a view is seen by every view and the options
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.get_all_options()["runner"] == "DataflowRunner"
    options.view_as(SetupOptions).save_main_session = True
    assert options.get_all_options()["save_main_session"] is True


def test_pickled_without_the_cache_and_usable_after():
    options = pipeline_options(["--runner", "DirectRunner"], save_main_session=False)
    options.view_as(StandardOptions)
    assert "_views" in options.__dict__
    copy = pickle.loads(pickle.dumps(options))
    assert "_views" not in copy.__dict__
    assert copy.view_as(StandardOptions).runner == "DirectRunner"
    assert copy.view_as(SetupOptions).save_main_session is False


def views_made_building(options, monkeypatch) -> int:
    """New views made while a small pipeline with a combine is built and run (the result is checked)."""
    made = count_new_views(monkeypatch)
    with beam.Pipeline(options=options) as p:
        sums = p | beam.Create(range(10)) | beam.Map(lambda x: (x % 2, x)) | beam.CombinePerKey(sum)
        assert_that(sums | beam.combiners.ToList() | beam.Map(sorted), equal_to([[(0, 20), (1, 25)]]))
    monkeypatch.undo()
    return len(made)


def test_building_a_pipeline_makes_few_views(monkeypatch):
    plain = views_made_building(PipelineOptions([]), monkeypatch)
    cached = views_made_building(pipeline_options([]), monkeypatch)
    assert cached * 3 < plain  # measured: 31 against 265
