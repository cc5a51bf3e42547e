"""Dedup speed, memory and correctness against faiss exact range search, measured in one run.

    python benchmarks/dedup.py [--sizes 100000,1000000] [--datasets sparse,catalogue,digits8,digits16]
                               [--baseline /work/main] [--repeats 1] [--faiss-queries 20000] [--workdir DIR]

Datasets (benchmarks/dedup_data.py): `sparse` (the earlier benchmark's planted pairs in clustered 32-d
rows), `catalogue` (32-d, power-law cluster sizes + random-walk chains + exact copies), `digits8` and
`digits16` (the demo's jittered digits encoded by trained dense ae_tf autoencoders, code size 8 and 16;
the models are trained once per workdir). For each dataset and size, each in a fresh subprocess so
that peak memory is that run's max RSS:
  (a) `pipelines.dedup` on the local in-process runner, default flags, threshold 0.95;
  (b) faiss exact range search (IndexFlatIP on normalised rows, radius 0.95) over the same rows; above
      --faiss-all-rows rows, --faiss-queries random queries against all rows, time extrapolated linearly;
  (c) with --baseline DIR, the same pipeline from another checkout (e.g. the LSH version) on `sparse`;
      with --repeats N the two alternate N times and the ratio is that of the median times (every run is
      printed), so a burst of load from other work on a shared machine falls on both.
Checks, from the outputs: removed rows whose float64 cosine to their kept row is below the threshold
(chaining: must be 0), and the residual-duplicate rate: of 2,000 random kept rows, the share with another
kept row at >= threshold (exact, float64, against every kept row).
Targets (issue 10): not slower than faiss at 100k, >= 5x faster at 1M, peak <= 4 GB at 1M, residual <= 1%.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow.dataset as ds

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dedup_data import make_rows, write_parquet  # noqa: E402

from ae_tf.contracts import DedupOutput

THRESHOLD = 0.95
DATASETS = {"sparse": ("sparse", 32), "catalogue": ("catalogue", 32), "digits8": ("digits", 8),
            "digits16": ("digits", 16)}


def peak_mb() -> float:
    """This process's own peak RSS: VmHWM (ru_maxrss carries the parent's RSS over a fork and exec)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_pipeline(work: str, out: str) -> dict:
    from pipelines import dedup

    started = time.perf_counter()
    summary = dedup.run(["--input", os.path.join(work, "data"), "--output", out, "--threshold", str(THRESHOLD),
                         "--overwrite", "--progress-interval", "0"])
    return {"seconds": time.perf_counter() - started, "summary": summary}


def child_faiss(work: str, queries: int, all_rows: int) -> dict:
    import faiss

    matrix = np.load(os.path.join(work, "matrix.npy"))
    units = matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-30)
    units = np.ascontiguousarray(units, dtype=np.float32)
    started = time.perf_counter()
    index = faiss.IndexFlatIP(units.shape[1])
    index.add(units)
    if len(units) <= all_rows:
        chosen, scale = units, 1.0
    else:
        pick = np.random.default_rng(0).choice(len(units), queries, replace=False)
        chosen, scale = units[pick], len(units) / queries
    lims, _, _ = index.range_search(chosen, THRESHOLD)
    seconds = time.perf_counter() - started
    return {"seconds": seconds * scale, "measured_seconds": seconds, "queries": len(chosen),
            "extrapolated": scale > 1, "pairs": int(lims[-1] * scale)}


