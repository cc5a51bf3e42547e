"""Built-in image demo data: crops of the photographs that ship inside scikit-image and scikit-learn.

No download: only images stored in the installed wheels are used (scikit-image's `skimage.data` files
that need no pooch fetch, and scikit-learn's `load_sample_images`). Each row is a JPEG of a random
square crop (a random scale and place, some mirrored) of one photograph, resized to `size` pixels.
A fraction of rows are planted near duplicates of an earlier row, of one of three kinds, named in the
`variant` column with the original's id in `duplicate_of` (-1 for originals):
  recode  the same pixels re-encoded at a low JPEG quality
  shift   the crop moved by a few percent of its side and re-encoded
  flip    the same crop mirrored left to right
"""

from __future__ import annotations

import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf.errors import MissingDependency

# skimage.data functions whose files are inside the wheel (checked: no network needed); grey ones become RGB
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "immunohistochemistry",
                  "camera", "coins", "moon", "page", "text", "brick", "grass", "gravel", "clock", "cell")
VARIANTS = ("recode", "shift", "flip")


def load_photos() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 [h, w, 3]) for every bundled photograph: scikit-image's and scikit-learn's."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise MissingDependency("the image demo needs scikit-image and scikit-learn: pip install 'ae-tf[demo]'") from err
    photos = []
    for name in SKIMAGE_PHOTOS:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=-1)
        photos.append((name, image[..., :3].astype(np.uint8)))
    left, right, _disparity = skimage.data.stereo_motorcycle()
    photos += [("motorcycle_left", left), ("motorcycle_right", right)]
    sample = load_sample_images()
    photos += [(os.path.splitext(os.path.basename(f))[0], img) for f, img in zip(sample.filenames, sample.images,
                                                                                 strict=True)]
    return photos


def _jpeg(pixels: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _crop(photo: np.ndarray, top: int, left: int, side: int, size: int, mirror: bool) -> np.ndarray:
    from PIL import Image

    patch = Image.fromarray(photo[top:top + side, left:left + side]).resize((size, size), Image.BILINEAR)
    pixels = np.asarray(patch)
    return pixels[:, ::-1] if mirror else pixels


def photo_crops(rows: int, size: int = 64, duplicate_fraction: float = 0.1, seed: int = 0) -> pa.Table:
    """`rows` JPEG crops: id, photo, variant, duplicate_of, image (binary)."""
    photos = load_photos()
    rng = np.random.default_rng(seed)
    images, names, variants, duplicate_of, crops = [], [], [], [], []
    for i in range(rows):
        if i >= 10 and rng.random() < duplicate_fraction:
            source = int(rng.integers(0, i))
            while duplicate_of[source] != -1:  # a duplicate of an original, never of a copy
                source = int(rng.integers(0, i))
            p, top, left, side, mirror = crops[source]
            variant = VARIANTS[int(rng.integers(0, len(VARIANTS)))]
            photo = photos[p][1]
            if variant == "recode":
                pixels, quality = _crop(photo, top, left, side, size, mirror), 40
            elif variant == "shift":
                step = max(1, side // 25)
                top = int(np.clip(top + rng.integers(-step, step + 1), 0, photo.shape[0] - side))
                left = int(np.clip(left + rng.integers(-step, step + 1), 0, photo.shape[1] - side))
                pixels, quality = _crop(photo, top, left, side, size, mirror), 90
            else:
                pixels, quality = _crop(photo, top, left, side, size, not mirror), 90
            crops.append((p, top, left, side, mirror))
            duplicate_of.append(source)
        else:
            p = int(rng.integers(0, len(photos)))
            photo = photos[p][1]
            short = min(photo.shape[:2])
            side = int(short * rng.uniform(0.25, 0.9))
            top = int(rng.integers(0, photo.shape[0] - side + 1))
            left = int(rng.integers(0, photo.shape[1] - side + 1))
            mirror = bool(rng.random() < 0.5)
            pixels, quality, variant = _crop(photo, top, left, side, size, mirror), 90, "original"
            crops.append((p, top, left, side, mirror))
            duplicate_of.append(-1)
        images.append(_jpeg(np.ascontiguousarray(pixels), quality))
        names.append(photos[p][0])
        variants.append(variant)
    return pa.table({"id": pa.array(np.arange(rows, dtype=np.int64)), "photo": pa.array(names),
                     "variant": pa.array(variants), "duplicate_of": pa.array(np.asarray(duplicate_of, np.int64)),
                     "image": pa.array(images, pa.binary())})


def write_photo_parquet(out_dir: str, rows: int = 2000, size: int = 64, files: int = 2, seed: int = 0,
                        duplicate_fraction: float = 0.1) -> list[str]:
    """The image demo dataset as `files` Parquet files (row groups of 256 images)."""
    table = photo_crops(rows, size, duplicate_fraction, seed)
    os.makedirs(out_dir, exist_ok=True)
    bounds = np.linspace(0, rows, files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        path = os.path.join(out_dir, f"photos-{i:03d}.parquet")
        pq.write_table(table.slice(lo, hi - lo), path, row_group_size=256, compression="zstd")
        paths.append(path)
    return paths
