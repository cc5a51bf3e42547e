"""`ae-tf encode` on gs:// (a local GCS emulator) against the same run on local files, in one run.

    python benchmarks/gcs_encode.py [--rows 50000] [--dim 64] [--repeats 2]

Each run is the whole command a user types, `ae-tf encode --model M --input I --output O`, in a fresh
process (TensorFlow import, model load, planning, Beam, publishing), timed from start to exit:
  (a) local files: input, output and model on the local disk;
  (b) gs:// data: input and output in the emulator's bucket, model on the local disk;
  (c) gs:// everything: the model directory in the bucket too (staged to the local cache on first load).
The emulator is `gcp-storage-emulator` (the test extra), started on a free localhost port with
STORAGE_EMULATOR_HOST pointing at it; no credentials exist on the machine. Prints seconds and peak memory
(max RSS of the command's process) per run, the median of --repeats, and the ratios to (a).
Target (issue 12): (b) within 2x of (a). Also times Beam's own GCS client creation on this machine (no
credentials) as Beam does it and with pipelines.runner.gcs_auth's skip: the wait the fix removes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

from encode_throughput import make_data, train_model  # noqa: E402
from gcs_emulator import BUCKET, running_emulator  # noqa: E402


def timed_command(argv: list[str], env: dict) -> tuple[float, float]:
    """(seconds, peak MB) of one command, measured on its own process."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    output = process.stdout.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{output[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


LOOKUP = ("import time; from apache_beam.io.gcp import gcsio; from apache_beam.options.pipeline_options import "
          "PipelineOptions; t = time.perf_counter(); gcsio.create_storage_client(PipelineOptions()); "
          "print(time.perf_counter() - t)")


def credential_lookup_seconds(env: dict, skip: bool) -> float:
    """Beam's own storage-client creation in a fresh process, with or without pipelines.runner.gcs_auth's skip."""
    code = ("from pipelines.runner.gcs_auth import skip_credential_lookup; skip_credential_lookup(); " if skip else "") + LOOKUP
    if not skip:
        env = {k: v for k, v in env.items() if k != "STORAGE_EMULATOR_HOST"}  # what Beam alone does offline
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="ae_tf_gcs_bench_")
    try:
        data, model = os.path.join(work, "data"), os.path.join(work, "model")
        make_data(data, args.rows, args.dim, args.files)
        train_model(data, model)
        with running_emulator() as host:
            env = {**os.environ, "STORAGE_EMULATOR_HOST": host, "GOOGLE_CLOUD_PROJECT": "bench",
                   "AE_TF_CACHE_DIR": os.path.join(work, "cache"), "TF_CPP_MIN_LOG_LEVEL": "3"}
            os.environ.update(env)
            from ae_tf import storage

            root = f"gs://{BUCKET}/bench"
            for name in sorted(os.listdir(data)):
                storage.copy_file(os.path.join(data, name), f"{root}/data/{name}")
            for path in storage.walk_files(model):
                storage.copy_file(path, f"{root}/model/{os.path.relpath(path, model)}")

            runs = {
                "(a) local files": (model, os.path.join(data, "*.parquet"), os.path.join(work, "out")),
                "(b) gs:// data, local model": (model, f"{root}/data/*.parquet", f"{root}/out-b"),
                "(c) gs:// data and model": (f"{root}/model", f"{root}/data/*.parquet", f"{root}/out-c"),
            }
            results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, (m, i, o) in runs.items():
                    argv = [sys.executable, "-m", "ae_tf_cli", "encode", "--model", m, "--input", i,
                            "--output", o, "--overwrite", "--progress-interval", "0"]
                    results[name].append(timed_command(argv, env))
            rows = sum(1 for _ in storage.glob(f"{root}/out-b/part-*.parquet"))
            lookup = {skip: credential_lookup_seconds(env, skip) for skip in (False, True)}
        print(f"ae-tf encode, {args.rows:,} rows x {args.dim} floats in {args.files} files, {os.cpu_count()} cores, "
              f"median of {args.repeats} (gs:// = gcp-storage-emulator on localhost, {rows} output shards)")
        print(f"{'run':<32}{'seconds':>10}{'x (a)':>8}{'peak MB':>10}   all seconds")
        base = statistics.median(s for s, _ in results["(a) local files"])
        for name, measured in results.items():
            seconds = statistics.median(s for s, _ in measured)
            peak = max(p for _, p in measured)
            every = ", ".join(f"{s:.1f}" for s, _ in measured)
            print(f"{name:<32}{seconds:>10.2f}{seconds / base:>8.2f}{peak:>10.0f}   {every}")
        ratio = statistics.median(s for s, _ in results["(b) gs:// data, local model"]) / base
        print(f"gs:// encode / local encode: {ratio:.2f} (target <= 2.00)")
        print(f"Beam's GCS client creation without credentials: {lookup[False]:.2f}s as Beam does it, "
              f"{lookup[True]:.2f}s with the look-up skipped (emulator set or --no_auth)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
