"""Compact codes: the stated round-trip error bounds hold, and encode writes and reads back all three forms."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import ae_tf
from ae_tf.vectors.codes import CODEC_KEY, Codec, calibrate, codec_of


def test_int8_round_trip_stays_within_half_a_step_inside_the_range():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(5000, 8)) * np.array([0.01, 0.1, 1, 10, 100, 1, 1, 1]) + 3).astype(np.float32)
    x[:, 7] = 2.5  # a constant dimension
    codec = calibrate(x[:1000], "int8")
    back = codec.decode(codec.encode(x))
    bound = codec.error_bound()
    inside = (x >= codec.lo) & (x <= codec.hi)
    assert inside[:1000].all()  # the calibration rows themselves are inside (with the margin)
    assert (np.abs(back - x)[inside] <= np.broadcast_to(bound, x.shape)[inside] * (1 + 1e-5) + 1e-7).all()
    assert np.allclose(back[:, 7], 2.5)
    # Outside the range values are clipped to it, never wrapped around.
    far = np.full((1, 8), 1e6, np.float32)
    assert np.allclose(codec.decode(codec.encode(far)), codec.hi.astype(np.float32), rtol=1e-5)
    # The bound is tight: about half a step is reached somewhere.
    assert (np.abs(back - x)[:, 3] > 0.4 * bound[3]).any()


def test_float16_round_trip_relative_error():
    x = np.random.default_rng(1).normal(scale=50, size=(2000, 6)).astype(np.float32)
    codec = Codec("float16")
    back = codec.decode(codec.encode(x))
    assert back.dtype == np.float32
    assert (np.abs(back - x) <= 2.0 ** -11 * np.abs(x) + 2.0 ** -25).all()


def test_codec_metadata_round_trip_and_bad_dtype():
    codec = calibrate(np.arange(12, dtype=np.float32).reshape(4, 3), "int8")
    assert Codec.from_dict(json.loads(json.dumps(codec.to_dict()))) == codec
    with pytest.raises(ValueError, match="--embedding-dtype"):
        Codec("int4")


def test_encode_writes_compact_codes_that_read_embeddings_decodes(tmp_path, vector_data, vector_model):
    from pipelines import encode

    model, _ = vector_model
    outputs = {}
    for name in ("float32", "float16", "int8"):
        out = tmp_path / name
        manifest = encode.run(["--model", model, "--input", f"{vector_data}/*.parquet", "--output", str(out),
                               "--embedding-dtype", name, "--progress-interval", "0"])
        outputs[name] = (manifest, ae_tf.read_embeddings(str(out)))
    _, (ids32, exact) = outputs["float32"]
    for dtype, nbytes in (("float16", 2), ("int8", 1)):
        manifest, (ids, approx) = outputs[dtype]
        np.testing.assert_array_equal(ids, ids32)
        shard = pq.ParquetFile(str(tmp_path / dtype / manifest["shards"][0]["file"]))
        assert shard.schema_arrow.field("embedding").type.value_type.byte_width == nbytes
        codec = codec_of(shard.schema_arrow)
        assert codec == Codec.from_dict(manifest["embedding_codec"]) and CODEC_KEY in shard.schema_arrow.metadata
        if dtype == "int8":
            assert (np.abs(approx - exact) <= np.asarray(codec.scale) / 2 + 1e-6).all()
        else:
            assert (np.abs(approx - exact) <= 2.0 ** -11 * np.abs(exact) + 1e-7).all()
