"""The Beam encode pipeline on the in-process runner: contract, correctness, reruns, RunInference."""

import os
import socket

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.ml.inference.base import RunInference
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import ROWS, SCALAR_FEATURES, WIDTH, read_output

from ae_tf.contracts import EncodeManifest
from ae_tf.embeddings import MODEL_VERSION_KEY, embedding_matrix
from ae_tf.model.export import read_metadata
from pipelines import encode
from pipelines.io.parquet import MANIFEST, InputError, read_manifest
from pipelines.parts.inference import AutoencoderModelHandler


def encode_args(model_dir, input_glob, out_dir, *extra):
    return ["--model", model_dir, "--input", input_glob, "--output", str(out_dir), *extra]


def in_memory_encoding(result, matrix):
    return np.asarray(result.model.encode(matrix)), np.asarray(result.model.score(matrix))


def test_vector_output_matches_in_memory_model_and_contract(vector_model, vector_data, tmp_path):
    model_dir, result = vector_model
    manifest = encode.run(encode_args(model_dir, f"{vector_data}/*.parquet", tmp_path / "out",
                                      "--batch-rows", "100"))
    out = read_output(str(tmp_path / "out"))
    # every id exactly once
    ids = out.column("id").to_numpy()
    assert len(ids) == ROWS and len(np.unique(ids)) == ROWS
    # schema contract: kept columns unchanged, fixed-size float32 embedding, float32 error
    assert out.schema.field("id").type == pa.int64() and out.schema.field("name").type == pa.string()
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), 3)
    assert out.schema.field("reconstruction_error").type == pa.float32()
    assert "vec" not in out.schema.names
    version = read_metadata(model_dir)["model_version"]
    first_shard = sorted(p for p in os.listdir(tmp_path / "out") if p.endswith(".parquet"))[0]
    file_meta = pq.read_schema(tmp_path / "out" / first_shard).metadata
    assert file_meta[MODEL_VERSION_KEY].decode() == version
    assert pq.ParquetFile(tmp_path / "out" / first_shard).metadata.row_group(0).column(0).compression == "ZSTD"
    # the model's float outputs are written without dictionary pages (they never repeat); kept columns keep them
    group = pq.ParquetFile(tmp_path / "out" / first_shard).metadata.row_group(0)
    encodings = {group.column(i).path_in_schema.split(".")[0]: group.column(i).encodings
                 for i in range(group.num_columns)}
    assert not any("DICTIONARY" in e for e in encodings["embedding"] + encodings["reconstruction_error"])
    assert any("DICTIONARY" in e for e in encodings["name"])
    # values equal the in-memory Keras model, row by row (joined on id)
    source = pa.concat_tables(pq.read_table(f"{vector_data}/{f}") for f in sorted(os.listdir(vector_data)))
    order = np.argsort(ids)
    expected_code, expected_error = in_memory_encoding(result, embedding_matrix(source.column("vec")))
    np.testing.assert_allclose(embedding_matrix(out.column("embedding"))[order], expected_code, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.column("reconstruction_error").to_numpy()[order], expected_error,
                               rtol=1e-4, atol=1e-6)
    # the manifest is written last and adds up
    assert manifest == read_manifest(str(tmp_path / "out"))
    assert manifest["rows_in"] == manifest["rows_out"] == ROWS and manifest["rows_rejected"] == 0
    assert manifest["model_version"] == version and len(manifest["inputs"]) == 3
    assert sum(s["rows"] for s in manifest["shards"]) == ROWS
    assert manifest["reconstruction_error"]["mean"] == pytest.approx(float(expected_error.mean()), rel=1e-4)
    assert sorted(os.listdir(tmp_path / "out")) == sorted([MANIFEST] + [s["file"] for s in manifest["shards"]])
    written = EncodeManifest.from_json((tmp_path / "out" / MANIFEST).read_text(), source="_SUCCESS")
    assert written.to_dict() == manifest and manifest["format"] == EncodeManifest.FORMAT  # ae_tf.contracts


