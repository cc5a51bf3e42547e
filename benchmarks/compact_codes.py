"""Compact codes: bytes on disk per row, dedup kept-set agreement and kNN recall@10 of float16 and int8
against float32, on two kinds of real codes.

    python benchmarks/compact_codes.py [--digits 10000] [--epochs 3]

digits  a dense autoencoder (code 8, like the demo) trained on the demo's jittered digits (ae_tf.inputs.demo_data)
photos  a conv autoencoder (code 16) trained on 32x32 crops of the two photos shipped with scikit-learn
        (`load_sample_images`: china, flower), PNG-encoded in Parquet like any image column
The codes are written exactly as `encode --embedding-dtype` writes them (ae_tf.embeddings.output_schema and
encoded_batch, zstd; int8 calibrated on a sample of the codes as the launcher does). Dedup agreement uses an
exact greedy check in numpy (cosine >= --threshold to an earlier kept row -> removed; the same rule as
`ae-tf dedup` without its LSH candidate step), because the dedup pipeline is being rewritten.
Expected (2 cores): about 2 minutes; int8 keeps ~0.9+ recall and ~0.99 dedup agreement at a quarter of
the embedding bytes (see the README's table for the measured figures).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae_tf.embeddings import encoded_batch, output_schema  # noqa: E402
from ae_tf.vectors.codes import Codec, calibrate  # noqa: E402

SAMPLE_ROWS = 8192  # as pipelines.io.compact_output


def train_digits(work: str, rows: int, epochs: int):
    from ae_tf.inputs.demo_data import write_digits_parquet
    from ae_tf.model.train import make_train_config, train

    write_digits_parquet(f"{work}/digits", rows=rows, files=1)
    config = make_train_config(f"{work}/digits/*.parquet", "pixels", f"{work}/digits_model", code_size=8,
                               hidden="64,32", epochs=epochs, batch_size=256, min_steps=50)
    train(config)
    return f"{work}/digits/*.parquet", f"{work}/digits_model"


def photo_crops(size: int = 32, stride: int = 10) -> list[bytes]:
    from PIL import Image
    from sklearn.datasets import load_sample_images

    crops = []
    for image in load_sample_images().images:
        for y in range(0, image.shape[0] - size + 1, stride):
            for x in range(0, image.shape[1] - size + 1, stride):
                buffer = io.BytesIO()
                Image.fromarray(image[y:y + size, x:x + size]).save(buffer, format="PNG")
                crops.append(buffer.getvalue())
    return crops


def train_photos(work: str, epochs: int):
    from ae_tf.model.train import make_train_config, train

    crops = photo_crops()
    os.makedirs(f"{work}/photos", exist_ok=True)
    pq.write_table(pa.table({"id": np.arange(len(crops), dtype=np.int64), "image": pa.array(crops, pa.binary())}),
                   f"{work}/photos/crops.parquet", row_group_size=2048)
    config = make_train_config(f"{work}/photos/*.parquet", "image", f"{work}/photos_model", code_size=16,
                               family="conv", filters="16,32", epochs=epochs, batch_size=128, min_steps=30)
    train(config)
    return f"{work}/photos/*.parquet", f"{work}/photos_model"


def encode_all(pattern: str, model_dir: str) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    import glob

    from ae_tf.model.encoder import BatchEncoder

    model = BatchEncoder.load(model_dir)
    table = pa.concat_tables([pq.read_table(p) for p in sorted(glob.glob(pattern))])
    codes, errors = [], []
    for batch in table.to_batches(max_chunksize=4096):
        embedding, error = model.encode(batch)
        codes.append(embedding)
        errors.append(error)
    return table.select(["id"]), np.concatenate(codes), np.concatenate(errors)


def bytes_per_row(ids: pa.Table, codes: np.ndarray, errors: np.ndarray, codec: Codec | None, path: str) -> tuple[float, float]:
    """(whole shard, embedding column alone) bytes on disk per row, written as encode writes a shard."""
    schema = output_schema(ids.schema, ["id"], codes.shape[1], "benchmark", codec=codec)
    batch = encoded_batch(ids, codes, errors, schema)
    pq.write_table(pa.Table.from_batches([batch]), path, compression="zstd")
    meta = pq.read_metadata(path)
    column = [meta.schema.column(i).path for i in range(meta.num_columns)].index("embedding.list.element")
    embedding_bytes = sum(meta.row_group(g).column(column).total_compressed_size for g in range(meta.num_row_groups))
    return os.path.getsize(path) / len(codes), embedding_bytes / len(codes)


def knn(matrix: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact Euclidean k nearest neighbours of each query row (itself excluded)."""
    out = []
    squared = (matrix.astype(np.float64) ** 2).sum(1)
    for lo in range(0, len(queries), 512):
        q = queries[lo:lo + 512]
        d = squared[None, :] - 2 * matrix[q].astype(np.float64) @ matrix.T.astype(np.float64)
        d[np.arange(len(q)), q] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        out.append(part)
    return np.concatenate(out)


