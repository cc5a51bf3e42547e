"""`ae-tf report`: every figure written as a real PNG of its documented size, an HTML page that embeds and
links them all, missing optional inputs skipped with a note, and bad paths as one-line errors.

Real components throughout: the session's tiny dense model, the encode pipeline's embedding Parquet,
a tiny VAE on 4x4 "images" (width 16, a perfect square), and dedup outputs laid out as `ae-tf dedup`
writes them (summary JSON with a threshold sweep, annotated rows, the deduplicated subset).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import read_output, train_tiny
from PIL import Image

from ae_tf.embeddings import embedding_array, embedding_matrix
from ae_tf.model.export import ModelDirError
from ae_tf.report import embedding_map, plots
from ae_tf.report.inputs import ReportInputError
from ae_tf.report.report import ReportConfig, make_report
from pipelines import encode

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWEEP = (0.999, 0.9995, 0.9999)
MAIN_THRESHOLD = 0.9995


@pytest.fixture(scope="module")
def embeddings(vector_model, vector_data, tmp_path_factory) -> str:
    """The session model's embeddings of its training data, with is_anomaly flags."""
    out = str(tmp_path_factory.mktemp("report_enc") / "out")
    encode.run(["--model", vector_model[0], "--input", vector_data, "--output", out, "--flag-anomalies"])
    return out


def _components(adjacency: np.ndarray) -> np.ndarray:
    """Connected components as the smallest row number in each (the dedup pipeline's cluster_id)."""
    labels = np.arange(len(adjacency))
    while True:
        nearest = np.where(adjacency, labels[None, :], len(labels)).min(axis=1)
        new = np.minimum(labels, nearest)
        new = new[new]  # follow labels to their root
        if (new == labels).all():
            return labels
        labels = new


def _counts(adjacency: np.ndarray, threshold: float) -> dict:
    clusters = _components(adjacency)
    _, sizes = np.unique(clusters, return_counts=True)
    removed = int((sizes[sizes > 1] - 1).sum())
    return {"threshold": threshold, "pairs": int(np.triu(adjacency, 1).sum()), "clusters": int((sizes > 1).sum()),
            "rows_in_clusters": int(sizes[sizes > 1].sum()), "rows_removed": removed,
            "rows_kept": len(adjacency) - removed}


@pytest.fixture(scope="module")
def dedup_dir(embeddings, tmp_path_factory) -> tuple[str, dict, np.ndarray]:
    """Brute-force near duplicates of the embeddings (exact cosine, every pair), written in the layout of
    `pipelines.dedup`: annotated/ (every row + cluster_id, keep, max_similarity), deduplicated/ (kept rows,
    input columns only), summary.json and _SUCCESS. Independent of that pipeline's code."""
    table = read_output(embeddings).sort_by("id")
    codes = embedding_matrix(table.column("embedding")).astype(np.float64)
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -1)
    cluster_id = _components(similarity >= MAIN_THRESHOLD)
    keep = cluster_id == np.arange(len(cluster_id))  # keep policy "first"
    summary = {**_counts(similarity >= MAIN_THRESHOLD, MAIN_THRESHOLD), "rows": len(codes), "keep_policy": "first",
               "sweep": [_counts(similarity >= t, t) for t in SWEEP]}
    assert summary["clusters"] >= 3, "the fixture needs some duplicate clusters to draw"
    directory = tmp_path_factory.mktemp("dedup")
    rows = table.append_column("cluster_id", pa.array(cluster_id)).append_column("keep", pa.array(keep)) \
        .append_column("max_similarity", pa.array(similarity.max(axis=1).astype(np.float32)))
    for name, part in (("annotated", rows), ("deduplicated", table.filter(pa.array(keep)))):
        os.makedirs(directory / name)
        pq.write_table(part, directory / name / "part-00000-of-00001.parquet")
    for name in ("summary.json", "_SUCCESS"):
        (directory / name).write_text(json.dumps(summary))
    return str(directory), summary, cluster_id