def test_scalar_features_and_explicit_keep_columns(scalar_model, scalar_data, tmp_path):
    model_dir, result = scalar_model
    manifest = encode.run(encode_args(model_dir, scalar_data, tmp_path / "out", "--keep-columns", "id,f0",
                                      "--max-rows-per-split", "400"))
    out = read_output(str(tmp_path / "out"))
    assert out.schema.names == ["id", "f0", "embedding", "reconstruction_error"]
    assert len(manifest["shards"]) == 3  # one 1,200-row file split at row groups of 400
    source = pq.read_table(f"{scalar_data}/scalars.parquet")
    matrix = np.column_stack([source.column(c).to_numpy().astype(np.float32) for c in SCALAR_FEATURES.split(",")])
    order = np.argsort(out.column("id").to_numpy())
    np.testing.assert_array_equal(out.column("f0").to_numpy()[order], source.column("f0").to_numpy())
    np.testing.assert_allclose(embedding_matrix(out.column("embedding"))[order],
                               in_memory_encoding(result, matrix)[0], rtol=1e-4, atol=1e-5)


def test_variable_length_list_input_is_encoded(vector_model, tmp_path):
    from conftest import write_vector_dataset

    model_dir, _ = vector_model
    write_vector_dataset(tmp_path / "in", rows=90, files=1, list_type="variable")
    manifest = encode.run(encode_args(model_dir, str(tmp_path / "in"), tmp_path / "out"))
    assert manifest["rows_out"] == 90


def test_rerun_with_overwrite_replaces_everything(vector_model, vector_data, tmp_path):
    model_dir, _ = vector_model
    out = tmp_path / "out"
    encode.run(encode_args(model_dir, f"{vector_data}/*.parquet", out))
    with pytest.raises(InputError, match="not empty"):
        encode.run(encode_args(model_dir, f"{vector_data}/*.parquet", out))
    # a rerun on fewer inputs must not leave shards of the first run behind
    manifest = encode.run(encode_args(model_dir, f"{vector_data}/part-0.parquet", out, "--overwrite"))
    table = read_output(str(out))
    assert table.num_rows == manifest["rows_out"] == 400
    assert len([p for p in os.listdir(out) if p.endswith(".parquet")]) == 1
    assert not os.path.exists(out / "_temporary")


def test_bad_inputs_fail_before_any_output(vector_model, scalar_data, tmp_path):
    model_dir, _ = vector_model
    with pytest.raises(ValueError, match="feature column 'vec' not found"):
        encode.run(encode_args(model_dir, scalar_data, tmp_path / "a"))
    with pytest.raises(InputError, match="no input file matches"):
        encode.run(encode_args(model_dir, str(tmp_path / "nothing-*.parquet"), tmp_path / "b"))
    with pytest.raises(ValueError, match="model directory not found"):
        encode.run(encode_args(str(tmp_path / "no-model"), scalar_data, tmp_path / "c"))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "c")


def test_pipeline_with_test_pipeline_and_assert_that(vector_model, vector_data, tmp_path):
    model_dir, _ = vector_model
    plan = encode.plan_encode(model_dir, f"{vector_data}/*.parquet", str(tmp_path / "out"), batch_rows=128)
    with TestPipeline(runner=FnApiRunner()) as p:
        manifest = encode.build_pipeline(p, plan)
        assert_that(manifest | beam.Map(lambda m: (m["rows_in"], m["rows_out"], len(m["shards"]))),
                    equal_to([(ROWS, ROWS, 3)]))


def test_handler_works_with_beams_run_inference(vector_model, vector_data):
    model_dir, result = vector_model
    batches = [b for f in sorted(os.listdir(vector_data)) for b in pq.read_table(f"{vector_data}/{f}").to_batches(200)]
    expected = {int(b.column("id")[0].as_py()): in_memory_encoding(result, embedding_matrix(b.column("vec")))[0]
                for b in batches}

    def close_to_in_memory(results):
        assert len(results) == len(batches)
        for res in results:
            first_id = int(res.example.column("id")[0].as_py())
            got = embedding_matrix(res.inference.column("embedding"))
            np.testing.assert_allclose(got, expected[first_id], rtol=1e-4, atol=1e-5)
            assert res.inference.num_rows == res.example.num_rows

    with TestPipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(batches) | RunInference(AutoencoderModelHandler(model_dir))
        assert_that(out, close_to_in_memory)


def test_local_run_attempts_no_network(vector_model, vector_data, tmp_path, monkeypatch):
    attempts = []

    def refuse(self, address, *args, **kwargs):
        attempts.append(address)
        raise OSError(f"network disabled in test: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    model_dir, _ = vector_model
    manifest = encode.run(encode_args(model_dir, f"{vector_data}/*.parquet", tmp_path / "out"))
    assert manifest["rows_out"] == ROWS
    assert attempts == []


def test_width_constant_is_what_the_model_expects(vector_model):
    assert read_metadata(vector_model[0])["feature_spec"]["width"] == WIDTH
