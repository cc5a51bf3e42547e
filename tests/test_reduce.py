"""PCA reduction: the Beam pipeline against scikit-learn's PCA on the same rows, the artifact, the contract."""

import json
import os

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import read_output
from sklearn.decomposition import PCA

from ae_tf.contracts import ReduceManifest
from ae_tf.embeddings import MODEL_VERSION_KEY, embedding_array, embedding_matrix
from ae_tf.vectors.pca import Moments, PcaFit, fit_pca, fit_sample_mask
from pipelines import reduce
from pipelines.io.parquet import MANIFEST, InputError

WIDTH = 10


def embedding_rows(rows: int, seed: int = 0) -> np.ndarray:
    """Correlated float32 vectors with a large offset (a naive sum of squares would lose digits)."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(WIDTH, WIDTH)) * np.linspace(3, 0.2, WIDTH)[:, None]
    return (rng.normal(size=(rows, WIDTH)) @ mixing + 50.0).astype(np.float32)


def write_embeddings(directory, x: np.ndarray, files: int = 3) -> None:
    """Embedding Parquet as `ae-tf encode` writes it: id, embedding, reconstruction_error, model version."""
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, len(x), files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({"id": np.arange(lo, hi, dtype=np.int64), "embedding": embedding_array(x[lo:hi]),
                          "reconstruction_error": np.linspace(0, 1, hi - lo).astype(np.float32)})
        table = table.replace_schema_metadata({MODEL_VERSION_KEY: b"v-test"})
        pq.write_table(table, os.path.join(directory, f"part-{i}.parquet"), row_group_size=128)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("embeddings")
    x = embedding_rows(900)
    write_embeddings(directory, x)
    return str(directory), x


def reduce_args(input_dir, out_dir, *extra):
    return ["--input", str(input_dir), "--output", str(out_dir), "--batch-rows", "100", *extra]


def by_id(table: pa.Table, column: str = "reduced") -> np.ndarray:
    order = np.argsort(table.column("id").to_numpy())
    return embedding_matrix(table.column(column))[order]


def test_fit_and_output_match_scikit_learn(data, tmp_path):
    input_dir, x = data
    manifest = reduce.run(reduce_args(input_dir, tmp_path / "out", "--components", "4"))
    reference = PCA(n_components=4).fit(x.astype(np.float64))

    saved = PcaFit.from_json_bytes((tmp_path / "out" / "_pca" / "pca.json").read_bytes())
    alignment = np.abs(np.sum(saved.components * reference.components_, axis=1))
    np.testing.assert_allclose(alignment, 1.0, atol=1e-9)  # same components up to sign
    np.testing.assert_allclose(saved.explained_variance, reference.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(saved.explained_variance_ratio[:4], reference.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(saved.mean, reference.mean_, rtol=1e-9)
    npz = np.load(tmp_path / "out" / "_pca" / "pca.npz")
    np.testing.assert_array_equal(npz["components"], saved.components)
    assert sorted(npz.files) == ["components", "eigenvalues", "explained_variance_ratio", "mean"]
    assert (tmp_path / "out" / "_pca" / "explained_variance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = read_output(str(tmp_path / "out"))  # readers skip _pca/ and _SUCCESS
    assert out.schema.names == ["id", "reconstruction_error", "reduced"]
    assert out.schema.field("reduced").type == pa.list_(pa.float32(), 4)
    assert out.schema.metadata[MODEL_VERSION_KEY] == b"v-test"
    sign = np.sign(np.sum(saved.components * reference.components_, axis=1))
    np.testing.assert_allclose(by_id(out), reference.transform(x.astype(np.float64)) * sign, atol=2e-4)
    np.testing.assert_array_equal(np.sort(out.column("id").to_numpy()), np.arange(len(x)))

    assert manifest["rows_in"] == manifest["rows_out"] == len(x)
    assert manifest["pca"]["n_components"] == 4 and manifest["pca"]["fit_rows"] == len(x)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["_SUCCESS", "_pca", *[f"part-{i:05d}-of-00003.parquet" for i in range(3)]])
    written = ReduceManifest.from_json((tmp_path / "out" / "_SUCCESS").read_text(), source="_SUCCESS")
    assert written.to_dict() == manifest and manifest["format"] == ReduceManifest.FORMAT  # ae_tf.contracts


def test_variance_fraction_picks_components_like_scikit_learn(data, tmp_path):
    input_dir, x = data
    manifest = reduce.run(reduce_args(input_dir, tmp_path / "out", "--variance", "0.9", "--keep-columns", "id"))
    reference = PCA(n_components=0.9).fit(x.astype(np.float64))
    assert manifest["pca"]["n_components"] == reference.n_components_ < WIDTH
    assert manifest["pca"]["selected_by"] == {"variance": 0.9}
    out = read_output(str(tmp_path / "out"))
    assert out.schema.names == ["id", "reduced"]
    assert out.schema.field("reduced").type.list_size == reference.n_components_


def test_fit_sample_fits_exactly_the_hashed_rows(data, tmp_path):
    input_dir, x = data
    manifest = reduce.run(reduce_args(input_dir, tmp_path / "out", "--components", "3", "--fit-sample", "0.3",
                                      "--seed", "7"))
    chosen = fit_sample_mask(x, 0.3, seed=7)
    assert 0.2 < chosen.mean() < 0.4 and manifest["pca"]["fit_rows"] == chosen.sum()
    reference = PCA(n_components=3).fit(x[chosen].astype(np.float64))
    saved = PcaFit.from_json_bytes((tmp_path / "out" / "_pca" / "pca.json").read_bytes())
    np.testing.assert_allclose(saved.explained_variance, reference.explained_variance_, rtol=1e-6)
    assert manifest["rows_out"] == len(x)  # the sample only fits; every row is reduced


def test_saved_fit_applies_to_new_data(data, tmp_path):
    input_dir, _ = data
    reduce.run(reduce_args(input_dir, tmp_path / "fit", "--components", "2", "--whiten"))
    saved = PcaFit.from_json_bytes((tmp_path / "fit" / "_pca" / "pca.json").read_bytes())
    new = embedding_rows(200, seed=5)
    write_embeddings(tmp_path / "new", new, files=1)
    manifest = reduce.run(reduce_args(tmp_path / "new", tmp_path / "out", "--pca-from", str(tmp_path / "fit"),
                                      "--whiten"))
    out = read_output(str(tmp_path / "out"))
    expected = (new - saved.mean) @ saved.components.T / np.sqrt(saved.explained_variance)
    np.testing.assert_allclose(by_id(out), expected, rtol=1e-4, atol=1e-4)
    assert manifest["pca"]["artifact"] == {"from": str(tmp_path / "fit")}
    assert not (tmp_path / "out" / "_pca").exists()


def test_streamed_moments_match_numpy_covariance():
    x = embedding_rows(1000).astype(np.float64) * 1e3  # mean ~5e4, spread ~1e3
    merged = Moments()
    for part in np.array_split(x, [1, 7, 400, 401]):
        merged = merged.merge(Moments.of(part))
    np.testing.assert_allclose(merged.scatter / (len(x) - 1), np.cov(x, rowvar=False), rtol=1e-10)
    assert merged.count == len(x)
    with pytest.raises(ValueError, match="at least 2 rows"):
        fit_pca(Moments.of(x[:1]), components=1)


def test_pipeline_with_test_pipeline_and_assert_that(data, tmp_path):
    input_dir, x = data
    plan = reduce.plan_reduce(input_dir, str(tmp_path / "out"), components=2, batch_rows=64)
    with TestPipeline(runner=FnApiRunner()) as p:
        manifest = reduce.build_pipeline(p, plan)
        assert_that(manifest | beam.Map(lambda m: (m["rows_out"], m["pca"]["n_components"], len(m["shards"]))),
                    equal_to([(len(x), 2, 3)]))
    assert json.loads((tmp_path / "out" / MANIFEST).read_text())["rows_out"] == len(x)


def test_bad_inputs_fail_before_any_output(data, tmp_path):
    input_dir, _ = data
    cases = [
        (["--column", "nope"], "vector column 'nope' not found"),
        (["--components", "11"], "between 1 and 10"),
        (["--fit-sample", "0"], "--fit-sample must be a fraction"),
        (["--keep-columns", "id,missing"], "column 'missing' (--keep-columns) not found"),
        (["--pca-from", str(tmp_path / "nowhere")], "no pca.json"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            reduce.run(reduce_args(input_dir, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):  # argparse: --components and --variance exclude each other
        reduce.run(reduce_args(input_dir, tmp_path / "out", "--components", "2", "--variance", "0.9"))


def test_cli_runs_reduce_and_reports_errors_in_one_line(data, tmp_path, capsys):
    from ae_tf_cli import main

    input_dir, x = data
    assert main(["reduce", "--input", input_dir, "--output", str(tmp_path / "out"), "--components", "3"]) == 0
    assert f"rows       in {len(x):,}  out {len(x):,}" in capsys.readouterr().out
    assert main(["reduce", "--input", input_dir, "--output", str(tmp_path / "out"), "--components", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ae-tf: error: ") and "not empty" in err[0]
    with pytest.raises(InputError):
        reduce.plan_reduce(input_dir, str(tmp_path / "out"))