@pytest.fixture(scope="module")
def square_vae(tmp_path_factory) -> str:
    """A tiny VAE on rows of 16 numbers (4x4 images): reconstructions as a grid, samples from the prior."""
    directory = tmp_path_factory.mktemp("square")
    rng = np.random.default_rng(0)
    blobs = np.exp(-((np.arange(4)[None, :] - rng.uniform(0, 3, (400, 1))) ** 2))  # a bright column per row
    pixels = np.repeat(blobs[:, None, :], 4, axis=1).reshape(400, 16) + 0.05 * rng.normal(size=(400, 16))
    pq.write_table(pa.table({"id": np.arange(400), "pixels": embedding_array(pixels)}), directory / "px.parquet")
    out = str(directory / "vae")
    train_tiny(str(directory / "px.parquet"), "pixels", out, family="vae", epochs=2)
    return out


@pytest.fixture(scope="module")
def png_conv_model(tmp_path_factory) -> str:
    """A tiny conv model on a column of 8x8 PNG files (image-bytes input, decoded inside the SavedModel)."""
    from ae_tf.inputs.images import encode_png

    directory = tmp_path_factory.mktemp("png")
    images = (np.random.default_rng(1).random((200, 8, 8, 1)) * 255).astype(np.uint8)
    pq.write_table(pa.table({"id": np.arange(200), "image": pa.array(encode_png(images), pa.binary())}),
                   directory / "images.parquet")
    out = str(directory / "conv")
    train_tiny(str(directory / "images.parquet"), "image", out, family="conv", epochs=1, filters="4", read_rows=100)
    return out


def check_png(path: pathlib.Path, name: str, size: tuple[int, int] | None = None) -> bytes:
    """A non-empty, real PNG of the documented pixel size (or `size`); returns its bytes."""
    kind = plots.FIGURES[name]
    data = path.read_bytes()
    assert len(data) > 2000 and data.startswith(PNG_MAGIC), f"{path} is not a drawn PNG"
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        assert image.format == "PNG" and image.size == (size or (kind.width, kind.height)), f"{path}: {image.size}"
    return data


def check_page(report_dir: pathlib.Path, drawn: set[str], sizes: dict | None = None) -> str:
    """index.html embeds each drawn figure (the same bytes as its file) and links the file; no external
    resource; report.json lists the same figures."""
    page = (report_dir / "index.html").read_text()
    for name in drawn:
        file = plots.FIGURES[name].file
        data = check_png(report_dir / file, name, (sizes or {}).get(name))
        assert f'href="{file}"' in page
        assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in page
    embedded = re.findall(r'src="([^"]+)"', page)
    assert len(embedded) == len(drawn) and all(src.startswith("data:image/png;base64,") for src in embedded)
    assert "<script" not in page and "http://" not in page and "https://" not in page
    summary = json.loads((report_dir / "report.json").read_text())
    assert {f["file"] for f in summary["figures"]} == {plots.FIGURES[n].file for n in drawn}
    not_drawn = set(plots.FIGURES) - drawn
    assert {s["title"] for s in summary["skipped"]} == {plots.FIGURES[n].title for n in not_drawn}
    assert {p.name for p in report_dir.glob("*.png")} == {plots.FIGURES[n].file for n in drawn}
    return page


def test_full_report_with_embeddings_and_dedup(vector_model, embeddings, dedup_dir, tmp_path):
    model_dir, trained = vector_model
    dedup, summary, cluster_id = dedup_dir
    result = make_report(ReportConfig(model=model_dir, output=str(tmp_path / "r"), embeddings=embeddings,
                                      dedup=dedup, max_points=500))
    drawn = {"loss", "feature_errors", "embedding_map", "error_histogram", "cluster_sizes", "dedup_thresholds",
             "dedup_examples"}
    page = check_page(tmp_path / "r", drawn)
    captions = {f.file: f.caption for f in result.figures}
    skipped = dict(result.skipped)
    # width 12 is not a square: no image grid, per-feature errors instead; a dense model has no prior
    assert "not a perfect square" in skipped[plots.FIGURES["reconstructions"].title]
    assert "only a VAE" in skipped[plots.FIGURES["vae_samples"].title]
    # the map uses the annotated dedup rows (they carry embeddings), coloured by cluster, sampled to 500
    assert "coloured by duplicate cluster" in captions["embedding_map.png"]
    assert "500 of 1,200 rows from --dedup" in captions["embedding_map.png"]
    # cluster sizes are counted over every annotated row (rows/), not the deduplicated subset
    _, sizes = np.unique(cluster_id, return_counts=True)
    assert f"{int((sizes > 1).sum()):,} clusters of two rows or more" in captions["cluster_sizes.png"]
    assert "1,200 rows in" in captions["cluster_sizes.png"]
    # the largest clusters: kept row and members, as embedding strips (width 12 is no picture)
    assert f"(sizes {int(sizes.max()):,}" in captions["dedup_examples.png"]
    assert "embeddings (one strip per row)" in captions["dedup_examples.png"]
    # the error histogram reads the embeddings, with the model threshold
    assert "500 of 1,200 rows from --embeddings" in captions["error_histogram.png"]
    # tables: model metadata, manifest numbers and the dedup summary
    assert trained.metadata["model_version"] in page and "in 1,200, out 1,200, rejected 0" in page
    assert "Drawn as" not in captions["feature_errors.png"]  # width 12: bars
    assert "The learning rate stayed at 0.003 (not plotted)" in captions["loss.png"]
    assert "Reconstruction error equals the loss" in captions["loss.png"] and "other panels" not in captions["loss.png"]
    assert f"{summary['rows_removed']:,}" in page and "keep policy" in page
    assert "rows above" in page  # the manifest's anomaly line


