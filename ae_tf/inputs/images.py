"""Image features: how an image column becomes model input, on the Arrow side and inside TensorFlow.

Two storage forms are accepted:
  bytes  raw encoded files (PNG, JPEG, GIF, BMP, WebP) in a binary column, or in the struct<bytes, path>
         that Hugging Face datasets write. The SavedModel takes them as a tf.string [rows] tensor and
         decodes, resizes and scales them itself, so a Beam worker ships bytes and needs no image library.
  array  images already decoded into numbers: a list column of h*w*c values per row (row-major, channels
         last). The SavedModel takes float32 [rows, h*w*c] and reshapes, scales and resizes.
Either way the model sees float32 [rows, height, width, channels] scaled to [0, 1]; training and serving
run the same TensorFlow functions below (`to_model_space`), so they see identical numbers.

A row that cannot be decoded would fail a whole batch inside the model's `encode`; the SavedModel's
`prepare_images` signature decodes with a per-row validity flag instead (`decode_images_checked`), and
ae_tf.inputs.image_validity names the reason, so a pipeline can route such rows elsewhere and encode the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ae_tf.inputs.arrays import numeric_features_to_array
from ae_tf.inputs.spec import ARRAY, BYTES, IMAGE, VECTOR, FeatureError, FeatureSpec, ImageRequest, ImageSpec

__all__ = ["ARRAY", "BYTES", "ImageRequest", "ImageSpec"]  # defined in ae_tf.inputs.spec, importable here too

MAX_DEFAULT_SIDE = 256  # a default image size taken from the data is capped here; --image-size overrides

def parse_image_size(text: str | int | Sequence[int] | None) -> tuple[int, int] | None:
    """`--image-size 64` or `64x48` (height x width) -> (height, width)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return (text, text)
    if not isinstance(text, str):
        values = tuple(int(v) for v in text)
        return values if len(values) == 2 else (values[0], values[0])
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts if p.strip()]
    except ValueError:
        raise FeatureError(f"--image-size must look like 64 or 64x48, got {text!r}") from None
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) != 2:
        raise FeatureError(f"--image-size must look like 64 or 64x48, got {text!r}")
    return (values[0], values[1])


# ---------------------------------------------------------------------------------------------------------
# Arrow side: which columns hold images, and turning a batch into model input
# ---------------------------------------------------------------------------------------------------------


def is_bytes_type(dtype: pa.DataType) -> bool:
    """A binary column, or a struct with a binary `bytes` field (the Hugging Face image layout)."""
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return True
    if pa.types.is_struct(dtype):
        index = dtype.get_field_index("bytes")
        return index >= 0 and (pa.types.is_binary(dtype.field(index).type)
                               or pa.types.is_large_binary(dtype.field(index).type))
    return False


def _is_numeric_list(dtype: pa.DataType) -> bool:
    return ((pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype))
            and (pa.types.is_integer(dtype.value_type) or pa.types.is_floating(dtype.value_type)))


