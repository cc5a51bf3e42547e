"""Bad input gets a clear answer, nothing is lost, reruns are safe (encode and training)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROWS, WIDTH, low_rank_rows, read_output, train_tiny, write_vector_dataset

from ae_tf.embeddings import embedding_array
from ae_tf.inputs.features import FeatureError
from ae_tf.model.export import ModelDirError
from pipelines import encode
from pipelines.io.parquet import MANIFEST, InputError, read_manifest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_encode(model_dir, input_glob, out_dir, *extra):
    return encode.run(["--model", model_dir, "--input", str(input_glob), "--output", str(out_dir), *extra])


def vector_rows(n, seed=3, start=0):
    x = low_rank_rows(n, seed=seed)
    return {"id": np.arange(start, start + n, dtype=np.int64), "name": [f"r{i}" for i in range(start, start + n)],
            "vec": x}


def write_rows(path, vec: pa.Array, n, start=0):
    table = pa.table({"id": pa.array(np.arange(start, start + n), pa.int64()),
                      "name": [f"r{i}" for i in range(start, start + n)], "vec": vec})
    pq.write_table(table, path)
    return table


def assert_conserved(manifest, out_dir):
    """rows in = rows written + rows rejected, and every id appears exactly once across both."""
    table = read_output(str(out_dir))
    rejected_dir = os.path.join(out_dir, "_rejected")
    rejected = read_output(rejected_dir) if os.path.isdir(rejected_dir) else None
    n_rejected = rejected.num_rows if rejected is not None else 0
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_rejected"]
    assert table.num_rows == manifest["rows_out"] and n_rejected == manifest["rows_rejected"]
    ids = table.column("id").to_pylist() + (rejected.column("id").to_pylist() if rejected is not None else [])
    assert len(ids) == len(set(ids)) == manifest["rows_in"]
    return table, rejected


# ---------------------------------------------------------------- rows that cannot be encoded

def test_bad_rows_go_to_dead_letter_parquet_with_reason_and_source(vector_model, tmp_path):
    model_dir, _ = vector_model
    good = low_rank_rows(200, seed=5)
    values = [list(map(float, row)) for row in good]
    values[3] = None                                   # null feature
    values[10] = values[10][:5]                        # wrong length
    values[20][2] = float("nan")                       # NaN
    values[30][0] = float("inf")                       # infinite
    values[40][1] = None                               # null inside the vector
    (tmp_path / "in").mkdir()
    write_rows(tmp_path / "in" / "a.parquet", pa.array(values, pa.list_(pa.float64())), 200)
    manifest = run_encode(model_dir, tmp_path / "in", tmp_path / "out", "--max-rejected-fraction", "0.05")
    table, rejected = assert_conserved(manifest, tmp_path / "out")
    assert manifest["rows_rejected"] == 5 and manifest["rows_out"] == 195
    by_id = {r["id"]: r for r in rejected.to_pylist()}
    assert set(by_id) == {3, 10, 20, 30, 40}
    assert by_id[3]["reason"] == "null 'vec'"
    assert by_id[10]["reason"] == f"'vec' has 5 numbers, expected {WIDTH}"
    assert "NaN" in by_id[20]["reason"] and "infinite" in by_id[30]["reason"] and "null" in by_id[40]["reason"]
    assert by_id[10]["source_file"].endswith("a.parquet") and by_id[10]["source_row"] == 10
    assert by_id[10]["name"] == "r10"  # kept columns travel with the rejected row
    assert manifest["rejected_shards"] == ["_rejected/part-00000-of-00001.parquet"]
    # the good rows are encoded exactly as if the bad ones had never been there
    clean = run_encode(model_dir, tmp_path / "in", tmp_path / "out2", "--max-rejected-fraction", "0.05")
    assert clean["rows_out"] == 195


def test_scalar_rows_with_text_nulls_and_nan_are_rejected(scalar_model, tmp_path):
    model_dir, _ = scalar_model
    x = low_rank_rows(50, seed=2)
    columns = {"id": np.arange(50)}
    for j in range(WIDTH):
        columns[f"f{j}"] = x[:, j].astype(np.float64)
    table = pa.table(columns)
    f0 = [str(v) for v in x[:, 0]]
    f0[7] = "not a number"
    f1 = table.column("f1").to_pylist()
    f1[8] = None
    f2 = table.column("f2").to_pylist()
    f2[9] = float("nan")
    table = table.set_column(0 + 1, "f0", pa.array(f0)).set_column(2, "f1", pa.array(f1)).set_column(
        3, "f2", pa.array(f2))
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "s.parquet")
    manifest = run_encode(model_dir, tmp_path / "in", tmp_path / "out", "--max-rejected-fraction", "0.1")
    _, rejected = assert_conserved(manifest, tmp_path / "out")
    reasons = dict(zip(rejected.column("id").to_pylist(), rejected.column("reason").to_pylist(), strict=True))
    assert reasons == {7: "non-numeric value in 'f0'", 8: "null 'f1'", 9: "NaN or infinite value in 'f2'"}


def test_too_many_rejected_rows_fails_and_publishes_nothing_but_the_reasons(vector_model, tmp_path):
    model_dir, _ = vector_model
    values = [[float("nan")] * WIDTH] * 30 + [list(map(float, r)) for r in low_rank_rows(70, seed=1)]
    (tmp_path / "in").mkdir()
    write_rows(tmp_path / "in" / "a.parquet", pa.array(values, pa.list_(pa.float32())), 100)
    with pytest.raises(encode.TooManyRejectedRows, match=r"30 of 100 rows rejected \(30.0%\)"):
        run_encode(model_dir, tmp_path / "in", tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["_rejected"]
    assert pq.read_table(tmp_path / "out" / "_rejected").num_rows == 30


def test_model_failures_become_rejected_rows():
    plan = type("Plan", (), {"source_of": lambda self, i: "f.parquet",
                             "rejected_schema": pa.schema([("id", pa.int64()), ("reason", pa.string()),
                                                           ("source_file", pa.string()), ("source_row", pa.int64())])})()
    batch = pa.record_batch({"id": [1, 2]})
    index, rows = encode.rejected_by_model(0, 5, batch, ValueError("cannot decode image\nmore"), plan)
    assert index == 0
    assert rows.to_pylist() == [
        {"id": 1, "reason": "model error: cannot decode image", "source_file": "f.parquet", "source_row": 5},
        {"id": 2, "reason": "model error: cannot decode image", "source_file": "f.parquet", "source_row": 6}]


# ---------------------------------------------------------------- checks before any work starts

def _bad_input(case, tmp_path, vector_data):
    """Build one malformed input; returns the glob to encode."""
    d = tmp_path / "in"
    d.mkdir()
    good = pq.read_table(f"{vector_data}/part-0.parquet")
    if case == "missing feature column":
        pq.write_table(good.drop(["vec"]), d / "a.parquet")
    elif case == "wrong type":
        pq.write_table(good.set_column(2, "vec", pa.array(["x"] * good.num_rows)), d / "a.parquet")
    elif case == "wrong fixed width":
        pq.write_table(good.set_column(2, "vec", embedding_array(np.zeros((good.num_rows, 5)))), d / "a.parquet")
    elif case == "empty file":
        pq.write_table(good, d / "a.parquet")
        (d / "b.parquet").write_bytes(b"")
    elif case == "truncated file":
        pq.write_table(good, d / "a.parquet")
        data = (d / "a.parquet").read_bytes()
        (d / "b.parquet").write_bytes(data[: len(data) // 2])
    elif case == "not parquet":
        pq.write_table(good, d / "a.parquet")
        (d / "b.parquet").write_text("id,vec\n1,2\n")
    elif case == "schemas differ":
        pq.write_table(good, d / "a.parquet")
        pq.write_table(good.set_column(0, "id", good.column("id").cast(pa.string())), d / "b.parquet")
    return str(d / "*.parquet")


@pytest.mark.parametrize("case, message", [
    ("missing feature column", "a.parquet: feature column 'vec' not found"),
    ("wrong type", "a.parquet: column 'vec' is string, the model expects a list of 12 numbers"),
    ("wrong fixed width", "a.parquet: column 'vec' holds 5 numbers per row, the model expects 12"),
    ("empty file", "b.parquet: not a readable Parquet file"),
    ("truncated file", "b.parquet: not a readable Parquet file"),
    ("not parquet", "b.parquet: not a readable Parquet file"),
    ("schemas differ", "b.parquet: column 'id' is string here but int64 in"),
])
def test_malformed_inputs_stop_with_one_line_naming_the_file(case, message, vector_model, vector_data, tmp_path):
    pattern = _bad_input(case, tmp_path, vector_data)
    with pytest.raises((InputError, FeatureError)) as info:
        run_encode(vector_model[0], pattern, tmp_path / "out")
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["empty file", "truncated file", "not parquet", "schemas differ"])
def test_skip_bad_files_leaves_them_out_and_lists_them(case, vector_model, vector_data, tmp_path):
    pattern = _bad_input(case, tmp_path, vector_data)
    manifest = run_encode(vector_model[0], pattern, tmp_path / "out", "--skip-bad-files")
    assert [os.path.basename(s["file"]) for s in manifest["skipped_files"]] == ["b.parquet"]
    assert manifest["rows_out"] == 400 and manifest["inputs"][0].endswith("a.parquet")
    assert_conserved(manifest, tmp_path / "out")


def test_model_problems_are_named(vector_model, scalar_model, vector_data, tmp_path):
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelDirError, match="not an ae-tf model|cannot be parsed"):
        run_encode(str(tmp_path / "notamodel"), f"{vector_data}/*.parquet", tmp_path / "o1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="not a SavedModel"):
        run_encode(str(tmp_path / "empty"), f"{vector_data}/*.parquet", tmp_path / "o2")
    with pytest.raises(FeatureError, match="part-0.parquet: feature column 'f0' not found"):
        run_encode(scalar_model[0], f"{vector_data}/*.parquet", tmp_path / "o3")  # trained on other features


def test_output_directory_must_be_empty_unless_overwrite(vector_model, vector_data, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(InputError, match="output directory is not empty"):
        run_encode(vector_model[0], f"{vector_data}/*.parquet", tmp_path / "out")
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_cli_reports_a_failed_run_in_one_line(vector_model, tmp_path):
    values = [[float("nan")] * WIDTH] * 10
    (tmp_path / "in").mkdir()
    write_rows(tmp_path / "in" / "a.parquet", pa.array(values, pa.list_(pa.float32())), 10)
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ae-tf"), "encode", "--model",
                           vector_model[0], "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("ae-tf: error: ")
    assert "10 of 10 rows rejected" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- killed runs and reruns

KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from pipelines import encode
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(encode, sys.argv[1], die)
    encode.run(sys.argv[2:])
""")