def test_report_reads_the_dedup_pipeline_output(embeddings, tmp_path):
    """The real `pipelines.dedup` output directory, as users pass it (skipped where that pipeline is absent)."""
    dedup = pytest.importorskip("pipelines.dedup")
    summary = dedup.run(["--input", embeddings, "--output", str(tmp_path / "dd"), "--threshold", "0.9995",
                         "--sweep", ",".join(map(str, SWEEP))])
    model_dir = read_output(embeddings).schema.metadata[b"ae_tf.model_dir"].decode()
    result = make_report(ReportConfig(model=model_dir, output=str(tmp_path / "r"), embeddings=embeddings,
                                      dedup=str(tmp_path / "dd")))
    captions = {f.file: f.caption for f in result.figures}
    assert f"{summary['clusters']:,} clusters of two rows or more" in captions["cluster_sizes.png"]
    assert "coloured by duplicate cluster" in captions["embedding_map.png"]
    page = check_page(tmp_path / "r", {"loss", "feature_errors", "embedding_map", "error_histogram",
                                       "cluster_sizes", "dedup_thresholds", "dedup_examples"})
    biggest = np.bincount(read_output(str(tmp_path / "dd" / "annotated")).column("cluster_id").to_numpy()).max()
    assert f"(sizes {biggest:,}" in captions["dedup_examples.png"] and "embeddings" in captions["dedup_examples.png"]
    assert f"{summary['rows_removed']:,}" in page


def test_vae_report_draws_the_image_grid_and_prior_samples(square_vae, tmp_path):
    result = make_report(ReportConfig(model=square_vae, output=str(tmp_path / "r")))
    drawn = {"loss", "reconstructions", "feature_errors", "embedding_map", "error_histogram", "vae_samples"}
    page = check_page(tmp_path / "r", drawn)
    captions = {f.file: f.caption for f in result.figures}
    assert "kl" in captions["loss.png"]  # the VAE's extra history terms get their own panels
    assert "sampled from the training inputs" in captions["reconstructions.png"]
    assert "(no --embeddings)" in captions["embedding_map.png"]
    assert "32 draws" in captions["vae_samples.png"]
    assert "Drawn as the 4x4 image" in captions["feature_errors.png"]  # width 16: errors as a heatmap
    assert "`" not in page
    assert "no --dedup directory given" in page


def test_image_bytes_model_shows_decoded_images(png_conv_model, tmp_path):
    """Originals are the PNG bytes decoded by the model's own code; no per-feature bars for images."""
    result = make_report(ReportConfig(model=png_conv_model, output=str(tmp_path / "r"), image_rows=24))
    # the grid of an image model is at full size: 8 columns of 8x8 px cells with 4 px gaps, 2 pairs of rows
    check_page(tmp_path / "r", {"loss", "reconstructions", "embedding_map", "error_histogram"},
               sizes={"reconstructions": (8 * 12 + 4, 2 * (2 * 8 + 12) + 4)})
    caption = {f.file: f.caption for f in result.figures}["reconstructions.png"]
    assert "16 of the 24 rows sampled" in caption and "at full size (8x8 px each" in caption
    assert "an image model" in dict(result.skipped)[plots.FIGURES["feature_errors"].title]