def run_child(mode: str, work: str, args, env_path: str | None = None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if env_path:
        env["PYTHONPATH"] = env_path
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--workdir", work,
           "--faiss-queries", str(args.faiss_queries), "--faiss-all-rows", str(args.faiss_all_rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(f"{mode} run on {work} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cosine64(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x, y = x.astype(np.float64), y.astype(np.float64)
    norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
    same = (x == y).all(axis=1)
    return np.where(same, 1.0, np.einsum("ij,ij->i", x, y) / np.where(norms > 0, norms, 1))


def check_output(matrix: np.ndarray, out: str, sample: int = 2000) -> dict:
    """Chaining check and residual duplicates among kept rows, independently of the pipeline's summary."""
    table = ds.dataset(DedupOutput.dataset_dir(out, DedupOutput.ANNOTATED), format="parquet").to_table(
        columns=["id", DedupOutput.CLUSTER_ID, DedupOutput.KEEP])
    rows = table.column("id").to_numpy()
    cluster, keep = np.empty(len(matrix), dtype=np.int64), np.empty(len(matrix), dtype=bool)
    cluster[rows], keep[rows] = table.column(DedupOutput.CLUSTER_ID).to_numpy(), table.column(DedupOutput.KEEP).to_numpy()
    removed = np.flatnonzero(~keep)
    below = int((cosine64(matrix[removed], matrix[cluster[removed]]) < THRESHOLD).sum())
    kept = np.flatnonzero(keep)
    units = (matrix[kept] / np.maximum(np.linalg.norm(matrix[kept], axis=1, keepdims=True), 1e-30)).astype(np.float32)
    pick = np.random.default_rng(1).choice(len(kept), min(sample, len(kept)), replace=False)
    best = np.full(len(pick), -np.inf)
    for lo in range(0, len(kept), 65536):
        sims = units[pick] @ units[lo:lo + 65536].T
        own = (pick >= lo) & (pick < lo + 65536)
        sims[np.flatnonzero(own), pick[own] - lo] = -np.inf
        arg = sims.argmax(axis=1)
        exact = cosine64(matrix[kept[pick]], matrix[kept[lo + arg]])
        best = np.maximum(best, np.where(kept[lo + arg] == kept[pick], -np.inf, exact))
    return {"kept": len(kept), "below": below, "residual": float((best >= THRESHOLD).mean()) if len(pick) else 0.0,
            "clusters": int(len(np.unique(cluster[removed])))}


def prepare(root: str, name: str, rows: int) -> tuple[str, np.ndarray]:
    kind, dim = DATASETS[name]
    work = os.path.join(root, f"{name}-{rows}")
    if not os.path.exists(os.path.join(work, "matrix.npy")):
        matrix = make_rows(kind, rows, dim, root=root)
        write_parquet(os.path.join(work, "data"), matrix)
        np.save(os.path.join(work, "matrix.npy"), matrix)
    return work, np.load(os.path.join(work, "matrix.npy"))


def compare_baseline(work: str, args, first: dict, rows: int) -> str:
    """The baseline checkout and this one, alternating (--repeats); medians of the wall times."""
    ours, theirs = [first["seconds"]], []
    for i in range(max(1, args.repeats)):
        shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
        base = run_child("pipeline", work, args, env_path=args.baseline)
        theirs.append(base["seconds"])
        if i + 1 < args.repeats:
            shutil.rmtree(os.path.join(work, "out"), ignore_errors=True)
            ours.append(run_child("pipeline", work, args)["seconds"])
    ratio = statistics.median(theirs) / statistics.median(ours)
    return (f"   sparse {rows:,} baseline ({args.baseline}): {base['peak_mb']:.0f} MB, kept "
            f"{base['summary']['rows_kept']:,}; runs (s) new {', '.join(f'{t:.1f}' for t in ours)} / baseline "
            f"{', '.join(f'{t:.1f}' for t in theirs)}; median baseline/new time {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--datasets", default="sparse,catalogue,digits8,digits16")
    parser.add_argument("--baseline", default=None, help="another checkout whose pipelines.dedup runs on `sparse`")
    parser.add_argument("--repeats", type=int, default=1, help="with --baseline: alternating runs of both on sparse")
    parser.add_argument("--faiss-queries", type=int, default=20_000)
    parser.add_argument("--faiss-all-rows", type=int, default=200_000, help="up to this many rows faiss runs whole")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--child", choices=["pipeline", "faiss"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "pipeline":
        result = child_pipeline(args.workdir, os.path.join(args.workdir, "out"))
        print(json.dumps({**result, "peak_mb": peak_mb()}))
        return
    if args.child == "faiss":
        print(json.dumps({**child_faiss(args.workdir, args.faiss_queries, args.faiss_all_rows), "peak_mb": peak_mb()}))
        return

    root = args.workdir or tempfile.mkdtemp(prefix="ae_tf_dedup_bench_")
    lines = []
    header = (f"{'dataset':<10}{'rows':>10}{'dedup s':>9}{'peak MB':>9}{'kept':>9}{'clusters':>9}{'<thr':>6}"
              f"{'residual':>9}{'faiss s':>10}{'faiss MB':>9}{'faiss/dedup':>12}")
    try:
        print(f"dedup benchmark: threshold {THRESHOLD}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
        for rows in [int(s) for s in args.sizes.split(",")]:
            for name in args.datasets.split(","):
                work, matrix = prepare(root, name, rows)
                pipe = run_child("pipeline", work, args)
                checks = check_output(matrix, os.path.join(work, "out"))
                fa = run_child("faiss", work, args)
                faiss_s = f"{fa['seconds']:.1f}" + ("*" if fa["extrapolated"] else "")
                line = (f"{name:<10}{rows:>10,}{pipe['seconds']:>9.1f}{pipe['peak_mb']:>9.0f}{checks['kept']:>9,}"
                        f"{checks['clusters']:>9,}{checks['below']:>6}{checks['residual']:>9.2%}{faiss_s:>10}"
                        f"{fa['peak_mb']:>9.0f}{fa['seconds'] / pipe['seconds']:>11.1f}x")
                summary = pipe["summary"]
                note = (f"   {name} {rows:,}: {summary['partitions']['count']} partitions, margin "
                        f"{summary['partitions']['margin']}, {summary['partitions']['guest_rows']:,} guest rows, "
                        f"{summary['partitions']['rows_corrected']:,} rows settled across partitions; pipeline's "
                        f"own residual estimate {summary['checks']['residual_duplicates']['rate']:.2%}; faiss "
                        f"{fa['pairs']:,} pairs" + (f" (measured {fa['measured_seconds']:.1f} s on {fa['queries']:,} "
                                                     f"queries, extrapolated)" if fa["extrapolated"] else ""))
                if args.baseline and name == "sparse":
                    note += "\n" + compare_baseline(work, args, pipe, rows)
                lines.append((line, note))
                print(line + "\n" + note, flush=True)
        print("\n" + header)
        for line, _ in lines:
            print(line)
        print("(* faiss time extrapolated linearly from a random subset of queries against all rows; <thr = removed "
              "rows below the threshold to their kept row; residual = sampled kept rows with another kept row >= "
              f"{THRESHOLD}, exact)")
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