@pytest.mark.parametrize("kill_at, rerun_flags", [("publish", []), ("write_manifest", ["--overwrite"])])
def test_killed_run_leaves_no_success_and_rerun_is_exact(kill_at, rerun_flags, vector_model, vector_data,
                                                         tmp_path):
    out = tmp_path / "out"
    args = ["--model", vector_model[0], "--input", f"{vector_data}/*.parquet", "--output", str(out)]
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, kill_at, *args], env=ENV, capture_output=True)
    assert proc.returncode == -9
    assert not (out / MANIFEST).exists()
    if kill_at == "publish":  # killed after the shards were written, before any was published
        assert os.listdir(out) == ["_temporary"]
    else:                      # killed after publishing, before the manifest
        assert len([p for p in os.listdir(out) if p.startswith("part-")]) == 3
    manifest = encode.run(args + rerun_flags)
    table, _ = assert_conserved(manifest, out)
    assert table.num_rows == ROWS and sorted(table.column("id").to_pylist()) == list(range(ROWS))
    assert sorted(os.listdir(out)) == sorted([MANIFEST] + [s["file"] for s in manifest["shards"]])
    assert read_manifest(str(out)) == manifest


# ---------------------------------------------------------------- training

def test_nan_loss_stops_training_with_a_clear_message(tmp_path):
    write_vector_dataset(tmp_path / "d", rows=300, files=1)
    with pytest.raises(FloatingPointError, match="training loss became nan.*lower --learning-rate"):
        train_tiny(f"{tmp_path}/d/*.parquet", "vec", str(tmp_path / "m"), learning_rate=1e30, epochs=3)
    assert not (tmp_path / "m").exists()  # nothing exported


