"""gs:// end to end through a real GCS API (gcp-storage-emulator on localhost; see tests/gcs_emulator.py).

Data, models and registry live in the emulator's bucket: encode, reduce and dedup read and write gs://;
`train --output gs://` publishes a model directory with its metadata last; `encode --model gs://` loads a
staged local copy; a gs:// registry retrains, promotes and rolls back.
"""

from __future__ import annotations

import json
import os
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROWS
from gcs_emulator import emulator_honours_preconditions, upload_tree

from ae_tf import storage
from ae_tf.model.export import MARKER, read_metadata
from ae_tf.registry.registry import PromotionConflict, Registry
from ae_tf_cli import main


def read_gcs_table(directory: str) -> pa.Table:
    files = storage.glob(f"{directory}/part-*.parquet")
    assert files, f"no shards in {directory}"
    return pa.concat_tables(pq.read_table(storage.open_read(path)) for path in files)


def manifest(directory: str) -> dict:
    return json.loads(storage.read_bytes(f"{directory}/_SUCCESS"))


@pytest.fixture
def gcs_data(gcs_root, vector_data) -> str:
    upload_tree(vector_data, f"{gcs_root}/data")
    return f"{gcs_root}/data"


def test_storage_layer_lists_globs_and_publishes_marker_last(gcs_root, tmp_path):
    local = tmp_path / "dir"
    (local / "assets").mkdir(parents=True)
    (local / "a.bin").write_bytes(b"a")
    (local / "assets" / "meta.json").write_text("{}")
    storage.write_bytes(f"{gcs_root}/dir/stale.bin", b"left by an interrupted upload")
    storage.publish_dir(str(local), f"{gcs_root}/dir", "assets/meta.json")
    assert storage.listdir(f"{gcs_root}/dir") == ["a.bin", "assets"]
    assert storage.glob(f"{gcs_root}/d*") == [f"{gcs_root}/dir"] and storage.isdir(f"{gcs_root}/dir")
    assert storage.glob(f"{gcs_root}/*/*.bin") == [f"{gcs_root}/dir/a.bin"]
    blobs = {b.name.rsplit("/", 1)[-1]: b for b in storage.gcs_client().list_blobs(
        storage.split_gcs(gcs_root)[0], prefix=storage.split_gcs(gcs_root)[1] + "/")}
    assert blobs["meta.json"].generation > blobs["a.bin"].generation  # the marker was written last
    with pytest.raises(OSError, match="only local paths and gs://"):
        storage.listdir("s3://bucket/x")


def test_train_to_gs_then_encode_with_gs_model_and_data(gcs_root, gcs_data, capsys):
    model = f"{gcs_root}/models/m1"
    assert main(["train", "--input", f"{gcs_data}/*.parquet", "--features", "vec", "--code-size", "3",
                 "--output", model, "--epochs", "2", "--hidden", "16", "--min-steps", "5"]) == 0
    meta = read_metadata(model)
    assert storage.isfile(f"{model}/{MARKER}") and storage.isfile(f"{model}/saved_model.pb")
    assert meta["data"]["inputs"][0].startswith("gs://") and meta["data"]["rows"] == ROWS
    assert main(["train", "--input", f"{gcs_data}/*.parquet", "--features", "vec", "--code-size", "3",
                 "--output", model, "--epochs", "1"]) == 2  # exists: one-line error, nothing replaced
    assert "already exists" in capsys.readouterr().err
    assert read_metadata(model)["model_version"] == meta["model_version"]

    out = f"{gcs_root}/encoded"
    assert main(["encode", "--model", model, "--input", gcs_data, "--output", out, "--progress-interval", "0"]) == 0
    table = read_gcs_table(out)
    assert table.num_rows == ROWS and sorted(table.column("id").to_pylist()) == list(range(ROWS))
    done = manifest(out)
    assert done["rows_out"] == ROWS and done["model_version"] == meta["model_version"]
    assert not storage.exists(f"{out}/_temporary")
    cached = os.listdir(os.path.join(os.environ["AE_TF_CACHE_DIR"], "models"))
    assert len(cached) == 1 and cached[0].startswith("m1-")  # staged once, loaded from local disk


