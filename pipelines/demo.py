"""`make demo` / `ae-tf demo`: the main job end to end on built-in data.

Writes a Parquet dataset from scikit-learn's bundled digits (enlarged with jitter), trains a dense
autoencoder on it, exports the SavedModel, encodes the dataset with the Beam pipeline on the local
runner, prints a summary and writes a visual report (HTML + PNG figures). Expected result (defaults,
2 CPU cores): 2.5-5 minutes (about 3 minutes of CPU time), 100,000 rows in and out, code size 8,
validation loss about 0.05 (mean squared error on the standardised pixel scale). `--images` runs the photo
demo instead (pipelines.demo_images).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Sequence

from ae_tf.commands.help import HelpFormatter
from ae_tf.inputs.demo_data import check_workdir, write_digits_parquet
from ae_tf.model.train import make_train_config, train
from ae_tf.report.report import ReportConfig, make_report
from pipelines import encode


def demo_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ae-tf demo", description=__doc__.split("\n\n")[1], formatter_class=HelpFormatter)
    p.add_argument("--workdir", default="demo_output",
                   help="folder for the data, model, embeddings and report; an existing one is DELETED and "
                        "replaced (refused if it holds anything the demo did not write)")
    p.add_argument("--rows", type=int, default=None, help="rows of demo data to generate (100,000; --images: 2,000)")
    p.add_argument("--code-size", type=int, default=None, help="embedding size (8; --images: 32)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum training epochs, early stopping may end sooner (20; --images: 8)")
    p.add_argument("--images", action="store_true",
                   help="the photo demo: crops of the photographs inside scikit-image and scikit-learn, a conv "
                        "model, encode, near-duplicate dedup and the report")
    p.add_argument("--image-size", type=int, default=64, help="--images: side of each crop in pixels")
    p.add_argument("--filters", default="16,32,64", help="--images: conv filters per stride-2 layer")
    p.add_argument("--threshold", type=float, default=0.95, help="--images: cosine similarity of near duplicates")
    return p


def clear_workdir(workdir: str) -> None:
    """Delete an earlier demo's folder (ae_tf.inputs.demo_data.check_workdir refuses any other folder)."""
    if check_workdir(workdir):
        shutil.rmtree(workdir)


def read_hint(out_dir: str) -> str:
    """The closing line: read the embeddings with what the demo installs (pyarrow, numpy), not pandas."""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd() + os.sep) else sys.executable
    code = (f"import ae_tf; labels, codes = ae_tf.read_embeddings({json.dumps(out_dir)}, id_column=\"label\"); "
            "print(codes.shape, labels[:10], codes[:3].round(2), sep=\"\\n\")")
    return f"{shlex.quote(python)} -c {shlex.quote(code)}"


def main(argv: Sequence[str] | None = None) -> int:
    args = demo_arg_parser().parse_args(argv)
    clear_workdir(args.workdir)
    if args.images:
        from pipelines.demo_images import run_image_demo

        args.code_size, args.epochs = args.code_size or 32, args.epochs or 8
        return run_image_demo(args)
    args.rows, args.code_size, args.epochs = args.rows or 100_000, args.code_size or 8, args.epochs or 20
    data_dir = os.path.join(args.workdir, "data")
    model_dir = os.path.join(args.workdir, "model")
    out_dir = os.path.join(args.workdir, "embeddings")

    started = time.perf_counter()
    files = write_digits_parquet(data_dir, rows=args.rows)
    print(f"[1/4] data       {args.rows:,} rows of jittered 8x8 digits in {len(files)} Parquet files under {data_dir}")

    config = make_train_config(os.path.join(data_dir, "*.parquet"), "pixels", model_dir, args.code_size,
                               epochs=args.epochs, batch_size=512, patience=3)
    result = train(config)
    training = result.contract.training
    print(f"[2/4] model      {model_dir}: {training['epochs_run']} epochs on {training['device']} in "
          f"{training['seconds']}s, validation loss {training['validation_loss']:.4f}")

    encode_started = time.perf_counter()
    manifest = encode.run(["--model", model_dir, "--input", os.path.join(data_dir, "*.parquet"),
                           "--output", out_dir])
    print("[3/4] embeddings (Beam pipeline, local in-process runner)")
    print(encode.summarize(manifest, time.perf_counter() - encode_started))
    report = make_report(ReportConfig(model=model_dir, output=os.path.join(args.workdir, "report"),
                                      embeddings=out_dir, color_by="label"))
    print(f"[4/4] report     {report.html} ({len(report.figures)} figures: "
          f"{', '.join(f.title.lower() for f in report.figures)})")
    print(f"total      {time.perf_counter() - started:.1f}s")
    print(f"read it    {read_hint(out_dir)}")
    return 0


if __name__ == "__main__":
    from ae_tf.commands.main import run_alone
    from pipelines.commands import DEMO

    sys.exit(run_alone(DEMO))  # this pipeline's own row: flags checked, one-line errors, no CLI table