RESUME_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import keras
    sys.path.insert(0, sys.argv[1])
    from conftest import train_tiny
    class KillAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGKILL)
    from ae_tf.model.train import make_train_config, train
    config = make_train_config(sys.argv[2], "vec", sys.argv[3], code_size=3, epochs=4, batch_size=64,
                               hidden="16", patience=10)
    train(config, callbacks=[KillAfterSecondEpoch()])
""")


def test_killed_training_resumes_from_its_last_epoch(tmp_path):
    write_vector_dataset(tmp_path / "d", rows=300, files=1)
    model = tmp_path / "m"
    tests_dir = os.path.dirname(__file__)
    proc = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, tests_dir, f"{tmp_path}/d/*.parquet", str(model)],
                          env=ENV, capture_output=True)
    assert proc.returncode == -9
    assert not model.exists()  # a killed run never leaves a model directory
    with open(f"{model}.run/history.jsonl") as f:
        log_before = [json.loads(line) for line in f]
    assert [r["epoch"] for r in log_before] == [1, 2]

    from ae_tf.model.train import make_train_config, train

    result = train(make_train_config(f"{tmp_path}/d/*.parquet", "vec", str(model), code_size=3, epochs=4,
                                     batch_size=64, hidden="16", patience=10, resume=True))
    assert len(result.history["loss"]) == 4  # 2 epochs before the kill + 2 after, one curve
    assert result.history["loss"][0] == pytest.approx(log_before[0]["loss"])
    assert result.history["loss"][3] < result.history["loss"][0]
    assert result.metadata["training"]["epochs_run"] == 4
