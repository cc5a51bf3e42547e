"""`--epochs` counts passes over the training rows, the step floor is explicit, and the in-memory cache
trains the same model as streaming."""

import logging
import math
import os
import warnings

import keras
import numpy as np
import pyarrow.parquet as pq
import pytest
from image_data import write_image_dataset

from ae_tf.inputs.features import FeatureSpec
from ae_tf.inputs.images import BYTES, ImageSpec
from ae_tf.inputs.input_cache import decide_cache
from ae_tf.model.schedule import plan_schedule
from ae_tf.model.train import make_train_config, train

ROWS, BATCH, EPOCHS = 120, 16, 2


class CountSteps(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1


def test_the_step_floor_applies_to_small_rows_only():
    # digits: 1,212 training rows of 64 values, batch 256 -> 5 steps per pass; 20 epochs x 100 steps floor
    digits = plan_schedule(20, 1212, 256, 64)
    assert (digits.steps_per_pass, digits.passes_per_epoch, digits.passes, digits.steps) == (5, 20, 400, 2000)
    assert digits.raised and "--min-steps 2,000" in digits.describe() and "--min-steps 0" in digits.describe()
    # 3,000 48x48 RGB crops: one pass per epoch, whatever the data size
    crops = plan_schedule(10, 2700, 256, 48 * 48 * 3)
    assert (crops.passes_per_epoch, crops.passes, crops.min_steps) == (1, 10, 0) and not crops.raised
    assert "one pass per epoch" in crops.describe()
    assert plan_schedule(20, 1212, 256, 64, min_steps=0).passes == 20  # --min-steps 0: exactly --epochs
    assert plan_schedule(20, 100_000, 256, 64).passes == 20  # large tabular data: the floor is already met


def test_cache_auto_compares_the_decoded_size_with_its_budget():
    spec = FeatureSpec("image", ("image",), 256 * 256 * 3, image=ImageSpec(256, 256, 3, BYTES))
    fits = decide_cache("auto", spec, 1000, limit_gb=4)  # 1000 x 786 kB = 0.73 GiB
    assert fits.enabled and fits.estimated_bytes == 1000 * 256 * 256 * 3 * 4
    too_big = decide_cache("auto", spec, 10_000, limit_gb=4)
    assert not too_big.enabled and "exceed the budget of 4,096 MB" in too_big.describe()
    assert decide_cache("memory", spec, 10_000, limit_gb=4).enabled
    assert not decide_cache("none", spec, 10, limit_gb=4).enabled
    with pytest.raises(ValueError, match="--cache must be one of"):
        decide_cache("disk", spec, 10)


@pytest.fixture(scope="module")
def cached_and_streamed(tmp_path_factory):
    """The same tiny conv model trained twice on two Parquet files of images: cached, and streamed."""
    directory = tmp_path_factory.mktemp("schedule")
    table = pq.read_table(write_image_dataset(directory / "one", ROWS))
    for i, (lo, hi) in enumerate([(0, 70), (70, ROWS)]):
        os.makedirs(directory / "two", exist_ok=True)
        pq.write_table(table.slice(lo, hi - lo), directory / "two" / f"part-{i}.parquet", row_group_size=32)
    runs = {}
    for cache in ("memory", "none"):
        counter = CountSteps()
        config = make_train_config(str(directory / "two"), "image", str(directory / cache), 4, family="conv",
                                   image_size="24", channels=3, filters="4", epochs=EPOCHS, batch_size=BATCH,
                                   read_rows=32, cache=cache, patience=10)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(config, callbacks=[counter])
        runs[cache] = (result, counter.steps, [str(w.message) for w in caught])
    return runs


def test_epochs_count_passes_with_no_ran_out_of_data_warning(cached_and_streamed, caplog):
    for cache, (result, steps, caught) in cached_and_streamed.items():
        training = result.metadata["training"]
        per_pass = math.ceil(training["rows_train"] / BATCH)
        # 24x24x3 = 1,728 values a row: images get no step floor, so 2 epochs are 2 passes
        assert training["schedule"]["passes_per_epoch"] == 1 and training["schedule"]["min_steps"] == 0
        assert steps == EPOCHS * per_pass, cache
        assert len(result.history["loss"]) == training["epochs_run"] == EPOCHS
        assert training["cache"]["enabled"] == (cache == "memory")
        assert not [m for m in caught if "ran out of data" in m], caught
    assert "ran out of data" not in caplog.text


def test_the_cache_trains_the_same_model_as_streaming(cached_and_streamed):
    cached, streamed = cached_and_streamed["memory"][0], cached_and_streamed["none"][0]
    assert cached.history["loss"] == pytest.approx(streamed.history["loss"], rel=1e-6)
    for a, b in zip(cached.model.get_weights(), streamed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_schedule_and_cache_are_logged(tmp_path, caplog):
    from conftest import train_tiny, write_vector_dataset

    write_vector_dataset(tmp_path / "d", rows=300, files=1)
    with caplog.at_level(logging.INFO, logger="ae_tf.model.train"):
        result = train_tiny(f"{tmp_path}/d/*.parquet", "vec", str(tmp_path / "m"), epochs=2)
    plan = result.metadata["training"]["schedule"]
    # 270 rows of 12 values, batch 64: 5 steps a pass; the default floor of 100 steps per epoch -> 20 passes
    assert (plan["steps_per_pass"], plan["passes_per_epoch"], plan["raised"]) == (5, 20, True)
    assert "makes each epoch 20 passes" in caplog.text and "cache: in memory (--cache auto" in caplog.text