def test_dedup_examples_show_image_thumbnails(png_conv_model, tmp_path):
    """Dedup rows that carry the image column: the largest clusters are drawn as decoded thumbnails."""
    from ae_tf.inputs.features import FeatureSpec
    from ae_tf.inputs.images import encode_png
    from ae_tf.model.export import read_metadata
    from ae_tf.report.dedup import dedup_examples
    from ae_tf.report.inputs import find_dedup_outputs

    images = (np.random.default_rng(2).random((30, 8, 8, 1)) * 255).astype(np.uint8)
    cluster = np.where(np.arange(30) < 12, 0, np.where(np.arange(30) < 17, 12, np.arange(30)))
    os.makedirs(tmp_path / "dd" / "annotated")
    pq.write_table(pa.table({"id": np.arange(30), "image": pa.array(encode_png(images), pa.binary()),
                             "cluster_id": cluster, "keep": cluster == np.arange(30),
                             "max_similarity": np.linspace(0.96, 0.99, 30).astype(np.float32)}),
                   tmp_path / "dd" / "annotated" / "part-00000-of-00001.parquet")
    spec = FeatureSpec.from_dict(read_metadata(png_conv_model)["feature_spec"])
    png, caption = dedup_examples(find_dedup_outputs(str(tmp_path / "dd")), spec)
    assert "(sizes 12, 5)" in caption and "`image` images" in caption
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (plots.FIGURES["dedup_examples"].width, plots.FIGURES["dedup_examples"].height)


def test_dedup_examples_fetch_thumbnails_from_the_encode_input_by_id(png_conv_model, tmp_path):
    """Dedup rows that kept only `id` (no image column): the pictures come from the encode input, by id."""
    from ae_tf.contracts import EncodeManifest
    from ae_tf.inputs.features import FeatureSpec
    from ae_tf.inputs.images import encode_png
    from ae_tf.model.export import read_metadata
    from ae_tf.report.dedup import dedup_examples
    from ae_tf.report.inputs import find_dedup_outputs, rows_by_key

    images = (np.random.default_rng(3).random((30, 8, 8, 1)) * 255).astype(np.uint8)
    data = pa.table({"id": np.arange(100, 130), "image": pa.array(encode_png(images), pa.binary())})
    inputs = [str(tmp_path / "in-0.parquet"), str(tmp_path / "in-1.parquet")]
    pq.write_table(data.slice(0, 15), inputs[0], row_group_size=4)  # several files and row groups
    pq.write_table(data.slice(15), inputs[1], row_group_size=4)
    wanted = [127, 101, 114, 115, 100]
    found = rows_by_key(inputs, "id", wanted, ["image"])
    assert found.column("id").to_pylist() == wanted
    assert found.column("image").to_pylist() == [data.column("image")[i - 100].as_py() for i in wanted]
    assert rows_by_key(inputs, "id", [100, 999], ["image"]) is None  # a key that is not there

    cluster = np.where(np.arange(30) < 12, 0, np.where(np.arange(30) < 17, 12, np.arange(30)))
    os.makedirs(tmp_path / "dd" / "annotated")
    pq.write_table(pa.table({"id": np.arange(100, 130), "cluster_id": cluster, "keep": cluster == np.arange(30),
                             "max_similarity": np.linspace(0.96, 0.99, 30).astype(np.float32)}),
                   tmp_path / "dd" / "annotated" / "part-00000-of-00001.parquet")
    spec = FeatureSpec.from_dict(read_metadata(png_conv_model)["feature_spec"])
    dedup = find_dedup_outputs(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match="neither the model's input column nor an embedding"):
        dedup_examples(dedup, spec)  # without the manifest there is nothing to draw
    manifest = EncodeManifest(rows_in=30, rows_out=30, shards=[], inputs=inputs, keep_columns=["id"])
    png, caption = dedup_examples(dedup, spec, manifest)
    assert "(sizes 12, 5)" in caption and "`image` images (fetched from the encode input by `id`)" in caption
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (plots.FIGURES["dedup_examples"].width, plots.FIGURES["dedup_examples"].height)