def bytes_column(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The encoded-image bytes of a binary or struct<bytes, ...> column, as one binary array (nulls kept)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_struct(column.type):
        inner = pc.struct_field(column, "bytes")
        # a null struct has no bytes either, whatever its child slot holds
        column = pc.if_else(column.is_valid(), inner, pa.scalar(None, inner.type)) if column.null_count else inner
    if pa.types.is_large_binary(column.type):
        column = column.cast(pa.binary())
    return column


def _first_image_shape(column: pa.Array) -> tuple[int, int, int]:
    """Shape of the first decodable image in a sample (to size the model when the user did not)."""
    import tensorflow as tf

    for value in column.to_pylist():
        if value:
            try:
                return tuple(int(d) for d in tf.io.decode_image(value, expand_animations=False).shape)
            except tf.errors.InvalidArgumentError:
                continue
    raise FeatureError("no decodable image among the first rows to take the image size from; pass --image-size")


def _square_shape(count: int, channels: int | None) -> tuple[int, int, int] | None:
    for c in ([channels] if channels else [1, 3]):
        if count % c == 0:
            side = math.isqrt(count // c)
            if side * side * c == count:
                return (side, side, c)
    return None


def infer_image_spec(field: pa.Field, sample: pa.Table | None, request: ImageRequest | None,
                     source: str = "input") -> FeatureSpec:
    """Image FeatureSpec for one column: size and channels from the request, else from the data."""
    request = request or ImageRequest()
    name = field.name
    if is_bytes_type(field.type):
        if request.size is None or request.channels is None:
            if sample is None or sample.num_rows == 0:
                raise FeatureError(f"{source}: no rows to take the image size from; pass --image-size and --channels")
            h, w, c = _first_image_shape(bytes_column(sample.column(name)))
            if request.size is None and max(h, w) > MAX_DEFAULT_SIDE:
                raise FeatureError(f"{source}: images in {name!r} are {h}x{w}; pass --image-size to choose the model's size")
        size = request.size or (h, w)
        channels = request.channels or (1 if c == 1 else 3)
        image = ImageSpec(size[0], size[1], channels, BYTES)
    elif _is_numeric_list(field.type):
        count = _list_width(field.type, sample, name, source)
        stored = _square_shape(count, request.channels)
        if stored is None:
            raise FeatureError(
                f"{source}: column {name!r} holds {count} numbers per row, not a square image of 1 or 3 channels"
                + (f" with {request.channels} channel(s)" if request.channels else "")
            )
        value_max = 255.0
        if pa.types.is_floating(field.type.value_type) and sample is not None and sample.num_rows:
            top = pc.max(pc.list_flatten(sample.column(name))).as_py()
            value_max = 1.0 if top is not None and top <= 1.0 else 255.0
        size = request.size or stored[:2]
        image = ImageSpec(size[0], size[1], request.channels or stored[2], ARRAY, stored, value_max)
    else:
        raise FeatureError(f"{source}: column {name!r} is {field.type}; an image column holds encoded bytes "
                           "(binary or struct<bytes, path>) or a list of pixel values")
    if image.height % request.multiple_of or image.width % request.multiple_of:
        raise FeatureError(
            f"{source}: image size {image.height}x{image.width} must be a multiple of {request.multiple_of} for "
            "this model (one halving per conv layer); pass --image-size"
        )
    return FeatureSpec(IMAGE, (name,), image.size, image=image)


def _list_width(dtype: pa.DataType, sample: pa.Table | None, name: str, source: str) -> int:
    if pa.types.is_fixed_size_list(dtype):
        return dtype.list_size
    if sample is None or sample.num_rows == 0:
        raise FeatureError(f"{source}: column {name!r} is a variable-length list and no rows to size it")
    lengths = pc.list_value_length(sample.column(name)).drop_null()
    if len(lengths) == 0 or pc.min(lengths).as_py() != pc.max(lengths).as_py():
        raise FeatureError(f"{source}: column {name!r} holds lists of different lengths; an image has one size")
    return int(pc.min(lengths).as_py())


def check_image_schema(schema: pa.Schema, spec: FeatureSpec, source: str = "input") -> None:
    """One-line FeatureError when a column cannot feed a model built for this image spec."""
    name = spec.columns[0]
    dtype = schema.field(name).type
    if spec.image.encoding == BYTES and not is_bytes_type(dtype):
        raise FeatureError(f"{source}: column {name!r} is {dtype}, the model expects encoded image bytes "
                           "(binary or struct<bytes, path>)")
    if spec.image.encoding == ARRAY:
        if not _is_numeric_list(dtype):
            raise FeatureError(f"{source}: column {name!r} is {dtype}, the model expects a list of "
                               f"{spec.image.input_width} pixel values")
        if pa.types.is_fixed_size_list(dtype) and dtype.list_size != spec.image.input_width:
            raise FeatureError(f"{source}: column {name!r} holds {dtype.list_size} values per row, the model "
                               f"expects {spec.image.input_width}")


def image_features(column: pa.Array | pa.ChunkedArray, spec: FeatureSpec, source: str = "input") -> np.ndarray:
    """Arrow column -> model input: object array of bytes [rows] (bytes) or float32 [rows, h*w*c] (array).

    Nulls raise a FeatureError naming the row; undecodable bytes are found by ae_tf.inputs.image_validity.
    """
    name = spec.columns[0]
    if spec.image.encoding == ARRAY:
        vector = FeatureSpec(VECTOR, (name,), spec.image.input_width)
        return numeric_features_to_array(pa.table({name: column}), vector, source=source)
    data = bytes_column(column)
    if data.null_count:
        row = int(np.flatnonzero(data.is_null().to_numpy(zero_copy_only=False))[0])
        raise FeatureError(f"{source}: column {name!r} has no image at row {row} (null)")
    return data.to_numpy(zero_copy_only=False)


# ---------------------------------------------------------------------------------------------------------
# TensorFlow side: shared by the SavedModel, the training input pipeline and the validity check
# ---------------------------------------------------------------------------------------------------------


def image_decoder(image: ImageSpec):
    """bytes scalar -> float32 [height, width, channels] in [0, 1]."""
    import tensorflow as tf

    def decode(data):
        pixels = tf.io.decode_image(data, channels=image.channels, expand_animations=False, dtype=tf.uint8)
        return pixels_to_model_space(pixels, image)

    return decode


def pixels_to_model_space(pixels, image: ImageSpec):
    """uint8 (or 0..255) [..., h, w, c] -> float32 [..., height, width, channels] in [0, 1], resized."""
    import tensorflow as tf

    pixels = tf.cast(pixels, tf.float32) / 255.0
    return _resize_and_convert(pixels, image)


def _resize_and_convert(images, image: ImageSpec):
    import tensorflow as tf

    have = images.shape[-1]
    if have == 1 and image.channels == 3:
        images = tf.image.grayscale_to_rgb(images)
    elif have in (3, 4) and image.channels == 1:
        images = tf.image.rgb_to_grayscale(images[..., :3])
    elif have == 4:
        images = images[..., :3]
    if tuple(images.shape[-3:-1]) != (image.height, image.width):
        images = tf.image.resize(images, (image.height, image.width), method="bilinear", antialias=True)
    return tf.clip_by_value(images, 0.0, 1.0)


def decode_images(strings, image: ImageSpec):
    """tf.string [rows] -> float32 [rows, height, width, channels]; any undecodable row fails the call."""
    import tensorflow as tf

    return tf.map_fn(image_decoder(image), strings, fn_output_signature=tf.TensorSpec(image.shape, tf.float32))


def arrays_to_images(matrix, image: ImageSpec):
    """float [rows, h*w*c] (stored pixel values) -> float32 [rows, height, width, channels] in [0, 1]."""
    import tensorflow as tf

    h, w, c = image.source_shape
    images = tf.reshape(tf.cast(matrix, tf.float32), [-1, h, w, c]) / image.value_max
    return _resize_and_convert(images, image)


def to_model_space(x, image: ImageSpec):
    """Whatever the model is fed -> float32 [rows, height, width, channels] in [0, 1].

    Serving feeds the stored form (strings, or flat arrays); the training pipeline feeds images it has
    already prepared with these same functions (rank 4), which pass through unchanged.
    """
    import tensorflow as tf

    if x.dtype == tf.string:
        return decode_images(x, image)
    if len(x.shape) == 4:
        return tf.cast(x, tf.float32)
    return arrays_to_images(x, image)


def model_input_signature(spec: FeatureSpec):
    """The `features` TensorSpec of the SavedModel's encode/score signatures for this feature spec."""
    import tensorflow as tf

    if spec.kind == IMAGE and spec.image.encoding == BYTES:
        return tf.TensorSpec([None], tf.string, name="features")
    width = spec.image.input_width if spec.kind == IMAGE else spec.width
    return tf.TensorSpec([None, width], tf.float32, name="features")


def encode_png(images: np.ndarray) -> list[bytes]:
    """uint8 [rows, h, w, c] -> PNG bytes per row (lossless: decoding gives the same pixels back)."""
    import tensorflow as tf

    return [tf.io.encode_png(img).numpy() for img in images]
