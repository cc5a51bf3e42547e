"""Which image rows a model can decode, each image decoded once.

Two halves:
  TensorFlow side  `decode_images_checked`: the model's own decoder run over a batch of encoded files in a
                   parallel tf.data map that skips failures, returning the images and a per-row `valid`
                   flag. The SavedModel exports it as its `prepare_images` signature, so a pipeline decodes
                   each image exactly once, inside the model, and learns which rows failed from that pass.
  Arrow side       `image_row_validity`: cheap checks (null, empty, unknown format) read only the first
                   bytes of each row; with `decode=True` (models exported before `prepare_images` existed)
                   the remaining rows are also decoded here, with the same TensorFlow function.
Reasons for rows that fail to decode come from `decode_failure_reason`, run only on those few rows.
"""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.inputs.images import ARRAY, ImageSpec, bytes_column, image_decoder
from ae_tf.inputs.spec import FeatureSpec, RowCheck

# Leading bytes of the formats TensorFlow's decode_image reads.
_SIGNATURES = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "GIF": (b"GIF87a", b"GIF89a"),
    "BMP": (b"BM",),
}
_HEAD = 12  # bytes needed to recognise every format above and WebP


def format_of(data: bytes) -> str | None:
    """The image format named by the leading bytes, or None."""
    for name, prefixes in _SIGNATURES.items():
        if data.startswith(prefixes):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return None


def decode_images_checked(strings, image: ImageSpec):
    """tf.string [rows] -> (float32 [rows, height, width, channels], bool valid [rows]).

    Rows the decoder rejects come back as zeros with valid False instead of failing the call. Decoding
    runs as a parallel tf.data map (all cores), which also works inside a SavedModel signature.
    """
    import tensorflow as tf

    rows = tf.shape(strings, out_type=tf.int64)[0]
    decode = image_decoder(image)
    decoded = (tf.data.Dataset.from_tensor_slices((tf.range(rows), strings))
               .map(lambda i, s: (i, decode(s)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
               .ignore_errors()
               .batch(tf.maximum(rows, 1)))
    nothing = tf.data.Dataset.from_tensors((tf.zeros([0], tf.int64), tf.zeros([0, *image.shape], tf.float32)))
    index, images = decoded.concatenate(nothing).take(1).get_single_element()
    where = index[:, None]
    valid = tf.scatter_nd(where, tf.ones_like(index, tf.int32), tf.reshape(rows, [1])) > 0
    full = tf.scatter_nd(where, images, tf.concat([[rows], tf.constant(image.shape, tf.int64)], axis=0))
    return full, valid


def decode_failure_reason(value: bytes) -> str:
    """Why one image does not decode, in TensorFlow's own words (run only for rows that failed)."""
    import tensorflow as tf

    try:
        tf.io.decode_image(value, expand_animations=False)
    except tf.errors.OpError as err:
        message = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", err.message.splitlines()[0])
        return f"corrupt or truncated {format_of(value)} data: {message.strip()[:200]}"
    return f"corrupt or truncated {format_of(value)} data: decoder failed"


def cheap_image_checks(data: pa.Array) -> np.ndarray:
    """Reasons (object array, None = not rejected yet) from nulls, empty values and the leading bytes only."""
    reasons = np.full(len(data), None, dtype=object)
    heads = pc.binary_slice(data, 0, _HEAD).to_pylist()  # a few bytes per row, never the whole file
    for i, head in enumerate(heads):
        if head is None:
            reasons[i] = "null: no image"
        elif len(head) == 0:
            reasons[i] = "empty bytes"
        elif format_of(head) is None:
            reasons[i] = f"not an image: unknown format (starts with {head[:8]!r})"
    return reasons


def image_row_validity(column: pa.Array | pa.ChunkedArray, spec: FeatureSpec, decode: bool = True) -> RowCheck:
    """Which rows of an image column the model can decode, and why not for the others.

    Cheap checks first (null, empty, unknown format). With `decode`, every remaining row is then decoded
    with the very TensorFlow function the SavedModel runs, so a truncated or corrupt file is caught exactly
    when the model would fail on it; without it, that is left to the model's own `prepare_images` pass.
    Array-encoded images are checked for nulls, lengths and finite values instead.
    """
    if spec.image.encoding == ARRAY:
        return _array_row_validity(column, spec)
    data = bytes_column(column)
    reasons = cheap_image_checks(data)
    candidates = np.flatnonzero(np.equal(reasons, None))
    if decode and len(candidates):
        import tensorflow as tf

        values = data.take(pa.array(candidates)).to_numpy(zero_copy_only=False)
        _, valid = decode_images_checked(tf.constant(values, dtype=tf.string), spec.image)
        for i in candidates[~valid.numpy()]:
            reasons[i] = decode_failure_reason(data[int(i)].as_py())
    return RowCheck(valid=np.equal(reasons, None), reasons=reasons)


def _array_row_validity(column: pa.Array | pa.ChunkedArray, spec: FeatureSpec) -> RowCheck:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    reasons = np.full(len(column), None, dtype=object)
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    lengths = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(nulls):
        reasons[int(i)] = "null: no image"
    for i in np.flatnonzero(~nulls & (lengths != spec.image.input_width)):
        reasons[int(i)] = f"holds {lengths[i]} values, expected {spec.image.input_width}"
    ok = np.flatnonzero(~nulls & (lengths == spec.image.input_width))
    if len(ok):
        values = column.take(pa.array(ok)).flatten().cast(pa.float64())
        matrix = pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False).reshape(len(ok), -1)
        for i in ok[~np.isfinite(matrix.astype(np.float64)).all(axis=1)]:
            reasons[int(i)] = "null, NaN or infinite pixel value"
    return RowCheck(valid=np.equal(reasons, None), reasons=reasons)
