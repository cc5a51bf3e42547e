"""Image encode throughput: `ae-tf encode` against a hand-written loop on real photos, in one run.

    python benchmarks/image_encode.py [--rows 2000] [--image-size 256] [--filters 32,64,128,256] [--code-size 128]

Data: 256x256 JPEG crops (random position and scale, some mirrored) of the photographs that ship inside
scikit-learn (`load_sample_images`: china, flower) and scikit-image (the photo files in `skimage/data`
of its wheel), in one Parquet file of `id` + `image` bytes.
Model: the README's product example, `--model conv --image-size 256 --channels 3 --filters 32,64,128,256
--code-size 128`, built and exported untrained (throughput does not depend on the weights, and training it
on 2 CPU cores runs at ~3 images/s).

(a) hand loop, one process: pyarrow reads batches of 256 rows, the SavedModel's `encode_and_score` runs on
    the bytes of each, pyarrow writes zstd Parquet;
(b) `pipelines.encode` (what `ae-tf encode` runs) at default flags on the local in-process runner.
Each run is a fresh subprocess so its peak memory (max RSS) is its own; (b) is also run on a quarter of the
rows, to show that peak memory does not grow with the row count. (a) and (b) alternate `--repeats` times
(a, b, a, b, ...), so a burst of load from other work on a shared machine falls on both sides; the ratio is
of the median rates.
Prints images/s, the ratio b/a and peak memory. Target (issue 11): b/a >= 1.0, peak <= 4 GB.
"""

from __future__ import annotations

import argparse
import io
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

LOOP_BATCH = 256
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png",
                  "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "rocket.jpg", "camera.png",
                  "brick.png", "grass.png", "gravel.png", "moon.png", "coins.png")


def bundled_photos() -> list[np.ndarray]:
    """uint8 RGB photos read from the installed scikit-learn and scikit-image packages (no download)."""
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    photos = list(load_sample_images().images)
    folder = os.path.dirname(skimage.data.__file__)
    for name in SKIMAGE_PHOTOS:
        path = os.path.join(folder, name)
        if os.path.exists(path):  # files of the wheel; others would be fetched by pooch, which we never do
            photos.append(np.asarray(Image.open(path).convert("RGB")))
    return photos


def photo_crops(rows: int, side: int, seed: int = 0) -> list[bytes]:
    """`rows` JPEG crops of side x side from random positions and scales of the bundled photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(p) for p in bundled_photos()]
    out = []
    for i in range(rows):
        photo = photos[i % len(photos)]
        scale = side / min(photo.size) * rng.uniform(1.0, 2.0)
        picture = photo.resize((max(side, round(photo.width * scale)), max(side, round(photo.height * scale))))
        x, y = rng.integers(0, picture.width - side + 1), rng.integers(0, picture.height - side + 1)
        crop = picture.crop((int(x), int(y), int(x) + side, int(y) + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def make_data(directory: str, rows: int, side: int) -> None:
    os.makedirs(directory, exist_ok=True)
    images = photo_crops(rows, side)
    pq.write_table(pa.table({"id": np.arange(rows, dtype=np.int64), "image": pa.array(images, pa.binary())}),
                   os.path.join(directory, "photos.parquet"))


def export_untrained(model_dir: str, side: int, filters: str, code_size: int) -> None:
    """The README's conv product model at its real size, exported with its initial weights."""
    from ae_tf.inputs.features import IMAGE, FeatureSpec
    from ae_tf.inputs.images import ImageSpec
    from ae_tf.model.export import export_model
    from ae_tf.model.families.config import ModelConfig
    from ae_tf.model.families.factory import build_model, input_layer

    image = ImageSpec(side, side, 3)
    spec = FeatureSpec(IMAGE, ("image",), image.size, image=image)
    config = ModelConfig(code_size=code_size, family="conv", filters=tuple(int(f) for f in filters.split(",")))
    prepare, normalization = input_layer(spec)
    model = build_model(config, spec, prepare)
    model(np.zeros((1, *image.shape), np.float32))  # build the weights
    export_model(model, model_dir, {"family": "conv", "code_size": code_size, "feature_spec": spec.to_dict(),
                                    "normalization": normalization, "model": model.describe(),
                                    "training": {"note": "untrained: exported for a throughput benchmark"}})


