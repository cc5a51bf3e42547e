"""`ae-tf report`: the flags and the handler (the work is in ae_tf.report.report).

The report's dependencies (matplotlib, an optional extra) are imported only when the command runs.
"""

from __future__ import annotations

import argparse

from ae_tf.defaults import default_of
from ae_tf.report.report import ReportConfig


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="PNG figures and one self-contained HTML page about a model and its outputs",
        description="Write loss curves, reconstructions, an embedding map, the reconstruction-error "
                    "histogram with the anomaly threshold, dedup summaries and (VAE) prior samples as PNG "
                    "files plus REPORT_DIR/index.html, which embeds them and opens offline. A figure whose "
                    "inputs are not given is listed on the page as not drawn. Needs matplotlib: "
                    "pip install 'ae-tf[report]'.")
    p.add_argument("--model", required=True, metavar="MODEL_DIR", help="model directory (a SavedModel written by `ae-tf train`)")
    p.add_argument("--output", required=True, metavar="REPORT_DIR",
                   help="report directory to write: index.html, the PNG figures, report.json (created; "
                        "files of an earlier report there are replaced)")
    p.add_argument("--embeddings", default=None, metavar="OUT_DIR",
                   help="output directory of `ae-tf encode` with this model: map, error histogram, manifest")
    p.add_argument("--dedup", default=None, metavar="DEDUP_DIR",
                   help="output directory of `ae-tf dedup`: cluster sizes, kept/removed per threshold, "
                        "map coloured by cluster")
    p.add_argument("--input", default=None, metavar="GLOB",
                   help="Parquet glob or directory sampled for reconstructions (default: the training inputs "
                        "recorded in the model metadata)")
    p.add_argument("--input-rows", type=int, default=default_of(ReportConfig, "input_rows"),
                   metavar="N", help="input rows sampled and run through the model; image models at most 256 "
                                    "(default: %(default)s)")
    p.add_argument("--max-points", type=int, default=default_of(ReportConfig, "max_points"),
                   metavar="N", help="embedding rows sampled for the map and the histogram (default: %(default)s)")
    p.add_argument("--seed", type=int, default=default_of(ReportConfig, "seed"), help="seed for the row samples (default: %(default)s)")
    p.add_argument("--color-by", default=None, metavar="COLUMN",
                   help="colour the embedding map by this kept column of --embeddings/--dedup (e.g. a class label)")


def run(args: argparse.Namespace) -> int:
    from ae_tf.commands.precheck import local_model_metadata
    from ae_tf.model.quiet_tf import import_tensorflow
    from ae_tf.report.report import ReportConfig, make_report

    config = ReportConfig(
        model=args.model, output=args.output, embeddings=args.embeddings, dedup=args.dedup, input=args.input,
        input_rows=args.input_rows, image_rows=min(256, args.input_rows), max_points=args.max_points,
        seed=args.seed, color_by=args.color_by)
    config.validate()
    local_model_metadata(args.model)  # a mistyped model path: an error before TensorFlow loads
    import_tensorflow()
    result = make_report(config)
    print(f"report     {result.html}")
    for figure in result.figures:
        print(f"figure     {figure.file:<22} {figure.width}x{figure.height}  {figure.title}")
    for title, reason in result.skipped:
        print(f"not drawn  {title}: {reason}")
    return 0
