"""TensorFlow Datasets by name, with `tfds.testing.mock_data` (nothing downloads): training from a TFDS
split, `ae-tf tfds-to-parquet`, and the Beam pipeline encoding that Parquet with the TFDS-trained model."""

import socket

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import read_output

from ae_tf.embeddings import embedding_matrix
from ae_tf.inputs.data import TRAIN, VALIDATION
from ae_tf.inputs.features import IMAGE
from ae_tf.inputs.images import ImageRequest
from ae_tf.inputs.tfds_source import TfdsSource, parse_tfds_name
from ae_tf.model.export import read_metadata
from ae_tf_cli import main as cli_main
from pipelines import encode

MOCK_ROWS = 96


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network disabled in test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def test_names_and_splits():
    assert parse_tfds_name("mnist") == ("mnist", "train")
    assert parse_tfds_name("fashion_mnist:test") == ("fashion_mnist", "test")
    assert parse_tfds_name("mnist:3.0.1") == ("mnist:3.0.1", "train")
    assert parse_tfds_name("mnist:3.*.*:test[:50%]") == ("mnist:3.*.*", "test[:50%]")


def test_source_reads_encoded_images_and_splits_rows_deterministically(tmp_path, no_network):
    with tfds.testing.mock_data(num_examples=MOCK_ROWS):
        source = TfdsSource.open("mnist", str(tmp_path / "tfds"), (), ImageRequest((16, 16)), 0.25, seed=3)
        assert source.spec.kind == IMAGE and source.spec.columns == ("image",)
        assert (source.spec.image.height, source.spec.image.channels) == (16, 1)
        assert source.num_rows == MOCK_ROWS and source.inputs == ["tfds:mnist/3.0.1:train"]
        train_rows, val_rows = source.count_rows(TRAIN), source.count_rows(VALIDATION)
        assert train_rows + val_rows == MOCK_ROWS and 8 < val_rows < 40
        assert source.count_rows(VALIDATION) == val_rows  # the same rows every time
        stored = next(source.iter_arrays(TRAIN))
        assert stored.dtype == object and stored[0][:4] == b"\x89PNG"  # still encoded, as Parquet will hold it
        batch = next(iter(source.dataset(TRAIN, 8)))
        assert batch.shape == (8, 16, 16, 1) and batch.dtype == tf.float32
    assert no_network == []


def test_train_from_tfds_then_encode_its_parquet_export(tmp_path, capsys, no_network):
    model_dir, parquet_dir = str(tmp_path / "model"), str(tmp_path / "parquet")
    data_dir = str(tmp_path / "tfds")
    with tfds.testing.mock_data(num_examples=MOCK_ROWS):
        assert cli_main(["train", "--tfds", "mnist", "--tfds-data-dir", data_dir, "--model", "conv",
                         "--code-size", "4", "--output", model_dir, "--image-size", "16", "--filters", "8,16",
                         "--epochs", "1", "--batch-size", "32"]) == 0
        assert cli_main(["tfds-to-parquet", "mnist", parquet_dir, "--data-dir", data_dir,
                         "--rows-per-file", "40"]) == 0
    printed = capsys.readouterr().out
    assert "family     conv" in printed and f"{MOCK_ROWS:,} rows" in printed
    meta = read_metadata(model_dir)
    assert meta["data"]["inputs"] == ["tfds:mnist/3.0.1:train"] and meta["data"]["rows"] == MOCK_ROWS
    assert meta["feature_spec"]["image"] == {"height": 16, "width": 16, "channels": 1, "encoding": "bytes"}

    files = sorted(p.name for p in (tmp_path / "parquet").iterdir())
    assert files == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    table = pq.read_table(parquet_dir)
    assert table.column_names == ["id", "image", "label"] and table.num_rows == MOCK_ROWS
    assert table.column("id").to_pylist() == list(range(MOCK_ROWS))

    manifest = encode.run(["--model", model_dir, "--input", parquet_dir, "--output", str(tmp_path / "emb")])
    assert manifest["rows_out"] == MOCK_ROWS
    out = read_output(str(tmp_path / "emb")).sort_by("id")
    assert out.column_names == ["id", "label", "embedding", "reconstruction_error"]
    model = tf.saved_model.load(model_dir)
    images = tf.constant(table.column("image").to_numpy(zero_copy_only=False))
    expected = model.signatures["encode"](features=images)["embedding"].numpy()
    np.testing.assert_allclose(embedding_matrix(out.column("embedding")), expected, rtol=1e-4, atol=1e-5)
    assert no_network == []


def test_unknown_dataset_and_missing_input_are_one_line_errors(tmp_path, capsys):
    assert cli_main(["train", "--tfds", "no_such_dataset_xyz", "--code-size", "2", "--output",
                     str(tmp_path / "m")]) == 2
    assert "--tfds no_such_dataset_xyz" in capsys.readouterr().err
    assert cli_main(["train", "--features", "x", "--code-size", "2", "--output", str(tmp_path / "m")]) == 2
    assert "exactly one training input" in capsys.readouterr().err
