"""`ae-tf refresh`: an embeddings store that encodes only what is new and switches CURRENT atomically."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from conftest import low_rank_rows, train_tiny

import ae_tf
from ae_tf.embeddings import embedding_array
from ae_tf.registry.registry import Registry
from pipelines import refresh as refresh_pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]


def write_file(path, first_id: int, rows: int, seed: int) -> str:
    """One input Parquet file: id (unique across files), vec (12 floats from the shared subspace)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = pa.table({"id": np.arange(first_id, first_id + rows, dtype=np.int64),
                      "vec": embedding_array(low_rank_rows(rows, seed=seed))})
    pq.write_table(table, path, row_group_size=100)
    return str(path)


def refresh(model, data, store, *extra) -> dict:
    return refresh_pipeline.run(["--model", str(model), "--input", f"{data}/*.parquet", "--store", str(store),
                                 "--progress-interval", "0", *extra])


def current(store) -> dict:
    return json.loads((pathlib.Path(store) / "CURRENT").read_text())


def cli(*args, env=None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ae_tf_cli", *map(str, args)], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_refresh_encodes_only_new_files_and_drops_deleted_ones(tmp_path, vector_model, capsys):
    model, _ = vector_model
    data, store = tmp_path / "data", tmp_path / "store"
    for i in range(3):
        write_file(data / f"day-{i}.parquet", 1000 * i, 200, seed=i)

    first = refresh(model, data, store)
    assert first["run"]["rows_encoded"] == 600 and len(first["run"]["files_encoded"]) == 3
    pointer = current(store)
    assert pointer["rows"] == 600 and pointer["model_version"] == first["model_version"]
    ids, matrix = ae_tf.read_embeddings(str(store))
    assert sorted(ids) == sorted([*range(0, 200), *range(1000, 1200), *range(2000, 2200)])
    assert matrix.shape == (600, 3) and matrix.dtype == np.float32
    entry = first["files"][0]
    assert {"path", "size", "rows", "fingerprint", "mtime_ns", "shards"} <= set(entry) and entry["rows"] == 200

    second = refresh(model, data, store)
    assert second["run"]["rows_encoded"] == 0
    assert current(store)["generation"] == pointer["generation"]  # nothing changed, nothing swapped

    write_file(data / "day-3.parquet", 3000, 150, seed=3)
    os.utime(data / "day-0.parquet")  # touched, same bytes: same fingerprint, not encoded again
    third = refresh(model, data, store)
    assert third["run"]["rows_encoded"] == 150 and third["run"]["files_encoded"] == [str(data / "day-3.parquet")]
    assert third["run"]["files_reused"] == 3
    ids3, matrix3 = ae_tf.read_embeddings(str(store))
    assert len(ids3) == 750
    old = dict(zip(ids.tolist(), matrix, strict=True))
    np.testing.assert_array_equal(np.stack([old[i] for i in ids3 if i < 3000]), matrix3[ids3 < 3000])

    os.remove(data / "day-1.parquet")
    write_file(data / "day-2.parquet", 2000, 120, seed=22)  # rewritten with other rows: encoded again
    fourth = refresh(model, data, store)
    assert fourth["run"]["rows_encoded"] == 120
    assert sorted(fourth["run"]["files_dropped"]) == sorted([str(data / "day-1.parquet"), str(data / "day-2.parquet")])
    ids4, _ = ae_tf.read_embeddings(str(store))
    assert sorted(ids4) == sorted([*range(0, 200), *range(2000, 2120), *range(3000, 3150)])
    # The version folder itself is a plain, complete encode output: exactly the current shards and _SUCCESS.
    folder = store / "versions" / fourth["folder"]
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == sorted(s["file"] for s in fourth["shards"])
    assert ds.dataset(str(folder), format="parquet").count_rows() == 470
    assert json.loads((folder / "_SUCCESS").read_text())["rows_out"] == 470
    assert not (folder / "_temporary").exists()

    # A file that is not Parquet: one line naming it, non-zero, CURRENT untouched.
    before = current(store)
    (data / "day-9.parquet").write_bytes(b"not parquet at all")
    from ae_tf_cli import main

    assert main(["refresh", "--model", str(model), "--input", f"{data}/*.parquet", "--store", str(store)]) == 2
    err = capsys.readouterr().err.strip()
    assert current(store) == before and err.count("\n") == 0 and "day-9.parquet: not a Parquet file" in err


@pytest.mark.slow
def test_new_champion_reencodes_everything_and_a_kill_leaves_current(tmp_path, vector_data, vector_model):
    data, store, registry = tmp_path / "data", tmp_path / "store", Registry(str(tmp_path / "registry"))
    for i in range(4):
        write_file(data / f"day-{i}.parquet", 1000 * i, 300, seed=i)
    shutil.copytree(vector_model[0], tmp_path / "a")
    registry.promote(registry.add_version(str(tmp_path / "a")), "first")
    first = refresh(registry.root, data, store)
    assert first["run"]["rows_encoded"] == 1200
    before = current(store)
    ids_a, matrix_a = ae_tf.read_embeddings(str(store))

    train_tiny(f"{vector_data}/*.parquet", "vec", str(tmp_path / "b"), epochs=1, min_steps=10, seed=7)
    champion = registry.add_version(str(tmp_path / "b"))
    registry.promote(champion, "better")

    # SIGKILL while the new champion's folder is being written: CURRENT stays on the old version.
    job = cli("refresh", "--model", registry.root, "--input", f"{data}/*.parquet", "--store", store,
              "--batch-rows", "20", "--progress-interval", "0")
    staging = store / "versions" / champion / "_temporary"
    deadline = time.monotonic() + 120
    while not any(staging.rglob("*.parquet")) and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert job.poll() is None, f"refresh ended before it could be killed: {job.communicate()[1][-1500:]}"
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert current(store) == before
    ids, matrix = ae_tf.read_embeddings(str(store))
    np.testing.assert_array_equal(matrix, matrix_a)

    rerun = refresh(registry.root, data, store)
    assert rerun["run"]["rows_encoded"] == 1200 and rerun["model_version"] == champion
    after = current(store)
    assert after["folder"] == f"versions/{champion}" and after["generation"] == before["generation"] + 1
    assert after["history"] == [champion, first["folder"]]
    ids_b, matrix_b = ae_tf.read_embeddings(str(store))
    assert sorted(ids_b) == sorted(ids_a) and not np.allclose(np.sort(matrix_b, 0), np.sort(matrix_a, 0))
    assert not (store / "versions" / champion / "_temporary").exists()

    # --keep-versions 1 prunes the old model's folder once the new one is current.
    assert refresh(registry.root, data, store, "--keep-versions", "1")["run"]["rows_encoded"] == 0
    assert sorted(p.name for p in (store / "versions").iterdir()) == [champion]


@pytest.mark.slow
def test_two_concurrent_refreshes_one_wins_the_other_stops_cleanly(tmp_path, vector_model, capsys):
    model, _ = vector_model
    data, store = tmp_path / "data", tmp_path / "store"
    for i in range(3):
        write_file(data / f"day-{i}.parquet", 1000 * i, 300, seed=i)
    winner = cli("refresh", "--model", model, "--input", f"{data}/*.parquet", "--store", store,
                 "--batch-rows", "20", "--progress-interval", "0")
    deadline = time.monotonic() + 120
    while not any((store / "versions").rglob("_temporary")) and winner.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert winner.poll() is None, winner.communicate()[1][-1500:]

    from ae_tf_cli import main

    assert main(["refresh", "--model", model, "--input", f"{data}/*.parquet", "--store", str(store)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "another refresh is running" in message and str(store) in message

    out, err = winner.communicate(timeout=180)
    assert winner.returncode == 0, err[-2000:]
    assert "encoded    900 rows" in out
    assert current(store)["rows"] == 900


def test_refresh_int8_store_feeds_reduce_and_dedup(tmp_path, vector_model):
    """int8 codes: scale and offset in the file metadata and the manifest; reduce and dedup read ROOT."""
    from ae_tf.vectors.codes import CODEC_KEY, Codec

    model, _ = vector_model
    data, store = tmp_path / "data", tmp_path / "store"
    for i in range(2):
        write_file(data / f"day-{i}.parquet", 1000 * i, 250, seed=i)
    manifest = refresh(model, data, store, "--embedding-dtype", "int8")
    codec = Codec.from_dict(manifest["embedding_codec"])
    assert codec.dtype == "int8" and len(codec.scale) == 3
    shard = store / current(store)["files"][0]
    schema = pq.read_schema(shard)
    assert schema.field("embedding").type == pa.list_(pa.int8(), 3)
    assert Codec.from_dict(json.loads(schema.metadata[CODEC_KEY])) == codec
    assert current(store)["folder"].endswith("-int8")

    float_store = tmp_path / "float-store"
    refresh(model, data, float_store)
    ids, exact = ae_tf.read_embeddings(str(float_store))
    ids8, approx = ae_tf.read_embeddings(str(store))
    order = np.argsort(ids8)[np.searchsorted(np.sort(ids8), ids)]
    inside = ((exact >= codec.lo) & (exact <= codec.hi)).all(axis=1)
    assert inside.mean() > 0.99
    assert (np.abs(approx[order] - exact)[inside] <= np.asarray(codec.scale) / 2 + 1e-6).all()

    from pipelines import dedup, reduce

    reduced = reduce.run(["--input", str(store), "--output", str(tmp_path / "reduced"), "--components", "2",
                          "--progress-interval", "0"])
    assert reduced["rows_in"] == reduced["rows_out"] == 500
    assert ds.dataset(str(tmp_path / "reduced"), format="parquet").count_rows() == 500
    found = {}
    for name, source in (("int8", store), ("float32", float_store)):
        found[name] = dedup.run(["--input", str(source), "--output", str(tmp_path / f"dedup-{name}"),
                                 "--progress-interval", "0"])
    assert found["int8"]["inputs"] == [str(store / f) for f in current(store)["files"]]
    assert 0 < found["int8"]["rows_kept"] <= 500 and 0 < found["float32"]["rows_kept"] <= 500


def test_refresh_on_gcs_through_the_emulator(gcs_root, tmp_path, vector_model):
    from gcs_emulator import upload_tree

    from ae_tf import storage

    model, _ = vector_model
    local = tmp_path / "data"
    for i in range(2):
        write_file(local / f"day-{i}.parquet", 1000 * i, 200, seed=i)
    upload_tree(str(local), f"{gcs_root}/data")
    store = f"{gcs_root}/store"
    args = ["--model", model, "--input", f"{gcs_root}/data/*.parquet", "--store", store, "--progress-interval", "0"]
    assert refresh_pipeline.run(args)["run"]["rows_encoded"] == 400
    storage.copy_file(write_file(tmp_path / "more" / "day-2.parquet", 2000, 50, seed=2), f"{gcs_root}/data/day-2.parquet")
    again = refresh_pipeline.run(args)
    assert again["run"]["rows_encoded"] == 50 and again["run"]["files_reused"] == 2
    pointer = json.loads(storage.read_text(f"{store}/CURRENT"))
    assert pointer["rows"] == 450 and len(pointer["files"]) == 3
    ids, matrix = ae_tf.read_embeddings(store)
    assert sorted(ids) == sorted([*range(0, 200), *range(1000, 1200), *range(2000, 2050)])
    assert not storage.isfile(f"{store}/_refresh.lock")
