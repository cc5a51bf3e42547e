"""Training throughput: `ae_tf.model.train` (the Parquet input pipeline) against Keras `fit` on in-memory arrays.

    python benchmarks/train_throughput.py [--points 64:1536,128:512,256:96] [--tabular-rows 200000] [--epochs 3]

The limit is Keras `fit` of the very same model (same network, optimiser, batch size) on numpy arrays
already in memory: no reading, no decoding. Against it, in the same run:
  pipeline cache   `ae_tf.model.train.train` with `--cache memory` (what `--cache auto` picks when the rows fit)
  pipeline stream  `ae_tf.model.train.train` with `--cache none`: every pass reads the Parquet and decodes again
Images are JPEG crops of the photographs bundled in scikit-image and scikit-learn (ae_tf.inputs.demo_images), conv
model (filters 32,64,128; 32,64,128,256 at 256x256, code 128); tabular rows are 64 floats near a rank-8
subspace, dense model. Rows/s is measured over the passes after the first (the first traces the graph),
with no validation split, each mode in a fresh subprocess so its peak memory (max RSS) is its own. The
modes alternate `--repeats` times (fit, cache, stream, fit, ...) so a burst of load from other work on a
shared machine falls on all of them; each mode's figure is its median rate (every run's rate is printed).
Target (issue 11): pipeline >= 0.9x the in-memory fit.
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODES = ("fit", "cache", "stream")


def make_data(directory: str, kind: str, size: int, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    if kind == "image":
        from ae_tf.inputs.demo_images import write_photo_parquet

        write_photo_parquet(directory, rows=rows, size=size, files=2, duplicate_fraction=0.0)
        return
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(rows, 8)) @ rng.normal(size=(8, 64))).astype(np.float32)
    table = pa.table({"id": np.arange(rows), "x": pa.FixedSizeListArray.from_arrays(x.reshape(-1), 64)})
    for i, lo in enumerate(range(0, rows, rows // 2)):
        pq.write_table(table.slice(lo, rows // 2), os.path.join(directory, f"part-{i}.parquet"), row_group_size=65536)


def config_for(data_dir: str, kind: str, size: int, epochs: int, cache: str, out: str):
    from ae_tf.model.train import make_train_config

    if kind == "image":
        filters = "32,64,128,256" if size >= 256 else "32,64,128"
        return make_train_config(data_dir, "image", out, 128 if size >= 256 else 32, family="conv",
                                 image_size=str(size), channels=3, filters=filters, epochs=epochs,
                                 batch_size=32, validation_fraction=0.0, min_steps=0, cache=cache, patience=99)
    return make_train_config(data_dir, "x", out, 8, epochs=epochs, batch_size=256, validation_fraction=0.0,
                             min_steps=0, cache=cache, patience=99)


def child(mode: str, data_dir: str, kind: str, size: int, epochs: int, out: str) -> dict:
    import keras

    class PassTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    timer = PassTimer()
    if mode == "fit":
        from ae_tf.inputs.data import TRAIN
        from ae_tf.inputs.input_cache import load_part
        from ae_tf.inputs.sources import open_source
        from ae_tf.model.families import build_model, input_layer

        config = config_for(data_dir, kind, size, epochs, "memory", out)
        keras.utils.set_random_seed(0)
        source = open_source(config)
        stats = source.statistics(TRAIN)
        x = load_part(source, TRAIN, stats.count).values  # decoded, in memory: the limit
        prepare, _ = input_layer(source.spec, stats, config.model.normalization)
        model = build_model(config.model, source.spec, prepare)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        model.fit(x, batch_size=config.batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
        rows = len(x)
    else:
        from ae_tf.model.train import train

        config = config_for(data_dir, kind, size, epochs, "memory" if mode == "cache" else "none", out)
        result = train(config, callbacks=[timer])
        rows = result.metadata["training"]["rows_train"]
    later = timer.seconds[1:] or timer.seconds
    return {"rows_per_s": rows * len(later) / sum(later), "rows": rows,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure(mode: str, data_dir: str, kind: str, size: int, epochs: int, workdir: str) -> dict:
    out = os.path.join(workdir, f"model-{mode}")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out + ".run", ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, data_dir, kind, str(size), str(epochs), out],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} {kind} {size}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="64:1536,128:512,256:96", help="image SIZE:ROWS points")
    parser.add_argument("--tabular-rows", type=int, default=200_000, help="tabular rows (0: none)")
    parser.add_argument("--epochs", type=int, default=3, help="passes per run (the first is not counted)")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs of each mode")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        mode, data_dir, kind, size, epochs, out = args.child
        print(json.dumps(child(mode, data_dir, kind, int(size), int(epochs), out)))
        return 0
    points = [("image", int(s), int(r)) for s, r in (p.split(":") for p in args.points.split(",") if p)]
    if args.tabular_rows:
        points.append(("tabular", 64, args.tabular_rows))
    workdir = tempfile.mkdtemp(prefix="ae_tf_train_throughput_")
    print(f"{'data':<26}{'mode':<17}{'rows/s':>10}{'vs fit':>8}{'peak MB':>9}")
    try:
        for kind, size, rows in points:
            data_dir = os.path.join(workdir, f"{kind}-{size}")
            make_data(data_dir, kind, size, rows)
            label = f"{rows:,} photos {size}x{size}" if kind == "image" else f"{rows:,} rows x 64 floats"
            runs = {mode: [] for mode in MODES}
            for _ in range(max(1, args.repeats)):
                for mode in MODES:
                    runs[mode].append(measure(mode, data_dir, kind, size, args.epochs, workdir))
            rate = {mode: statistics.median(r["rows_per_s"] for r in runs[mode]) for mode in MODES}
            for mode in MODES:
                name = {"fit": "keras fit, numpy", "cache": "pipeline cache", "stream": "pipeline stream"}[mode]
                each = ", ".join(f"{r['rows_per_s']:.1f}" for r in runs[mode])
                peak = max(r["peak_mb"] for r in runs[mode])
                print(f"{label:<26}{name:<17}{rate[mode]:>10.1f}{rate[mode] / rate['fit']:>7.2f}x{peak:>9.0f}"
                      f"   (runs: {each})", flush=True)
            shutil.rmtree(data_dir, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("target: pipeline >= 0.9x keras fit on in-memory arrays (rows/s over passes 2..N, no validation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
