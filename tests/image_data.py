"""Small real image datasets for the image tests: encoded files of several formats and sizes in Parquet."""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


def pattern(i: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 RGB image of one of four simple patterns (bars, blocks) with a little noise: learnable."""
    y, x = np.mgrid[0:height, 0:width]
    kind = i % 4
    if kind == 0:
        mask = (x * 4 // width) % 2 == 0
    elif kind == 1:
        mask = (y * 4 // height) % 2 == 0
    elif kind == 2:
        mask = (x < width // 2) & (y < height // 2)
    else:
        mask = np.abs(x - width / 2) + np.abs(y - height / 2) < min(height, width) / 3
    color = np.array([[230, 40, 40], [40, 200, 60], [50, 80, 220], [220, 210, 40]][i % 4], dtype=np.float64)
    image = np.where(mask[..., None], color, 20.0) + rng.normal(0, 8, (height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(image: np.ndarray, fmt: str, grey: bool = False) -> bytes:
    from PIL import Image

    picture = Image.fromarray(image)
    if grey:
        picture = picture.convert("L")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def image_rows(rows: int, seed: int = 0) -> list[bytes]:
    """`rows` encoded images cycling through formats, sizes (12..28 px, not square) and grey/RGB."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(rows):
        height, width = 12 + 4 * (i % 5), 16 + 4 * (i % 4)
        out.append(encode(pattern(i, height, width, rng), FORMATS[i % len(FORMATS)], grey=(i % 7 == 3)))
    return out


def write_image_dataset(directory, rows: int = 240, seed: int = 0, struct: bool = False) -> str:
    """One Parquet file: id, label and `image` (binary, or Hugging Face's struct<bytes, path>)."""
    os.makedirs(directory, exist_ok=True)
    data = image_rows(rows, seed)
    if struct:
        column = pa.StructArray.from_arrays(
            [pa.array(data, pa.binary()), pa.array([f"img/{i}.png" for i in range(rows)])], names=["bytes", "path"])
    else:
        column = pa.array(data, pa.binary())
    table = pa.table({"id": np.arange(rows, dtype=np.int64), "label": np.arange(rows) % 4, "image": column})
    path = os.path.join(str(directory), "struct.parquet" if struct else "images.parquet")
    pq.write_table(table, path, row_group_size=64)
    return path


def export_untrained_conv(model_dir: str, side: int, filters: tuple[int, ...], code_size: int) -> None:
    """A conv model for side x side RGB image bytes, exported with its initial weights: for tests of memory
    and batching, which do not depend on what the weights are (training at 256x256 on a CPU is slow)."""
    from ae_tf.inputs.features import IMAGE, FeatureSpec
    from ae_tf.inputs.images import ImageSpec
    from ae_tf.model.export import export_model
    from ae_tf.model.families.config import ModelConfig
    from ae_tf.model.families.factory import build_model, input_layer

    image = ImageSpec(side, side, 3)
    spec = FeatureSpec(IMAGE, ("image",), image.size, image=image)
    prepare, normalization = input_layer(spec)
    model = build_model(ModelConfig(code_size=code_size, family="conv", filters=filters), spec, prepare)
    model(np.zeros((1, *image.shape), np.float32))
    export_model(model, model_dir, {"family": "conv", "code_size": code_size, "feature_spec": spec.to_dict(),
                                    "normalization": normalization, "model": model.describe()})
