"""PCA reduction: the Beam pipeline against scikit-learn's PCA in memory, on the same files, in one run.

    python benchmarks/reduce.py [--rows 1000000] [--dim 32] [--variance 0.95]

Data: `--rows` embeddings of `--dim` floats in 8 Parquet files (a decaying spectrum plus an offset).
(a) `pipelines.reduce` on the local in-process runner: one pass to fit (moments combined in float64),
    one pass to write `reduced`, plus the artifact; (b) what a user would write by hand: read every file
    into memory with pyarrow, `sklearn.decomposition.PCA(n_components=variance).fit_transform`, write
    Parquet. Each is a fresh subprocess (wall time, peak memory = max RSS); both write zstd Parquet.
Figures: wall time, peak memory, and agreement: components (up to sign), explained variance (relative),
and the reduced vectors joined on id.
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
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ae_tf.contracts import ReduceManifest


def make_data(directory: str, rows: int, dim: int, files: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) * np.geomspace(4.0, 0.05, dim)[:, None]
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        x = (rng.normal(size=(hi - lo, dim)) @ mixing + 3.0).astype(np.float32)
        table = pa.table({"id": np.arange(lo, hi, dtype=np.int64),
                          "embedding": pa.FixedSizeListArray.from_arrays(x.reshape(-1), dim)})
        pq.write_table(table, os.path.join(directory, f"part-{i:03d}.parquet"), row_group_size=65536)


def in_memory(data_dir: str, out_dir: str, variance: float) -> dict:
    from sklearn.decomposition import PCA

    table = ds.dataset(data_dir, format="parquet").to_table()
    x = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    started = time.perf_counter()
    pca = PCA(n_components=variance, svd_solver="full")
    reduced = pca.fit_transform(x.astype(np.float64)).astype(np.float32)
    fit_seconds = time.perf_counter() - started
    os.makedirs(out_dir, exist_ok=True)
    pq.write_table(pa.table({"id": table.column("id"), "reduced": pa.FixedSizeListArray.from_arrays(
        reduced.reshape(-1), reduced.shape[1])}), os.path.join(out_dir, "part-0.parquet"), compression="zstd")
    np.savez(os.path.join(out_dir, "..", "sklearn.npz"), components=pca.components_,
             explained_variance=pca.explained_variance_)
    return {"fit_transform_seconds": fit_seconds, "components": int(pca.n_components_)}


def child(mode: str, work: str, variance: float) -> None:
    data_dir = os.path.join(work, "data")
    if mode == "beam":
        from pipelines import reduce

        started = time.perf_counter()
        manifest = reduce.run(["--input", data_dir, "--output", os.path.join(work, "out-beam"), "--variance",
                               str(variance), "--overwrite"])
        result = {"seconds": time.perf_counter() - started, "components": ReduceManifest.from_dict(manifest).pca["n_components"]}
    else:
        import sklearn.decomposition  # noqa: F401  (import outside the clock, like Beam's)

        started = time.perf_counter()
        result = in_memory(data_dir, os.path.join(work, "out-sklearn"), variance)
        result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def measure(mode: str, work: str, variance: float) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", work, "--variance", str(variance)],
                          capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{mode} run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def reduced_by_id(directory: str) -> np.ndarray:
    table = ds.dataset(directory, format="parquet").to_table()
    matrix = table.column("reduced").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    return matrix[np.argsort(table.column("id").to_numpy())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--variance", type=float, default=0.95)
    parser.add_argument("--workdir", default=None, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--child", choices=["beam", "sklearn"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.workdir, args.variance)

    work = args.workdir or tempfile.mkdtemp(prefix="ae_tf_reduce_bench_")
    try:
        if not os.path.isdir(os.path.join(work, "data")):
            make_data(os.path.join(work, "data"), args.rows, args.dim)
        print(f"reduce: {args.rows:,} rows x {args.dim} floats, 8 files, --variance {args.variance}, "
              f"{os.cpu_count()} cores")
        beam_run = measure("beam", work, args.variance)
        sk_run = measure("sklearn", work, args.variance)

        from ae_tf.vectors.pca import PcaFit

        with open(os.path.join(work, "out-beam", "_pca", "pca.json"), "rb") as f:
            fit = PcaFit.from_json_bytes(f.read())
        reference = np.load(os.path.join(work, "sklearn.npz"))
        k = min(fit.n_components, len(reference["explained_variance"]))
        alignment = np.abs(np.sum(fit.components[:k] * reference["components"][:k], axis=1))
        variance_error = np.abs(fit.explained_variance[:k] / reference["explained_variance"][:k] - 1)
        signs = np.sign(np.sum(fit.components[:k] * reference["components"][:k], axis=1))
        diff = np.abs(reduced_by_id(os.path.join(work, "out-beam"))[:, :k] * signs
                      - reduced_by_id(os.path.join(work, "out-sklearn"))[:, :k])

        print(f"{'run':<52}{'seconds':>10}{'rows/s':>12}{'peak MB':>10}")
        for label, r in (("(a) Beam pipeline: fit pass + apply pass + artifact", beam_run),
                         ("(b) scikit-learn in memory: read, fit_transform, write", sk_run)):
            print(f"{label:<52}{r['seconds']:>10.1f}{args.rows / r['seconds']:>12,.0f}{r['peak_mb']:>10.0f}")
        print(f"    (b) of which fit_transform alone {sk_run['fit_transform_seconds']:.1f}s")
        print(f"components kept: (a) {beam_run['components']}, (b) {sk_run['components']}")
        print(f"agreement: components |cos| >= {alignment.min():.12f}; explained variance max relative error "
              f"{variance_error.max():.2e}; reduced vectors max |diff| {diff.max():.2e} (float32 output)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
