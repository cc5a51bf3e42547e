"""`ae-tf tfds-to-parquet`: a TensorFlow Datasets split written as Parquet (the work is in
ae_tf.inputs.tfds_source)."""

from __future__ import annotations

import argparse

from ae_tf.commands.help import HelpFormatter


def add_parser(sub) -> None:
    p = sub.add_parser("tfds-to-parquet", help="write a TensorFlow Datasets split as Parquet (images as bytes)",
                       formatter_class=HelpFormatter)
    p.add_argument("name", metavar="NAME[:SPLIT]", help="TFDS dataset, e.g. mnist or fashion_mnist:test")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory for part-NNNNN.parquet")
    p.add_argument("--data-dir", default=None, help="where TFDS keeps (and downloads) datasets")
    p.add_argument("--rows-per-file", type=int, default=50_000, help="rows in each Parquet file")
    p.add_argument("--limit", type=int, default=None, help="write only the first N rows")
    p.add_argument("--overwrite", action="store_true", help="replace part files in a non-empty OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from ae_tf.inputs.tfds_source import tfds_to_parquet
    from ae_tf.model.quiet_tf import import_tensorflow

    import_tensorflow()

    summary = tfds_to_parquet(args.name, args.out_dir, args.data_dir, args.rows_per_file, args.overwrite, args.limit)
    print(f"dataset    {summary['dataset']} split {summary['split']}: {summary['rows']:,} rows")
    print(f"columns    {', '.join(summary['columns'])}")
    print(f"output     {args.out_dir.rstrip('/')}/part-*.parquet ({len(summary['files'])} file(s))")
    return 0