def test_missing_optional_inputs_are_skipped_with_a_note(vector_model, embeddings, tmp_path):
    """A model whose history and training data are gone: nothing that needs them is drawn, no error;
    given --embeddings, the map and histogram are still drawn from them."""
    model_dir = tmp_path / "moved_model"
    shutil.copytree(vector_model[0], model_dir)
    (model_dir / "assets" / "history.json").unlink()
    meta_path = model_dir / "assets" / "ae_tf_metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["data"]["inputs"] = [str(tmp_path / "gone" / "*.parquet")]
    meta_path.write_text(json.dumps(meta))

    bare = make_report(ReportConfig(model=str(model_dir), output=str(tmp_path / "bare")))
    assert bare.figures == []
    page = check_page(tmp_path / "bare", set())
    assert "no training history" in page and "pass --input GLOB" in page and "Not drawn" in page

    with_embeddings = make_report(ReportConfig(model=str(model_dir), output=str(tmp_path / "emb"),
                                               embeddings=embeddings))
    assert {f.file for f in with_embeddings.figures} == {"embedding_map.png", "error_histogram.png"}
    page = check_page(tmp_path / "emb", {"embedding_map", "error_histogram"})
    assert "coloured by is_anomaly" in page


def test_bad_paths_are_clear_errors(vector_model, vector_data, embeddings, tmp_path):
    model_dir = vector_model[0]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "part-0.parquet").write_text("not parquet")
    cases = [
        (dict(model=str(tmp_path / "nope")), ModelDirError, "nope: model directory not found"),
        (dict(model=vector_data), ModelDirError, "not a SavedModel"),
        (dict(model=model_dir, embeddings=str(tmp_path / "no_out")), ReportInputError, "--embeddings .*no_out"),
        (dict(model=model_dir, embeddings=vector_data), ReportInputError, "no 'embedding' column"),
        (dict(model=model_dir, dedup=vector_data), ReportInputError, "--dedup .*no dedup summary"),
        (dict(model=model_dir, input=str(tmp_path / "*.parquet")), ReportInputError, "--input .*no input file"),
        (dict(model=model_dir, input=embeddings), ValueError, "part-.*feature column 'vec' not found"),
        (dict(model=model_dir, embeddings=str(tmp_path / "junk")), ReportInputError,
         "junk/part-0.parquet: not a readable Parquet file"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            make_report(ReportConfig(output=str(tmp_path / "r"), **kwargs))
    assert not (tmp_path / "r").exists()  # nothing written before the inputs are known good
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        make_report(ReportConfig(model=model_dir, output=str(tmp_path / "file"), input=vector_data, input_rows=8))


def test_cli_bad_model_is_one_line_and_exit_2(tmp_path, capsys):
    from ae_tf_cli import main

    assert main(["report", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ae-tf: error: {tmp_path / 'missing'}: model directory not found"]
    assert not (tmp_path / "r").exists()


def test_cli_report_prints_the_page_and_figures(vector_model, vector_data, tmp_path, capsys):
    from ae_tf.commands.report import run as cmd_report
    from ae_tf_cli import build_parser

    defaults = {f.name: f.default for f in dataclasses.fields(ReportConfig)}
    parsed = vars(build_parser().parse_args(["report", "--model", "m", "--output", "o"]))
    assert {name: parsed[name] for name in ("input_rows", "max_points", "seed")} == \
        {name: defaults[name] for name in ("input_rows", "max_points", "seed")}  # --help shows the real ones
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "vae_samples.png").write_bytes(b"from an earlier report")
    args = build_parser().parse_args(["report", "--model", vector_model[0], "--output", str(tmp_path / "r"),
                                      "--input", vector_data, "--input-rows", "64"])
    assert cmd_report(args) == 0
    assert not (tmp_path / "r" / "vae_samples.png").exists()  # a stale figure is not left beside the page
    out = capsys.readouterr().out
    assert f"report     {tmp_path / 'r' / 'index.html'}" in out
    assert "feature_errors.png" in out and "800x500" in out and "not drawn  Duplicate cluster sizes" in out
    assert "64 rows sampled from --input" in (tmp_path / "r" / "index.html").read_text()


def test_figure_branches_without_a_model():
    """The image-model path of the grid (RGB [n, h, w, 3]), other figure branches, and the PCA behind the
    map, drawn straight from arrays."""
    rng = np.random.default_rng(0)
    images = rng.random((10, 6, 6, 3)).astype(np.float32)
    png = plots.reconstruction_grid(images, np.clip(images + 0.1, 0, 1), np.full(10, 0.01))
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (800, 400) and image.mode == "RGBA"
    # the other branches: tabular VAE samples, many features, many cluster sizes, a narrow error range
    drawn = {"vae_samples": plots.sample_heatmaps(rng.normal(size=(8, 12)), rng.normal(size=(32, 12)), "units"),
             "feature_errors": plots.feature_errors([f"f{i}" for i in range(100)], rng.random(100), "units"),
             "cluster_sizes": plots.cluster_sizes(np.arange(2, 60), singletons=7),
             "error_histogram": plots.error_histogram(rng.uniform(1, 2, 300), {})}
    for name, png in drawn.items():
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (plots.FIGURES[name].width, plots.FIGURES[name].height), name
    data = rng.normal(size=(500, 4)) * [5.0, 2.0, 0.1, 0.1]
    points, ratio = embedding_map.pca_2d(data @ np.linalg.qr(rng.normal(size=(4, 4)))[0])
    assert ratio[0] > ratio[1] > 0.1 and ratio.sum() > 0.99
    assert abs(np.corrcoef(points.T)[0, 1]) < 1e-6  # principal components are uncorrelated


def test_loss_panels_leave_out_what_repeats_or_never_changes():
    """A constant learning rate and a `reconstruction` equal to the loss get no panel of their own; a
    learning rate that was halved, and a VAE's reconstruction term, do."""
    loss = [0.5, 0.3, 0.2]
    plain = {"loss": loss, "val_loss": [0.6, 0.4, 0.3], "reconstruction": loss,
             "val_reconstruction": [0.6, 0.4, 0.3], "learning_rate": [0.003] * 3}
    assert plots.loss_panels(plain) == ([], ["the learning rate stayed at 0.003 (not plotted)",
                                             "reconstruction error equals the loss for this model (not plotted twice)"])
    vae = {"loss": loss, "reconstruction": [0.4, 0.25, 0.15], "kl": [0.1, 0.05, 0.05],
           "learning_rate": [0.003, 0.003, 0.0015]}
    assert plots.loss_panels(vae) == (["kl", "learning_rate", "reconstruction"], [])
    with Image.open(io.BytesIO(plots.loss_curves(plain))) as image:
        assert image.size == (800, 500)


def test_image_like_vector_errors_are_a_heatmap_and_captions_have_no_backticks():
    from ae_tf.report.html import Figure, render

    rng = np.random.default_rng(0)
    bars = plots.feature_errors([f"p[{i}]" for i in range(64)], rng.random(64), "units")
    grid = plots.feature_errors([f"p[{i}]" for i in range(64)], rng.random(64), "units", grid=(8, 8))
    for png in (bars, grid):
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (800, 500)
    assert grid != bars
    page = render("t", "s", [], [Figure("F", "f.png", grid, 800, 500, "Scored with the model's `score` signature.")],
                  [("G", "the SavedModel has no `sample` signature")], ["run `ae-tf encode` again"])
    assert "<code>score</code>" in page and "<code>sample</code>" in page and "<code>ae-tf encode</code>" in page
    assert "`" not in page


def test_embedding_map_coloured_by_a_kept_column(vector_model, embeddings, tmp_path):
    """--color-by: the map is coloured by the values of a kept column; an unknown column is a one-line error."""
    result = make_report(ReportConfig(model=vector_model[0], output=str(tmp_path / "r"), embeddings=embeddings,
                                      color_by="name"))
    caption = next(f.caption for f in result.figures if f.file == plots.FIGURES["embedding_map"].file)
    assert "coloured by name (the 10 most common values in colour)" in caption
    check_png(tmp_path / "r" / plots.FIGURES["embedding_map"].file, "embedding_map")
    with pytest.raises(ReportInputError, match="--color-by column 'nope' not found"):
        make_report(ReportConfig(model=vector_model[0], output=str(tmp_path / "r2"), embeddings=embeddings,
                                 color_by="nope"))