def greedy_kept(matrix: np.ndarray, threshold: float) -> np.ndarray:
    """Exact greedy dedup: a row is removed when its cosine to an earlier kept row is >= threshold."""
    unit = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
    kept = np.zeros(len(unit), bool)
    for lo in range(0, len(unit), 1024):
        sims = unit[lo:lo + 1024] @ unit[:lo + 1024].T
        for r in range(sims.shape[0]):
            i = lo + r
            neighbours = np.nonzero(sims[r, :i] >= threshold)[0]
            kept[i] = not kept[neighbours].any()
    return kept


def compare(name: str, ids: pa.Table, codes: np.ndarray, errors: np.ndarray, work: str, threshold: float) -> list[str]:
    rng = np.random.default_rng(0)
    queries = rng.choice(len(codes), size=min(1000, len(codes)), replace=False)
    exact_knn = knn(codes, queries)
    exact_kept = greedy_kept(codes, threshold)
    rows = []
    base_total = base_embedding = None
    for dtype in ("float32", "float16", "int8"):
        codec = None if dtype == "float32" else calibrate(codes[:SAMPLE_ROWS], dtype)
        stored = codes if codec is None else codec.decode(codec.encode(codes))
        total, embedding = bytes_per_row(ids, codes, errors, codec, f"{work}/{name}-{dtype}.parquet")
        base_total, base_embedding = base_total or total, base_embedding or embedding
        found = knn(stored, queries)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact_knn, strict=True)])
        kept = greedy_kept(stored, threshold)
        agree = (kept == exact_kept).mean()
        jaccard = (kept & exact_kept).sum() / max((kept | exact_kept).sum(), 1)
        max_error = float(np.abs(stored - codes).max())
        rows.append(f"| {name} | {dtype} | {total:.1f} ({total / base_total:.2f}x) | {embedding:.1f} "
                    f"({embedding / base_embedding:.2f}x) | {recall:.3f} | {agree:.4f} | {jaccard:.4f} | "
                    f"{int(kept.sum())}/{int(exact_kept.sum())} | {max_error:.2g} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=10000, help="digit rows (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.95, help="dedup cosine threshold (dedup's default)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        lines = ["| codes | dtype | bytes/row, shard (vs float32) | bytes/row, embedding column | kNN recall@10 "
                 "| dedup same decision | dedup kept Jaccard | kept (this/float32) | max abs error |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for name, (pattern, model) in (("digits", train_digits(work, args.digits, args.epochs)),
                                       ("photos", train_photos(work, args.epochs))):
            ids, codes, errors = encode_all(pattern, model)
            print(f"{name}: {len(codes)} rows x {codes.shape[1]} dims", flush=True)
            lines += compare(name, ids, codes, errors, work, args.threshold)
    print("\n".join(lines))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.perf_counter() - started:.0f}s, peak RSS {peak:.0f} MiB; dedup threshold {args.threshold} "
          "(exact greedy in numpy); recall over 1000 random queries, exact Euclidean kNN")
    return 0


if __name__ == "__main__":
    sys.exit(main())
