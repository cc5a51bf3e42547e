"""The `ae-tf` command end to end, as scripts outside the project call it."""

import json
import os
import pathlib
import subprocess
import sys

import pyarrow.parquet as pq
from conftest import write_vector_dataset

BIN = pathlib.Path(sys.executable).parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def ae_tf(*args, check=True):
    return subprocess.run([str(BIN / "ae-tf"), *args], capture_output=True, text=True, env=ENV, check=check)


def test_train_then_encode_from_the_command_line(tmp_path):
    write_vector_dataset(tmp_path / "data", rows=600, files=2)
    trained = ae_tf("train", "--input", f"{tmp_path}/data/*.parquet", "--features", "vec", "--code-size", "3",
                    "--output", str(tmp_path / "model"), "--epochs", "2", "--batch-size", "64", "--seed", "3")
    assert "anomaly    threshold" in trained.stdout
    assert json.loads((tmp_path / "model" / "assets" / "ae_tf_metadata.json").read_text())["config"]["seed"] == 3
    encoded = ae_tf("encode", "--model", str(tmp_path / "model"), "--input", f"{tmp_path}/data/*.parquet",
                    "--output", str(tmp_path / "out"), "--keep-columns", "id")
    assert "rows       in 600  out 600" in encoded.stdout
    assert (tmp_path / "out" / "_SUCCESS").exists()
    table = pq.read_table(tmp_path / "out" / "part-00000-of-00002.parquet")
    assert table.schema.names == ["id", "embedding", "reconstruction_error"]


def test_user_errors_are_one_line_and_nonzero(tmp_path):
    write_vector_dataset(tmp_path / "data", rows=60, files=1)
    bad = ae_tf("train", "--input", f"{tmp_path}/data/*.parquet", "--features", "nope", "--code-size", "3",
                "--output", str(tmp_path / "m"), check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("ae-tf: error: ")
    assert "feature column 'nope' not found" in bad.stderr and "Traceback" not in bad.stderr
    missing = ae_tf("encode", "--model", str(tmp_path / "none"), "--input", f"{tmp_path}/data/*.parquet",
                    "--output", str(tmp_path / "out"), check=False)
    assert missing.returncode == 2 and "model directory not found" in missing.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m").exists()


def test_help_lists_commands_and_pipeline_module_runs():
    assert "train" in ae_tf("--help").stdout and "encode" in ae_tf("--help").stdout
    assert "--keep-columns" in ae_tf("encode", "--help").stdout
    out = subprocess.run([sys.executable, "-m", "pipelines.encode", "--help"], capture_output=True, text=True,
                         env=ENV, check=True)
    assert "--runner DataflowRunner" in out.stdout
