"""Datasets of the dedup benchmark, written as embedding Parquet (id = row number, `embedding` float32[k]).

sparse     the original data: 1,000 anisotropic Gaussian clusters, 5% of rows with 1-3 planted near
           copies at a cosine drawn from [0.90, 1.00] (10% identical). Few duplicates.
catalogue  heavily duplicated, shaped like a product catalogue: 45% of rows in clusters of power-law
           (Zipf 1.6) sizes whose members sit at cosine 0.95-0.995 to their item, 15% in random-walk chains
           (each step at cosine 0.97 to the previous row, 20-200 steps), 10% exact copies of other rows,
           30% unique rows. Rows are shuffled.
digits     the demo's jittered digits (ae_tf.inputs.demo_data) encoded by a real dense ae_tf autoencoder of code
           size 8 or 16, trained with `ae_tf.train` on 20,000 demo rows (seeded; a few epochs, well under
           a minute) and kept in the benchmark workdir (`digits-model-<code>`), so reruns reuse it:
           1,797 source images, so a 1M-row set holds ~560 near copies of each.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def at_cosine(x: np.ndarray, cosine: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows at exactly `cosine` to the rows of x (same norm), in a random orthogonal direction."""
    d = rng.standard_normal(x.shape)
    d -= (np.einsum("ij,ij->i", d, x) / np.einsum("ij,ij->i", x, x))[:, None] * x
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    c = np.clip(cosine, -1.0, 1.0)[:, None]
    return c * x + np.sqrt(1 - c**2) * norm * d


def sparse_rows(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    originals = int(rows * 0.05)
    copies = rng.integers(1, 4, size=originals)
    n_base = rows - int(copies.sum())
    centres = rng.standard_normal((1000, dim))
    scales = np.linspace(1.0, 0.3, dim)
    base = (centres[rng.integers(0, 1000, n_base)] + 1.53 * rng.standard_normal((n_base, dim))) * scales
    x = base[np.repeat(rng.choice(n_base, originals, replace=False), copies)]
    cosine = np.where(rng.random(len(x)) < 0.1, 1.0, rng.uniform(0.90, 1.00, len(x)))
    return np.concatenate([base, at_cosine(x, cosine, rng)])


def catalogue_rows(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    n_cluster, n_chain, n_copy = int(rows * 0.45), int(rows * 0.15), int(rows * 0.10)
    n_unique = rows - n_cluster - n_chain - n_copy
    centres = rng.standard_normal((500, dim))
    unique = centres[rng.integers(0, 500, n_unique)] + 1.5 * rng.standard_normal((n_unique, dim))
    sizes = []
    while sum(sizes) < n_cluster:  # power-law cluster sizes, the biggest ~2% of all rows
        sizes.append(int(min(rng.zipf(1.6), rows // 50, n_cluster - sum(sizes))))
    sizes = np.array(sizes)
    items = centres[rng.integers(0, 500, len(sizes))] + 1.5 * rng.standard_normal((len(sizes), dim))
    members = np.repeat(items, sizes, axis=0)
    clustered = at_cosine(members, rng.uniform(0.95, 0.995, len(members)), rng)
    chains, done = [], 0
    while done < n_chain:
        length = int(min(rng.integers(20, 201), n_chain - done))
        step = centres[rng.integers(0, 500, 1)] + 1.5 * rng.standard_normal((1, dim))
        walk = [step]
        for _ in range(length - 1):
            step = at_cosine(step, np.array([0.97]), rng)
            walk.append(step)
        chains.append(np.concatenate(walk))
        done += length
    body = np.concatenate([unique, clustered, *chains])
    copies = body[rng.integers(0, len(body), n_copy)]
    return np.concatenate([body, copies])


TRAIN_ROWS = 20_000
TRAIN_EPOCHS = 6


def digits_model(root: str, code: int) -> str:
    """The dense autoencoder of code size `code`, trained once per workdir on demo rows (seed 0)."""
    from ae_tf.inputs.demo_data import write_digits_parquet
    from ae_tf.model.export import model_dir_exists
    from ae_tf.model.train import make_train_config, train

    model_dir = os.path.join(root, f"digits-model-{code}")
    if model_dir_exists(model_dir):
        return model_dir
    data_dir = os.path.join(root, "digits-train")
    if not os.path.isdir(data_dir):
        write_digits_parquet(data_dir, rows=TRAIN_ROWS, files=2, seed=0)
    config = make_train_config(os.path.join(data_dir, "*.parquet"), "pixels", model_dir, code,
                               epochs=TRAIN_EPOCHS, batch_size=512, patience=3, seed=0, overwrite=True)
    training = train(config).metadata["training"]
    print(f"   digits model, code {code}: {training['epochs_run']} epochs in {training['seconds']}s, validation "
          f"loss {training['validation_loss']:.4f} ({model_dir})", flush=True)
    return model_dir


def digits_rows(rows: int, code: int, rng: np.random.Generator, root: str) -> np.ndarray:
    from ae_tf.inputs.demo_data import jittered_digits
    from ae_tf.model.encoder import BatchEncoder

    pixels, _, _ = jittered_digits(rows, seed=int(rng.integers(1 << 31)))
    encoder = BatchEncoder.load(digits_model(root, code), model_batch_rows=65536)
    return np.concatenate([encoder.encode_array(pixels[lo:lo + 262144])[0] for lo in range(0, rows, 262144)])


def make_rows(kind: str, rows: int, dim: int, seed: int = 0, root: str = ".") -> np.ndarray:
    """float32 [rows, dim] of one dataset kind, rows shuffled; `root` holds the digits models."""
    rng = np.random.default_rng(seed)
    if kind == "sparse":
        x = sparse_rows(rows, dim, rng)
    elif kind == "catalogue":
        x = catalogue_rows(rows, dim, rng)
    elif kind == "digits":
        x = digits_rows(rows, dim, rng, root)
    else:
        raise ValueError(f"unknown dataset {kind!r}")
    return x[rng.permutation(len(x))].astype(np.float32)


def write_parquet(directory: str, matrix: np.ndarray, files: int = 8) -> None:
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, len(matrix), files + 1).astype(int)
    dim = matrix.shape[1]
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({"id": np.arange(lo, hi, dtype=np.int64),
                          "embedding": pa.FixedSizeListArray.from_arrays(matrix[lo:hi].reshape(-1), dim)})
        pq.write_table(table, os.path.join(directory, f"part-{i:03d}.parquet"), row_group_size=65536)
