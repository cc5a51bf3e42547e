"""Training on streamed Parquet and the model directory contract."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROWS, SCALAR_FEATURES, WIDTH, low_rank_rows, train_tiny, write_vector_dataset

from ae_tf.inputs.data import TRAIN, VALIDATION, ParquetSource, match_files
from ae_tf.inputs.features import FeatureSpec
from ae_tf.model.export import ModelDirError, load_model_dir, read_history, read_metadata


def test_source_streams_batches_and_splits_deterministically(vector_data):
    files = match_files(f"{vector_data}/*.parquet")
    source = ParquetSource(files, FeatureSpec("vector", ("vec",), WIDTH), validation_fraction=0.2, read_rows=100)
    chunks = list(source.iter_arrays())
    assert max(len(c) for c in chunks) <= 100  # never the whole dataset at once
    assert sum(len(c) for c in chunks) == ROWS == source.num_rows
    train_rows = np.concatenate(list(source.iter_arrays(TRAIN)))
    val_rows = np.concatenate(list(source.iter_arrays(VALIDATION)))
    assert len(train_rows) + len(val_rows) == ROWS
    assert 0.1 < len(val_rows) / ROWS < 0.3
    np.testing.assert_array_equal(val_rows, np.concatenate(list(source.iter_arrays(VALIDATION))))
    stats = source.statistics(TRAIN)
    np.testing.assert_allclose(stats.mean, train_rows.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(stats.std, train_rows.std(axis=0), rtol=1e-4)


def test_model_learns_and_metadata_is_complete(vector_model):
    model_dir, result = vector_model
    meta = read_metadata(model_dir)
    history = read_history(model_dir)
    assert history["loss"][-1] < history["loss"][0]
    assert meta["family"] == "dense" and meta["code_size"] == 3
    assert meta["feature_spec"] == {"kind": "vector", "columns": ["vec"], "width": WIDTH}
    assert meta["training"]["validation_loss"] < 0.5  # standardised units: far better than the mean
    assert meta["anomaly_threshold"]["quantile"] == 0.99 and meta["anomaly_threshold"]["value"] > 0
    assert meta["data"]["rows"] == ROWS and len(meta["data"]["fingerprint"]) == 16
    assert {"tensorflow", "keras", "ae_tf", "python"} <= set(meta["versions"])
    assert meta["created_at"] and meta["model_version"]
    assert os.path.exists(f"{model_dir}.run/config.json")


def test_exported_model_matches_in_memory_model(vector_model):
    model_dir, result = vector_model
    x = low_rank_rows(50, seed=7)
    loaded = load_model_dir(model_dir)
    out = loaded.signature("encode")(features=x)
    np.testing.assert_allclose(out["embedding"].numpy(), np.asarray(result.model.encode(x)), rtol=1e-5, atol=1e-5)
    score = loaded.signature("score")(features=x)["reconstruction_error"].numpy()
    np.testing.assert_allclose(score, np.asarray(result.model.score(x)), rtol=1e-5, atol=1e-6)
    assert score.shape == (50,)
    rebuilt = loaded.signature("decode")(embedding=out["embedding"])["reconstruction"].numpy()
    assert rebuilt.shape == (50, WIDTH)
    # decode returns raw scale: the rebuilt rows are close to the input, far closer than the column means
    assert np.mean((rebuilt - x) ** 2) < 0.25 * np.mean((x - x.mean(axis=0)) ** 2)


PLAIN_LOAD = """
import json, sys
import numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
x = np.ones((4, int(sys.argv[2])), np.float32)
out = {k: m.signatures[k](features=tf.constant(x)) for k in ("encode", "score", "serving_default")}
dec = m.signatures["decode"](embedding=out["encode"]["embedding"])
assert not [n for n in sys.modules if n.startswith(("ae_tf", "pipelines"))]
print(json.dumps({"signatures": sorted(m.signatures.keys()), "embedding": out["encode"]["embedding"].shape.as_list(),
                  "error": out["score"]["reconstruction_error"].shape.as_list(),
                  "reconstruction": dec["reconstruction"].shape.as_list()}))
"""


def test_plain_tensorflow_loads_it_without_project_code(vector_model, tmp_path):
    model_dir, _ = vector_model
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", PLAIN_LOAD, model_dir, str(WIDTH)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"encode", "decode", "score", "serving_default"} <= set(result["signatures"])
    assert result["embedding"] == [4, 3] and result["error"] == [4] and result["reconstruction"] == [4, WIDTH]


def test_saved_model_cli_lists_signatures(vector_model):
    model_dir, _ = vector_model
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run([cli, "show", "--all", "--dir", model_dir], capture_output=True, text=True, check=True)
    for name in ("encode", "decode", "score", "serving_default"):
        assert f"signature_def['{name}']" in out.stdout
    assert "reconstruction_error" in out.stdout


def test_scalar_columns_train_with_per_column_normalisation(scalar_model):
    model_dir, result = scalar_model
    meta = read_metadata(model_dir)
    assert meta["feature_spec"]["kind"] == "scalars"
    assert meta["feature_spec"]["columns"] == SCALAR_FEATURES.split(",")
    assert meta["normalization"]["mode"] == "feature"
    assert len(set(np.round(meta["normalization"]["scale"], 3))) > 1


def test_same_seed_same_model(tmp_path):
    write_vector_dataset(tmp_path / "d", rows=300, files=1)
    a = train_tiny(f"{tmp_path}/d/*.parquet", "vec", str(tmp_path / "a"), epochs=2, min_steps=0)
    b = train_tiny(f"{tmp_path}/d/*.parquet", "vec", str(tmp_path / "b"), epochs=2, min_steps=0)
    assert a.metadata["model_version"].split("-")[1] == b.metadata["model_version"].split("-")[1]


def test_refuses_to_overwrite_a_model_and_rejects_bad_data(vector_model, tmp_path):
    model_dir, _ = vector_model
    with pytest.raises(FileExistsError, match="already exists"):
        train_tiny(f"{tmp_path}/*.parquet", "vec", model_dir)
    pq.write_table(pa.table({"a": [1.0, float("nan")], "b": [1.0, 2.0]}), tmp_path / "nan.parquet")
    with pytest.raises(ValueError, match="column 'a' row 1 is nan"):
        train_tiny(f"{tmp_path}/nan.parquet", "a,b", str(tmp_path / "m"))


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelDirError, match="model directory not found"):
        read_metadata(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelDirError, match="not a SavedModel"):
        read_metadata(str(tmp_path / "empty"))


def test_tensorboard_logs_go_to_the_run_directory(tmp_path):
    write_vector_dataset(tmp_path / "d", rows=200, files=1)
    train_tiny(f"{tmp_path}/d/*.parquet", "vec", str(tmp_path / "m"), epochs=1, tensorboard=True,
               min_steps=0)
    events = [os.path.join(root, f) for root, _, files in os.walk(tmp_path / "m.run" / "tensorboard")
              for f in files if f.startswith("events.out.tfevents")]
    assert events and all(os.path.getsize(e) > 0 for e in events)
