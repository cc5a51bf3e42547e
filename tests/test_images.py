"""Image features end to end: bytes of several formats and sizes, decoding inside the SavedModel, the conv
family, Hugging Face struct columns, pixel arrays, and corrupt images rejected by row, not by job."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from conftest import read_output
from image_data import encode, image_rows, pattern, write_image_dataset

from ae_tf.embeddings import embedding_array, embedding_matrix
from ae_tf.inputs import image_validity
from ae_tf.inputs.features import IMAGE, FeatureError, check_schema, infer_feature_spec, validate_rows
from ae_tf.inputs.images import ARRAY, BYTES, ImageRequest, ImageSpec, bytes_column, decode_images
from ae_tf.model.encoder import BatchEncoder, ImageDecodeError
from ae_tf.model.export import read_metadata
from ae_tf.model.train import make_train_config, train
from pipelines import encode as encode_pipeline

ROWS = 240
TINY = {"epochs": 3, "batch_size": 32, "min_steps": 30, "learning_rate": 3e-3, "read_rows": 64}


def column_bytes(path: str) -> np.ndarray:
    """The encoded images of a file, whether binary or struct<bytes, path>."""
    return bytes_column(pq.read_table(path).column("image")).to_numpy(zero_copy_only=False)


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("images")
    return write_image_dataset(directory, ROWS), write_image_dataset(directory / "hf", 40, seed=1, struct=True)


@pytest.fixture(scope="module")
def conv_model(image_data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("models") / "conv")
    result = train(make_train_config(image_data[0], "image", out, 6, family="conv", image_size="16", channels=3,
                                     filters="8,16", **{**TINY, "epochs": 6, "min_steps": 120}))
    return out, result


def test_bytes_of_every_format_and_size_decode_to_one_shape():
    rows = image_rows(10)
    assert {r[:4] for r in rows} >= {b"\x89PNG", b"\xff\xd8\xff\xe0", b"GIF8", b"RIFF"}  # PNG, JPEG, GIF, WebP
    images = decode_images(tf.constant(rows), ImageSpec(16, 16, 3)).numpy()
    assert images.shape == (10, 16, 16, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    # lossless PNG: decoding + resizing inside the model equals resizing the original pixels
    original = pattern(0, 12, 16, np.random.default_rng(0))
    expected = tf.image.resize(original / 255.0, (16, 16), antialias=True).numpy()
    np.testing.assert_allclose(images[0], np.clip(expected, 0, 1), atol=1e-5)
    # a grey image becomes three equal channels; an RGB image becomes one grey channel
    grey = decode_images(tf.constant([encode(original, "PNG", grey=True)]), ImageSpec(8, 8, 3)).numpy()[0]
    np.testing.assert_allclose(grey[..., 0], grey[..., 2])
    single = decode_images(tf.constant([rows[0]]), ImageSpec(8, 8, 1)).numpy()
    assert single.shape == (1, 8, 8, 1)


def test_image_columns_are_recognised(image_data):
    binary, struct = (pq.read_table(p) for p in image_data)
    spec = infer_feature_spec(binary.schema, ["image"], sample=binary)
    assert spec.kind == IMAGE and spec.image == ImageSpec(12, 16, 3, BYTES)  # from the first image
    assert spec.width == 12 * 16 * 3
    hf = infer_feature_spec(struct.schema, ["image"], sample=struct, image=ImageRequest((32, 32), 1))
    assert hf.image == ImageSpec(32, 32, 1, BYTES)
    pixels = pa.table({"px": pa.array([[0] * 64, [255] * 64], pa.list_(pa.uint8()))})
    arrays = infer_feature_spec(pixels.schema, ["px"], sample=pixels, image=ImageRequest())
    assert arrays.image == ImageSpec(8, 8, 1, ARRAY, (8, 8, 1), 255.0)
    floats = pa.table({"px": embedding_array(np.full((2, 48), 0.5))})
    assert infer_feature_spec(floats.schema, ["px"], sample=floats, image=ImageRequest()).image.source_shape == (4, 4, 3)
    odd = pa.table({"px": embedding_array(np.zeros((2, 50)))})
    with pytest.raises(FeatureError, match="holds 50 numbers per row, not a square image"):
        infer_feature_spec(odd.schema, ["px"], sample=odd, image=ImageRequest())
    with pytest.raises(FeatureError, match="expects encoded image bytes"):
        check_schema(pa.schema([("image", pa.list_(pa.uint8()))]), spec, "other.parquet")
    with pytest.raises(FeatureError, match="must be a multiple of 4"):
        infer_feature_spec(binary.schema, ["image"], sample=binary, image=ImageRequest((18, 18), 3, 4))


def test_row_check_names_every_undecodable_row():
    good = image_rows(3)
    column = pa.array([good[1], b"not an image at all", good[0][:60], b"", None, good[2]], pa.binary())
    spec = infer_feature_spec(pa.schema([("image", pa.binary())]), ["image"], image=ImageRequest((8, 8), 3))
    check = validate_rows(pa.table({"image": column}), spec)
    assert check.valid.tolist() == [True, False, False, False, False, True]
    assert "unknown format" in check.reasons[1]
    assert check.reasons[2].startswith("corrupt or truncated PNG data")
    assert check.reasons[3] == "empty bytes" and check.reasons[4] == "null: no image"


def test_conv_model_learns_and_exports_a_bytes_signature(conv_model, image_data):
    model_dir, result = conv_model
    meta = read_metadata(model_dir)
    assert meta["family"] == "conv" and meta["model"]["network"] == "conv" and meta["code_size"] == 6
    assert meta["feature_spec"]["image"] == {"height": 16, "width": 16, "channels": 3, "encoding": "bytes"}
    assert meta["normalization"]["mode"] == "image"
    assert result.history["reconstruction"][-1] < result.history["reconstruction"][0]
    # held-out error below always predicting the mean image (a few dozen steps of training)
    pixels = decode_images(tf.constant(column_bytes(image_data[0])), ImageSpec(16, 16, 3)).numpy()
    assert meta["reconstruction_error"]["mean"] < 0.8 * float(np.mean((pixels - pixels.mean(axis=0)) ** 2))

    loaded = tf.saved_model.load(model_dir)
    encode_fn = loaded.signatures["encode"]
    assert encode_fn.structured_input_signature[1]["features"].dtype == tf.string
    data = tf.constant(column_bytes(image_data[0])[:20])
    embedding = encode_fn(features=data)["embedding"].numpy()
    assert embedding.shape == (20, 6)
    np.testing.assert_allclose(embedding, np.asarray(result.model.encode(data)), rtol=1e-4, atol=1e-5)
    score = loaded.signatures["score"](features=data)["reconstruction_error"].numpy()
    np.testing.assert_allclose(score, np.asarray(result.model.score(data)), rtol=1e-4, atol=1e-6)
    rebuilt = loaded.signatures["decode"](embedding=tf.constant(embedding))["reconstruction"].numpy()
    assert rebuilt.shape == (20, 16, 16, 3) and rebuilt.min() >= 0 and rebuilt.max() <= 1
    assert "sample" not in loaded.signatures


PLAIN_LOAD = """
import sys, numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
data = open(sys.argv[2], "rb").read()
out = m.signatures["encode_and_score"](features=tf.constant([data, data]))
assert not [n for n in sys.modules if n.startswith(("ae_tf", "pipelines"))]
print(out["embedding"].shape.as_list(), out["reconstruction_error"].shape.as_list())
"""


def test_plain_tensorflow_decodes_jpeg_without_project_code(conv_model, tmp_path):
    jpeg = tmp_path / "x.jpg"
    jpeg.write_bytes(encode(pattern(1, 40, 30, np.random.default_rng(3)), "JPEG"))
    env = {**os.environ, "PYTHONPATH": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", PLAIN_LOAD, conv_model[0], str(jpeg)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[2, 6] [2]"


def test_beam_pipeline_ships_bytes_binary_and_hugging_face_struct(conv_model, image_data, tmp_path):
    model_dir, result = conv_model
    for path in image_data:
        out = tmp_path / os.path.basename(path)
        manifest = encode_pipeline.run(["--model", model_dir, "--input", path, "--output", str(out),
                                        "--batch-rows", "50"])
        table = read_output(str(out)).sort_by("id")
        rows = pq.read_metadata(path).num_rows
        assert manifest["rows_out"] == rows and manifest["rows_rejected"] == 0
        assert table.column_names == ["id", "label", "embedding", "reconstruction_error"]  # no image bytes copied
        expected = np.asarray(result.model.encode(tf.constant(column_bytes(path))))
        np.testing.assert_allclose(embedding_matrix(table.column("embedding")), expected, rtol=1e-4, atol=1e-5)


def test_corrupt_images_are_rejected_by_id_and_the_rest_encoded(conv_model, tmp_path, monkeypatch):
    model_dir, result = conv_model
    # each image is decoded once, by the model's prepare_images: no decode on the Arrow side, and only the
    # one row that fails inside the model is decoded again, to put TensorFlow's reason into words
    arrow_side_decodes, reasons_asked = [], []
    checked, reason = image_validity.decode_images_checked, image_validity.decode_failure_reason
    monkeypatch.setattr(image_validity, "decode_images_checked",
                        lambda *a: arrow_side_decodes.append(1) or checked(*a))
    monkeypatch.setattr(image_validity, "decode_failure_reason", lambda v: reasons_asked.append(v) or reason(v))
    data = image_rows(60, seed=5)
    data[7] = b"garbage, not an image"
    data[21] = data[21][: len(data[21]) // 3]  # truncated file
    data[40] = b""
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"id": np.arange(100, 160), "image": pa.array(data, pa.binary())}),
                   tmp_path / "in" / "x.parquet")
    manifest = encode_pipeline.run(["--model", model_dir, "--input", str(tmp_path / "in"), "--output",
                                    str(tmp_path / "out"), "--max-rejected-fraction", "0.1"])
    assert manifest["rows_in"] == 60 and manifest["rows_out"] == 57 and manifest["rows_rejected"] == 3
    assert arrow_side_decodes == [] and reasons_asked == [data[21]]
    rejected = pq.read_table(tmp_path / "out" / manifest["rejected_shards"][0]).to_pylist()
    reasons = {r["id"]: r["reason"] for r in rejected}
    assert set(reasons) == {107, 121, 140}
    assert "unknown format" in reasons[107] and "corrupt or truncated" in reasons[121] and reasons[140] == "empty bytes"
    good = read_output(str(tmp_path / "out")).sort_by("id")
    keep = [i for i in range(60) if i not in (7, 21, 40)]
    expected = np.asarray(result.model.encode(tf.constant([data[i] for i in keep])))
    np.testing.assert_allclose(embedding_matrix(good.column("embedding")), expected, rtol=1e-4, atol=1e-5)
    # without routing, the batch encoder names the rows instead of failing with a bare TensorFlow error
    encoder = BatchEncoder.load(model_dir)
    with pytest.raises(ImageDecodeError, match=r"3 of 60 image\(s\).*row 7: not an image") as err:
        encoder.encode(pa.table({"image": pa.array(data, pa.binary())}), source="x.parquet")
    assert np.flatnonzero(~err.value.check.valid).tolist() == [7, 21, 40]


def test_images_stored_as_pixel_arrays(tmp_path):
    from sklearn.datasets import load_digits

    digits = (load_digits().data[:300] * 255 / 16).astype(np.uint8)
    (tmp_path / "px").mkdir()
    pq.write_table(pa.table({"id": np.arange(300), "px": pa.array(list(digits), pa.list_(pa.uint8()))}),
                   tmp_path / "px" / "d.parquet")
    out = str(tmp_path / "model")
    result = train(make_train_config(str(tmp_path / "px"), "px", out, 4, family="conv", filters="8,16", **TINY))
    meta = read_metadata(out)
    assert meta["feature_spec"]["image"] == {"height": 8, "width": 8, "channels": 1, "encoding": "array",
                                             "source_shape": [8, 8, 1], "value_max": 255.0}
    loaded = tf.saved_model.load(out)
    assert loaded.signatures["encode"].structured_input_signature[1]["features"].shape.as_list() == [None, 64]
    manifest = encode_pipeline.run(["--model", out, "--input", str(tmp_path / "px"), "--output", str(tmp_path / "o")])
    table = read_output(str(tmp_path / "o")).sort_by("id")
    assert manifest["rows_out"] == 300
    np.testing.assert_allclose(embedding_matrix(table.column("embedding")),
                               np.asarray(result.model.encode(digits.astype(np.float32))), rtol=1e-4, atol=1e-5)


def test_vae_on_images_samples_images(image_data, tmp_path):
    out = str(tmp_path / "vae")
    train(make_train_config(image_data[0], "image", out, 4, family="vae", image_size="8", channels=1,
                            filters="8", **{**TINY, "epochs": 1}))
    loaded = tf.saved_model.load(out)
    samples = loaded.signatures["sample"](n=tf.constant(7))["samples"].numpy()
    assert samples.shape == (7, 8, 8, 1) and samples.min() >= 0 and samples.max() <= 1
    meta = json.loads((tmp_path / "vae" / "assets" / "ae_tf_metadata.json").read_text())
    assert meta["model"]["network"] == "conv" and "sample" in meta["signatures"]
