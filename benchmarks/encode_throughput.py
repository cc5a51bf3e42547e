"""Encode throughput: the Beam pipeline against a hand-written loop doing the same work, in one run.

    python benchmarks/encode_throughput.py [--rows 2000000] [--dim 64] [--repeats 2]

(a) bare loop, one process: pyarrow reads record batches, the SavedModel's `encode_and_score` runs on each,
    pyarrow writes zstd Parquet; (b) `pipelines.encode` on the local in-process runner over the same files.
Each run is a fresh subprocess so its peak memory (max RSS) is its own. Both are also run on a quarter of
the rows, to show whether peak memory grows with the row count. At full size (a) and (b) alternate
`--repeats` times, so a burst of load from other work on a shared machine falls on both; the ratio is that
of the median rates (every run is printed). Prints rows/s, the ratio b/a and peak memory.
Target (issues 2 and 11): b/a >= 1.0 at 2M rows; peak memory flat in the row count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ae_tf.contracts import EncodeManifest


def make_data(directory: str, rows: int, dim: int, files: int, seed: int = 0) -> None:
    """Low-rank float rows in `files` Parquet files (row groups of 65,536), written chunk by chunk."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, dim)).astype(np.float32)
    per_file = rows // files
    for i in range(files):
        with pq.ParquetWriter(os.path.join(directory, f"data-{i:03d}.parquet"),
                              pa.schema([("id", pa.int64()), ("x", pa.list_(pa.float32(), dim))])) as writer:
            for lo in range(0, per_file, 65536):
                n = min(65536, per_file - lo)
                x = rng.normal(size=(n, 8)).astype(np.float32) @ basis
                ids = np.arange(i * per_file + lo, i * per_file + lo + n, dtype=np.int64)
                writer.write_table(pa.table({"id": ids, "x": pa.FixedSizeListArray.from_arrays(x.reshape(-1), dim)}))


def train_model(data_dir: str, model_dir: str) -> None:
    from ae_tf.model.train import make_train_config, train

    train(make_train_config(os.path.join(data_dir, "data-000.parquet"), "x", model_dir, code_size=16,
                            epochs=1, batch_size=1024))


def bare_loop(data_dir: str, model_dir: str, out_dir: str, batch_rows: int) -> int:
    """What a user would write by hand: read, encode, write, one file after another."""
    from ae_tf.embeddings import encoded_batch, output_schema
    from ae_tf.model.encoder import BatchEncoder

    encoder = BatchEncoder.load(model_dir)
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    for name in sorted(os.listdir(data_dir)):
        reader = pq.ParquetFile(os.path.join(data_dir, name))
        schema = output_schema(reader.schema_arrow, ["id"], encoder.code_size, encoder.version)
        with pq.ParquetWriter(os.path.join(out_dir, name), schema, compression="zstd") as writer:
            for batch in reader.iter_batches(batch_size=batch_rows, columns=["x", "id"]):
                embedding, error = encoder.encode(batch)
                writer.write_batch(encoded_batch(batch, embedding, error, schema))
                rows += batch.num_rows
    return rows


def beam_pipeline(data_dir: str, model_dir: str, out_dir: str, batch_rows: int) -> int:
    from pipelines import encode

    manifest = encode.run(["--model", model_dir, "--input", os.path.join(data_dir, "*.parquet"),
                           "--output", out_dir, "--batch-rows", str(batch_rows)])
    return EncodeManifest.from_dict(manifest).rows_out


def child(mode: str, data_dir: str, model_dir: str, out_dir: str, batch_rows: int) -> None:
    """Imports happen before the clock starts (both sides pay the same ~3s TensorFlow import);
    model loading, reading, encoding and writing (and, for Beam, launching the pipeline) are timed."""
    import tensorflow  # noqa: F401  (ae_tf imports it lazily: without this its import would be timed)

    import ae_tf.model.encoder  # noqa: F401
    import pipelines.encode  # noqa: F401

    started = time.perf_counter()
    run = bare_loop if mode == "bare" else beam_pipeline
    rows = run(data_dir, model_dir, out_dir, batch_rows)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "rows": rows, "seconds": seconds, "peak_mb": peak_mb}))


def measure(mode: str, data_dir: str, model_dir: str, work: str, batch_rows: int) -> dict:
    out_dir = os.path.join(work, f"out-{mode}-{os.path.basename(data_dir)}")
    shutil.rmtree(out_dir, ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--data", data_dir, "--model", model_dir,
                           "--out", out_dir, "--batch-rows", str(batch_rows)],
                          capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--batch-rows", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=2, help="alternating (a), (b) runs at full size")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--child", choices=["bare", "beam"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.data, args.model, args.out, args.batch_rows)

    work = args.workdir or tempfile.mkdtemp(prefix="ae_tf_bench_")
    try:
        sizes = {"full": args.rows, "quarter": args.rows // 4}
        for name, rows in sizes.items():
            make_data(os.path.join(work, name), rows, args.dim, args.files)
        model_dir = os.path.join(work, "model")
        train_model(os.path.join(work, "quarter"), model_dir)
        print(f"encode throughput: {args.rows:,} rows x {args.dim} floats, {args.files} files, "
              f"batches of {args.batch_rows:,}, {os.cpu_count()} cores")
        runs = [("full", "bare"), ("full", "beam")] * max(1, args.repeats) + [("quarter", "bare"), ("quarter", "beam")]
        results = [(name, mode, measure(mode, os.path.join(work, name), model_dir, work, args.batch_rows))
                   for name, mode in runs]
        print(f"{'run':<28}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}")
        for name, mode, r in results:
            label = f"{'(a) bare loop' if mode == 'bare' else '(b) Beam pipeline'}, {name}"
            print(f"{label:<28}{r['rows']:>12,}{r['seconds']:>10.2f}{r['rows'] / r['seconds']:>12,.0f}{r['peak_mb']:>10.0f}")

        def median_rate(mode: str) -> float:
            return float(np.median([r["rows"] / r["seconds"] for n, m, r in results if n == "full" and m == mode]))

        ratio = median_rate("beam") / median_rate("bare")
        full_b = max(r["peak_mb"] for n, m, r in results if n == "full" and m == "beam")
        growth = full_b / next(r["peak_mb"] for n, m, r in results if n == "quarter" and m == "beam")
        print(f"median rows/s at {args.rows:,} rows over {max(1, args.repeats)} alternating runs each: "
              f"(a) {median_rate('bare'):,.0f}, (b) {median_rate('beam'):,.0f}")
        print(f"ratio b/a at {args.rows:,} rows: {ratio:.2f} (target >= 1.00)")
        print(f"Beam peak memory, {args.rows:,} rows vs a quarter of them: x{growth:.2f} (flat is ~1.0)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