def hand_loop(data_dir: str, model_dir: str, out_dir: str) -> int:
    """What a user would write: pyarrow read, `encode_and_score` on the bytes, pyarrow write (zstd)."""
    import tensorflow as tf

    model = tf.saved_model.load(model_dir)
    encode_and_score = model.signatures["encode_and_score"]
    os.makedirs(out_dir, exist_ok=True)
    rows = 0
    for name in sorted(os.listdir(data_dir)):
        reader = pq.ParquetFile(os.path.join(data_dir, name))
        writer = None
        for batch in reader.iter_batches(batch_size=LOOP_BATCH, columns=["id", "image"]):
            out = encode_and_score(features=tf.constant(batch.column("image").to_numpy(zero_copy_only=False)))
            embedding = out["embedding"].numpy()
            table = pa.table({"id": batch.column("id"),
                              "embedding": pa.FixedSizeListArray.from_arrays(embedding.reshape(-1),
                                                                             embedding.shape[1]),
                              "reconstruction_error": out["reconstruction_error"].numpy()})
            writer = writer or pq.ParquetWriter(os.path.join(out_dir, name), table.schema, compression="zstd")
            writer.write_table(table)
            rows += batch.num_rows
        if writer is not None:
            writer.close()
    return rows


def pipeline(data_dir: str, model_dir: str, out_dir: str) -> dict:
    from pipelines import encode

    return encode.run(["--model", model_dir, "--input", data_dir, "--output", out_dir, "--progress-interval", "0"])


def child(mode: str, data_dir: str, model_dir: str, out_dir: str) -> None:
    """Imports before the clock (both sides pay the TensorFlow import); model load and all work are timed."""
    import tensorflow  # noqa: F401

    import pipelines.encode  # noqa: F401

    started = time.perf_counter()
    extra = {}
    if mode == "loop":
        rows = hand_loop(data_dir, model_dir, out_dir)
    else:
        manifest = pipeline(data_dir, model_dir, out_dir)
        manifest = EncodeManifest.from_dict(manifest)
        rows, extra = manifest.rows_out, {"model_batch_rows": manifest.model_batch_rows}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"mode": mode, "rows": rows, "seconds": seconds, "peak_mb": peak_mb, **extra}))


def measure(mode: str, data_dir: str, model_dir: str, work: str) -> dict:
    out_dir = os.path.join(work, f"out-{mode}-{os.path.basename(data_dir)}")
    shutil.rmtree(out_dir, ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, __file__, "--child", mode, "--data", data_dir, "--model", model_dir,
                           "--out", out_dir], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--filters", default="32,64,128,256")
    parser.add_argument("--code-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="alternating (a), (b) runs at full size")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory, removed afterwards")
    parser.add_argument("--child", choices=["loop", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.data, args.model, args.out)

    work = args.workdir or tempfile.mkdtemp(prefix="ae_tf_image_bench_")
    try:
        sizes = {"full": args.rows, "quarter": args.rows // 4}
        for name, rows in sizes.items():
            if not os.path.exists(os.path.join(work, name)):
                make_data(os.path.join(work, name), rows, args.image_size)
        model_dir = os.path.join(work, "model")
        if not os.path.exists(model_dir):
            export_untrained(model_dir, args.image_size, args.filters, args.code_size)
        print(f"image encode: {args.rows:,} JPEG photo crops of {args.image_size}x{args.image_size}, conv "
              f"filters {args.filters}, code {args.code_size}, {os.cpu_count()} cores")
        runs = [("(a) hand loop", "loop", "full"), ("(b) ae-tf encode", "pipeline", "full")] * max(1, args.repeats)
        runs.append(("(b) ae-tf encode", "pipeline", "quarter"))
        results = [(label, name, measure(mode, os.path.join(work, name), model_dir, work))
                   for label, mode, name in runs]
        print(f"{'run':<30}{'images':>8}{'seconds':>10}{'images/s':>10}{'peak MB':>10}")
        for label, name, r in results:
            print(f"{label + ', ' + name:<30}{r['rows']:>8,}{r['seconds']:>10.1f}{r['rows'] / r['seconds']:>10.1f}"
                  f"{r['peak_mb']:>10.0f}")
        quarter = results[-1][2]
        loops = [r for label, _, r in results[:-1] if label.startswith("(a)")]
        fulls = [r for label, _, r in results[:-1] if label.startswith("(b)")]
        full = max(fulls, key=lambda r: r["peak_mb"])
        loop_rate = float(np.median([r["rows"] / r["seconds"] for r in loops]))
        pipeline_rate = float(np.median([r["rows"] / r["seconds"] for r in fulls]))
        ratio = pipeline_rate / loop_rate
        print(f"median images/s: (a) {loop_rate:.2f}, (b) {pipeline_rate:.2f} over {len(loops)} alternating runs each")
        print(f"ratio b/a at {args.rows:,} images: {ratio:.2f} (target >= 1.00); "
              f"model batch rows (automatic): {full.get('model_batch_rows')}")
        print(f"pipeline peak memory, {args.rows:,} vs {args.rows // 4:,} images: x{full['peak_mb'] / quarter['peak_mb']:.2f} "
              f"(flat is ~1.0); {full['peak_mb'] / 1024:.2f} GB (target <= 4)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