def test_reduce_and_dedup_read_and_write_gs(gcs_root, vector_model, vector_data):
    from pipelines import encode, reduce

    model_dir, _ = vector_model
    upload_tree(vector_data, f"{gcs_root}/data")
    encoded = f"{gcs_root}/encoded"
    encode.run(["--model", model_dir, "--input", f"{gcs_root}/data/*.parquet", "--output", encoded,
                "--progress-interval", "0"])
    reduced = f"{gcs_root}/reduced"
    reduce.run(["--input", encoded, "--output", reduced, "--components", "2", "--progress-interval", "0"])
    table = read_gcs_table(reduced)
    assert table.num_rows == ROWS and manifest(reduced)["rows_out"] == ROWS
    assert storage.isfile(f"{reduced}/_pca/pca.json")

    deduped = f"{gcs_root}/dedup"
    assert main(["dedup", "--input", encoded, "--output", deduped, "--keep-columns", "id",
                 "--progress-interval", "0"]) == 0
    assert storage.isfile(f"{deduped}/_SUCCESS")
    assert read_gcs_table(f"{deduped}/annotated").num_rows == ROWS
    assert not storage.exists(f"{deduped}/_temporary")


@pytest.mark.slow
def test_registry_on_gs_retrain_then_encode_promote_and_rollback(gcs_root, gcs_data, capsys):
    registry = f"{gcs_root}/registry"
    train_args = ["--epochs", "2", "--hidden", "16"]
    out = f"{gcs_root}/encoded"
    assert main(["retrain", "--registry", registry, "--input", f"{gcs_data}/*.parquet", "--features", "vec",
                 "--code-size", "3", *train_args, "--then-encode", gcs_data, out]) == 0  # first one promotes
    first = Registry(registry).state().champion
    assert first and Registry(registry).versions() == [first]
    assert Registry(registry).read_report(first)["decision"] == "promoted"
    assert manifest(out)["model_version"] == first and manifest(out)["rows_out"] == ROWS

    code = main(["retrain", "--registry", registry, "--input", f"{gcs_data}/*.parquet", "--seed", "1",
                 *train_args])
    assert code in (0, 3)  # promoted, or kept (a challenger no better)
    registry_now = Registry(registry)
    assert len(registry_now.versions()) == 2
    capsys.readouterr()

    second = [v for v in registry_now.versions() if v != first][0]
    state = registry_now.state()
    if state.champion != second:
        assert main(["models", "promote", "--registry", registry, second, "--reason", "by hand"]) == 0
    assert Registry(registry).state().champion == second
    assert main(["models", "rollback", "--registry", registry]) == 0
    state = Registry(registry).state()
    assert state.champion == first and second not in state.previous
    assert main(["models", "list", "--registry", registry]) == 0
    listed = capsys.readouterr().out
    assert first in listed and second in listed


def test_partial_upload_is_not_a_version(gcs_root, vector_model):
    """An interrupted upload (no metadata marker) is invisible: not listed, not promotable."""
    model_dir, _ = vector_model
    registry = Registry(f"{gcs_root}/registry")
    version = read_metadata(model_dir)["model_version"]
    for path in storage.walk_files(model_dir):
        relative = os.path.relpath(path, model_dir)
        if relative != MARKER:
            storage.copy_file(path, f"{registry.version_dir(version)}/{relative}")
    assert registry.versions() == []
    with pytest.raises(Exception, match="not an ae-tf model|no version"):
        registry.promote(version, "should fail")
    assert registry.state().champion is None


@pytest.mark.xfail(strict=True, reason="gcp-storage-emulator ignores ifGenerationMatch (checked by the test "
                                      "itself); the compare-and-swap is proven on local registries and on GCS")
def test_six_concurrent_promotes_one_winner_through_generation_preconditions(gcs_root, vector_model,
                                                                             tmp_path):
    model_dir, _ = vector_model
    root = f"{gcs_root}/registry"
    version = read_metadata(model_dir)["model_version"]
    upload_tree(model_dir, Registry(root).version_dir(version))
    assert emulator_honours_preconditions(gcs_root), "the emulator does not implement generation preconditions"
    expected = Registry(root).state()
    barrier, results = threading.Barrier(6), []

    def promote(i: int) -> None:
        registry = Registry(root)
        barrier.wait()
        try:
            registry.promote(version, f"promote {i}", expected=expected)
            results.append("won")
        except PromotionConflict:
            results.append("lost")

    threads = [threading.Thread(target=promote, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["lost"] * 5 + ["won"]
    assert Registry(root).state().generation == 1
