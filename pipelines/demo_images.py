"""`ae-tf demo --images` / `make demo-images`: the photo-catalogue job end to end on bundled photographs.

Writes JPEG crops of the photographs inside scikit-image and scikit-learn (with planted near duplicates:
re-encodes, small shifts, mirror images; see ae_tf.inputs.demo_images) as Parquet, trains a conv autoencoder on
them, encodes them with the Beam pipeline, finds near duplicates with the dedup pipeline, says how many of
the planted ones it found, and writes the visual report (reconstructions at full size, duplicate groups).
Defaults: 2,000 rows of 64x64 RGB, filters 16,32,64, code size 32, 8 epochs. The model is trained with
`--mirror-invariant` (ae_tf.model.families.config), so a mirrored copy embeds like its original. Each step
prints its wall-clock seconds.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pyarrow.dataset as pads

from ae_tf.inputs.demo_images import write_photo_parquet
from ae_tf.model.train import make_train_config, train
from ae_tf.report.report import ReportConfig, make_report

KEPT = "id,photo,variant,duplicate_of"


def planted_found(dedup_dir: str) -> dict[str, tuple[int, int]] | None:
    """{variant: (found, planted)}: a planted copy is found when it shares a cluster with its original."""
    from pipelines.parts.dedup_plan import ANNOTATED, CLUSTER_ID

    try:
        table = pads.dataset(os.path.join(dedup_dir, ANNOTATED), format="parquet").to_table(
            columns=["id", "variant", "duplicate_of", CLUSTER_ID])
    except (FileNotFoundError, ValueError, KeyError):
        return None
    ids = table.column("id").to_numpy()
    cluster = dict(zip(ids, table.column(CLUSTER_ID).to_pylist(), strict=True))
    variants = np.asarray(table.column("variant").to_pylist())
    sources = table.column("duplicate_of").to_numpy()
    out = {}
    for variant in sorted(set(variants) - {"original"}):
        rows = np.flatnonzero(variants == variant)
        found = sum(1 for r in rows if cluster.get(ids[r]) is not None and cluster.get(ids[r]) == cluster.get(sources[r]))
        out[variant] = (found, len(rows))
    return out


def run_image_demo(args: argparse.Namespace) -> int:
    from pipelines import dedup, encode

    rows = args.rows or 2000
    size = args.image_size
    data_dir = os.path.join(args.workdir, "data")
    model_dir = os.path.join(args.workdir, "model")
    out_dir = os.path.join(args.workdir, "embeddings")
    dedup_dir = os.path.join(args.workdir, "dedup")
    started = time.perf_counter()
    files = write_photo_parquet(data_dir, rows=rows, size=size)
    print(f"[1/5] data       {rows:,} JPEG crops of {size}x{size} from the photographs inside scikit-image and "
          f"scikit-learn ({time.perf_counter() - started:.1f}s), {len(files)} Parquet files under {data_dir}")

    config = make_train_config(os.path.join(data_dir, "*.parquet"), "image", model_dir, args.code_size,
                               family="conv", image_size=str(size), channels=3, filters=args.filters,
                               epochs=args.epochs, batch_size=64, patience=3, mirror_invariant=True)
    step = time.perf_counter()
    training = train(config).contract.training
    print(f"[2/5] model      {model_dir}: conv {args.filters}, code {args.code_size}, mirror-invariant, "
          f"{training['epochs_run']} epochs ({training['schedule']['passes_per_epoch']} pass each) on "
          f"{training['device']}, validation loss {training['validation_loss']:.4f} ({time.perf_counter() - step:.1f}s: "
          f"fit {training['seconds']:.1f}s, then calibration and export)")

    step = time.perf_counter()
    manifest = encode.run(["--model", model_dir, "--input", os.path.join(data_dir, "*.parquet"),
                           "--output", out_dir, "--keep-columns", KEPT])
    print("[3/5] embeddings (Beam pipeline, local in-process runner)")
    print(encode.summarize(manifest, time.perf_counter() - step))

    step = time.perf_counter()
    summary = dedup.run(["--input", out_dir, "--output", dedup_dir, "--threshold", str(args.threshold)])
    print(f"[4/5] dedup      (Beam pipeline, cosine >= {args.threshold})")
    print(dedup.summarize(summary, time.perf_counter() - step))
    found = planted_found(dedup_dir)
    if found:
        print("planted    " + ", ".join(f"{v}: {f}/{n} found" for v, (f, n) in found.items()))

    step = time.perf_counter()
    report = make_report(ReportConfig(model=model_dir, output=os.path.join(args.workdir, "report"),
                                      embeddings=out_dir, dedup=dedup_dir, color_by="photo"))
    print(f"[5/5] report     {report.html} ({len(report.figures)} figures: "
          f"{', '.join(f.title.lower() for f in report.figures)}) ({time.perf_counter() - step:.1f}s)")
    print(f"total      {time.perf_counter() - started:.1f}s")
    return 0
