"""Built-in demo data: scikit-learn's bundled handwritten digits (no download), enlarged with jitter.

Each generated row is one of the 1,797 real 8x8 digits, a quarter of them moved by one pixel, all with
small Gaussian noise on the 0-16 intensity scale, so the enlarged set keeps the real structure of the data.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf.embeddings import embedding_array
from ae_tf.errors import MissingDependency, OutputExists

# What `ae-tf demo` writes in its --workdir (the model's run files go beside the model, in model.run/).
WORKDIR_ENTRIES = {"data", "model", "model.run", "embeddings", "dedup", "report"}


def check_workdir(workdir: str) -> bool:
    """True when `workdir` is an earlier demo's folder, to be replaced; False when it does not exist; an
    error for a file, or for a folder holding anything the demo did not write (it is never deleted)."""
    if os.path.isfile(workdir):
        raise OutputExists(f"--workdir {workdir}: is a file; give a folder")
    if not os.path.isdir(workdir):
        return False
    foreign = sorted(set(os.listdir(workdir)) - WORKDIR_ENTRIES)
    if foreign:
        raise OutputExists(f"--workdir {workdir}: holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                              "which the demo did not write; the demo replaces its folder, so choose a new "
                              "or empty one")
    return True


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 8, 8] float32 on 0-16, labels [n]) from the copy that ships inside scikit-learn."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:
        raise MissingDependency("the demo data needs scikit-learn: pip install 'ae-tf[demo]'") from err
    digits = sk_load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int8)


def jittered_digits(rows: int, seed: int = 0, noise: float = 0.5,
                    shift_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels [rows, 64], labels [rows], source index [rows]) drawn from the real digits with jitter."""
    images, labels = load_digits()
    rng = np.random.default_rng(seed)
    source = rng.integers(0, len(images), size=rows)
    out = images[source]
    shifts = rng.integers(-1, 2, size=(rows, 2)) * (rng.random((rows, 1)) < shift_fraction)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            out[sel] = np.roll(out[sel], shift=(dy, dx), axis=(1, 2))
    out = out.reshape(rows, 64) + rng.normal(0.0, noise, size=(rows, 64)).astype(np.float32)
    return np.clip(out, 0.0, 16.0).astype(np.float32), labels[source], source.astype(np.int32)


def write_digits_parquet(out_dir: str, rows: int = 100_000, files: int = 4, seed: int = 0,
                         row_group_rows: int = 50_000) -> list[str]:
    """Write the demo dataset as `files` Parquet files with columns id, label, source_index, pixels."""
    pixels, labels, source = jittered_digits(rows, seed)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({
            "id": pa.array(np.arange(lo, hi, dtype=np.int64)),
            "label": pa.array(labels[lo:hi]),
            "source_index": pa.array(source[lo:hi]),
            "pixels": embedding_array(pixels[lo:hi]),
        })
        path = os.path.join(out_dir, f"digits-{i:03d}.parquet")
        pq.write_table(table, path, row_group_size=row_group_rows, compression="zstd")
        paths.append(path)
    return paths
