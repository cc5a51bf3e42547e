"""Reading results: ae_tf.read_embeddings, and the README's pandas / polars / DuckDB snippets on real outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ae_tf
from ae_tf.embeddings import IncompleteOutputError, embedding_array


def write_output(directory, x: np.ndarray, shards: int = 2, success: bool = True, ids=None) -> None:
    """An output directory as the pipelines write it: shards, _SUCCESS, and an `_pca/` folder beside."""
    os.makedirs(directory / "_pca", exist_ok=True)
    (directory / "_pca" / "pca.json").write_text("{}")
    ids = np.arange(len(x), dtype=np.int64) * 10 if ids is None else ids
    bounds = np.linspace(0, len(x), shards + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pq.write_table(pa.table({"id": ids[lo:hi], "embedding": embedding_array(x[lo:hi]),
                                 "reconstruction_error": np.zeros(hi - lo, np.float32)}),
                       directory / f"part-{i:05d}-of-{shards:05d}.parquet")
    if success:
        (directory / "_SUCCESS").write_text(json.dumps({"rows_out": len(x)}))


def test_reads_an_output_directory_in_file_order(tmp_path):
    x = np.random.default_rng(0).normal(size=(250, 6)).astype(np.float32)
    write_output(tmp_path / "out", x, shards=3)
    ids, matrix = ae_tf.read_embeddings(str(tmp_path / "out"))
    np.testing.assert_array_equal(ids, np.arange(250) * 10)
    np.testing.assert_array_equal(matrix, x)
    assert matrix.dtype == np.float32


def test_globs_single_files_other_columns_and_ids(tmp_path):
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(40)], "reduced": embedding_array(x),
                             "vector": pa.array(x.tolist(), type=pa.list_(pa.float64()))}), tmp_path / "a.parquet")
    ids, matrix = ae_tf.read_embeddings(str(tmp_path / "a.parquet"), column="reduced")
    assert list(ids[:2]) == ["k0", "k1"]  # no `id` column: the first other column
    ids, matrix = ae_tf.read_embeddings(str(tmp_path / "*.parquet"), column="vector", id_column="key")
    np.testing.assert_allclose(matrix, x)  # variable-length list<double> works too
    pq.write_table(pa.table({"embedding": embedding_array(x)}), tmp_path / "b.parquet")
    ids, _ = ae_tf.read_embeddings(str(tmp_path / "b.parquet"))
    np.testing.assert_array_equal(ids, np.arange(40))  # no other column: row numbers


def test_incomplete_outputs_and_bad_columns_are_clear_errors(tmp_path):
    x = np.ones((10, 2), np.float32)
    write_output(tmp_path / "running", x, success=False)
    with pytest.raises(IncompleteOutputError, match="no _SUCCESS yet"):
        ae_tf.read_embeddings(str(tmp_path / "running"))
    ids, _ = ae_tf.read_embeddings(str(tmp_path / "running" / "part-*.parquet"))  # a glob reads anyway
    assert len(ids) == 10
    with pytest.raises(ValueError, match="column 'codes' not found"):
        ae_tf.read_embeddings(str(tmp_path / "running" / "part-*.parquet"), column="codes")
    with pytest.raises(FileNotFoundError, match="no Parquet file"):
        ae_tf.read_embeddings(str(tmp_path / "nothing"))


def test_import_ae_tf_stays_cheap():
    code = ("import sys, ae_tf; assert 'pyarrow' not in sys.modules and 'apache_beam' not in sys.modules; "
            "f = ae_tf.read_embeddings; print(f.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ae_tf.embeddings"


def test_readme_snippets_read_reduce_and_dedup_outputs(tmp_path):
    import duckdb
    import pandas as pd
    import polars as pl

    from pipelines import dedup, reduce

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 32)).astype(np.float32)  # random 32-d rows are never near duplicates
    x[150:160] = x[0]  # ten copies of row 0
    write_output(tmp_path / "embeddings", x, ids=np.arange(300, dtype=np.int64))
    reduce.run(["--input", str(tmp_path / "embeddings"), "--output", str(tmp_path / "reduced"), "--components", "2"])
    dedup.run(["--input", str(tmp_path / "embeddings"), "--output", str(tmp_path / "dedup")])
    os.chdir(tmp_path)  # the snippets use relative paths

    ids, reduced = ae_tf.read_embeddings("reduced", column="reduced")
    assert reduced.shape == (300, 2)
    df = pd.read_parquet("reduced")  # _pca/ and _SUCCESS are skipped
    assert np.stack(df["reduced"].to_numpy()).shape == (300, 2)

    kept = pd.read_parquet("dedup/deduplicated")
    assert len(kept) == 290
    pairs = pd.read_parquet("dedup/pairs").sort_values("similarity")
    # 11 identical rows: each of the 10 removed copies is paired with the kept row 0 (not 55 pairs)
    assert len(pairs) == 10 and pairs["exact"].all() and set(pairs["id_a"]) == {0}
    clusters = (pl.read_parquet("dedup/annotated/part-*.parquet")
                .group_by("cluster_id").len().filter(pl.col("len") > 1))
    assert clusters.rows() == [(0, 11)]
    biggest = duckdb.sql("""
        SELECT cluster_id, count(*) AS rows, min(max_similarity) AS closest
        FROM read_parquet('dedup/annotated/part-*.parquet')
        GROUP BY cluster_id HAVING count(*) > 1 ORDER BY rows DESC LIMIT 10""").fetchall()
    assert biggest[0][:2] == (0, 11)
