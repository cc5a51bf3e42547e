"""Near-duplicate detection: the Beam pipeline against brute force on small data, and the LSH math."""

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
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components as scipy_components

from ae_tf.duplicates import bucket_pairs, choose_kept, connected_components, pack_entries, unit_rows
from ae_tf.embeddings import embedding_array, embedding_matrix
from ae_tf.lsh import BandHasher, banding_recall, choose_banding, collision_probability, sketch_max_distance
from pipelines import dedup
from pipelines.parquet import MANIFEST, InputError

DIM = 12


def planted_rows(rows: int = 1000, seed: int = 0) -> np.ndarray:
    """Clustered rows; a tenth of them get a near copy at a cosine drawn from [0.86, 1.0] (some identical),
    so pairs land on both sides of 0.9, 0.95 and 0.98; plus two zero vectors."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, DIM))
    n_copies = rows // 10
    base = centres[rng.integers(0, 10, rows - n_copies - 2)] + 1.2 * rng.normal(size=(rows - n_copies - 2, DIM))
    x = base[rng.choice(len(base), n_copies, replace=False)]
    cosine = np.where(rng.random(n_copies) < 0.15, 1.0, rng.uniform(0.86, 1.0, n_copies))
    direction = rng.normal(size=x.shape)
    direction -= (np.sum(direction * x, 1) / np.sum(x * x, 1))[:, None] * x
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    copies = x + direction * (np.linalg.norm(x, axis=1) * np.tan(np.arccos(cosine)))[:, None]
    data = np.concatenate([base, copies, np.zeros((2, DIM))]).astype(np.float32)
    return data[rng.permutation(len(data))]


def write_rows(directory, x: np.ndarray, files: int = 3) -> None:
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, len(x), files + 1).astype(int)
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({"id": [f"row-{j}" for j in range(lo, hi)], "embedding": embedding_array(x[lo:hi]),
                          "score": np.arange(lo, hi, dtype=np.float64)})
        pq.write_table(table, os.path.join(directory, f"part-{i}.parquet"), row_group_size=120)


def brute_force_similarity(x: np.ndarray) -> np.ndarray:
    """Cosine of every pair in float64; identical rows 1.0 (zero vectors too), a zero vector 0.0 to others."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    units = np.divide(x, norms[:, None], out=np.zeros(x.shape), where=norms[:, None] > 0)
    similarity = units @ units.T
    identical = (x[:, None, :] == x[None, :, :]).all(axis=2)
    similarity[identical] = 1.0
    return similarity


def brute_force_pairs(similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.triu_indices(len(similarity), 1)
    keep = similarity[a, b] >= threshold
    return a[keep], b[keep]


def components(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Cluster id = smallest row of each connected component (scipy)."""
    _, labels = scipy_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n)), directed=False)
    first = np.full(labels.max() + 1, n)
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


def counts(a, b, n):
    cluster = components(a, b, n)
    sizes = np.bincount(cluster, minlength=n)
    return {"pairs": len(a), "clusters": int((sizes >= 2).sum()), "rows_removed": int((sizes[sizes >= 2] - 1).sum())}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("planted")
    x = planted_rows()
    write_rows(directory, x)
    return str(directory), x


def dedup_args(input_dir, out_dir, *extra):
    return ["--input", str(input_dir), "--output", str(out_dir), "--batch-rows", "100", *extra]


def row_of(ids) -> np.ndarray:
    return np.array([int(i.split("-")[1]) for i in ids])


def test_pairs_clusters_and_counts_match_brute_force(data, tmp_path):
    input_dir, x = data
    n = len(x)
    summary = dedup.run(dedup_args(input_dir, tmp_path / "out", "--sweep", "0.9,0.95,0.98", "--rounds", "3",
                                   "--max-rows-per-split", "240",  # files cut at row groups: 6 splits
                                   "--recall", "0.9999"))  # exact agreement: recall ~1 at 0.9
    similarity = brute_force_similarity(x)
    a, b = brute_force_pairs(similarity, 0.95)
    assert len(a) > 40 and len(brute_force_pairs(similarity, 0.9)[0]) > len(a)  # the data has pairs both sides

    pairs = read_output(str(tmp_path / "out" / "pairs"))
    got_a, got_b = row_of(pairs.column("id_a").to_pylist()), row_of(pairs.column("id_b").to_pylist())
    assert sorted(zip(got_a, got_b, strict=True)) == sorted(zip(a, b, strict=True))  # all found, none below
    np.testing.assert_allclose(pairs.column("similarity").to_numpy(), similarity[got_a, got_b], atol=1e-6)
    np.testing.assert_array_equal(pairs.column("exact").to_numpy(), (x[got_a] == x[got_b]).all(axis=1))

    annotated = read_output(str(tmp_path / "out" / "annotated"))
    assert annotated.schema.names == ["id", "embedding", "score", "cluster_id", "keep", "max_similarity"]
    rows = row_of(annotated.column("id").to_pylist())
    order = np.argsort(rows)
    cluster = components(a, b, n)
    np.testing.assert_array_equal(annotated.column("cluster_id").to_numpy()[order], cluster)
    np.testing.assert_array_equal(annotated.column("keep").to_numpy()[order], np.arange(n) == cluster)  # first
    np.fill_diagonal(similarity, -np.inf)
    best = similarity.max(axis=1)
    got_best = annotated.column("max_similarity").to_numpy(zero_copy_only=False)[order]
    has_similar = best >= 0.9  # the lowest threshold verified (the sweep's 0.9)
    np.testing.assert_allclose(got_best[has_similar], best[has_similar], atol=1e-6)
    assert np.isnan(got_best[~has_similar]).all()

    deduplicated = read_output(str(tmp_path / "out" / "deduplicated"))
    assert deduplicated.schema.names == ["id", "embedding", "score"]
    assert sorted(row_of(deduplicated.column("id").to_pylist())) == list(np.flatnonzero(np.arange(n) == cluster))
    kept_rows = row_of(deduplicated.column("id").to_pylist())
    np.testing.assert_array_equal(embedding_matrix(deduplicated.column("embedding")), x[kept_rows])

    expected = counts(a, b, n)
    assert {k: summary[k] for k in expected} == expected
    assert summary["rows"] == n and summary["rows_kept"] == n - expected["rows_removed"]
    for entry in summary["sweep"]:
        assert {k: entry[k] for k in expected} == counts(*brute_force_pairs(brute_force_similarity(x), entry["threshold"]), n)
    identical = np.array([(x[i] == x[j]).all() for i, j in zip(a, b, strict=True)], dtype=bool)
    assert summary["exact_duplicates"]["pairs"] == identical.sum() > 0
    assert summary["candidates"]["rounds"] == 3 and summary["candidates"]["lsh"]["recall"] >= 0.9999
    for name in ("annotated", "pairs", "deduplicated"):
        assert (tmp_path / "out" / name / MANIFEST).exists()
    assert summary["outputs"]["annotated"]["shards"] == 6
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["rows_removed"] == expected["rows_removed"]


def test_keep_policies_are_reproducible(data, tmp_path):
    input_dir, x = data
    similarity = brute_force_similarity(x)
    a, b = brute_force_pairs(similarity, 0.95)
    cluster = components(a, b, len(x))
    in_cluster = np.flatnonzero(np.bincount(cluster, minlength=len(x))[cluster] >= 2)

    def kept(policy, seed, out):
        dedup.run(dedup_args(input_dir, tmp_path / out, "--keep", policy, "--seed", str(seed), "--recall", "0.9999"))
        table = read_output(str(tmp_path / out / "annotated"))
        keep = np.zeros(len(x), dtype=bool)
        keep[row_of(table.column("id").to_pylist())] = table.column("keep").to_numpy()
        return keep

    units = unit_rows(x[in_cluster])  # the two zero vectors stay zero
    centroid = kept("closest-to-centroid", 0, "centroid")
    expected = np.ones(len(x), dtype=bool)
    expected[in_cluster] = choose_kept(in_cluster, cluster[in_cluster], "closest-to-centroid", 0, units)
    np.testing.assert_array_equal(centroid, expected)
    for label in np.unique(cluster[in_cluster]):  # kept: nearest to the cluster's mean direction, ties -> first
        members = in_cluster[cluster[in_cluster] == label]
        member_units = units[np.isin(in_cluster, members)]
        scores = member_units @ member_units.sum(axis=0)
        assert centroid[members].sum() == 1
        assert members[centroid[members]][0] == members[scores >= scores.max() - 1e-9].min()

    random_a, random_b = kept("random", 3, "random-a"), kept("random", 3, "random-b")
    np.testing.assert_array_equal(random_a, random_b)
    expected[in_cluster] = choose_kept(in_cluster, cluster[in_cluster], "random", 3)
    np.testing.assert_array_equal(random_a, expected)


def test_hot_bucket_is_compared_in_bounded_windows(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, DIM)).astype(np.float32)
    x[rng.choice(500, 300, replace=False)] = x[0]  # 300 identical rows: one bucket of 300 in every band
    write_rows(tmp_path / "in", x, files=2)
    summary = dedup.run(dedup_args(tmp_path / "in", tmp_path / "out", "--max-bucket", "16", "--sweep", ""))
    assert summary["candidates"]["oversize_buckets"] > 0 and summary["candidates"]["largest_bucket"] >= 300
    assert summary["clusters"] == 1 and summary["rows_in_clusters"] == 300 and summary["rows_removed"] == 299
    assert summary["exact_duplicates"]["rows_removed"] == 299
    assert 299 <= summary["pairs"] < 300 * 299 // 2 // 4  # windows, not all 44,850 pairs


def test_pipeline_with_test_pipeline_and_assert_that(data, tmp_path):
    input_dir, x = data
    plan = dedup.plan_dedup(input_dir, str(tmp_path / "out"), keep_columns=["id"], batch_rows=128)
    with TestPipeline(runner=FnApiRunner()) as p:
        summary = dedup.build_pipeline(p, plan)
        assert_that(summary | beam.Map(lambda s: (s["rows"], s["outputs"]["annotated"]["rows"],
                                                  s["outputs"]["deduplicated"]["rows"] == s["rows_kept"])),
                    equal_to([(len(x), len(x), True)]))


def test_bad_inputs_fail_before_any_output(data, tmp_path):
    input_dir, _ = data
    cases = [
        (["--id-column", "key"], "column 'key' (--id-column) not found"),
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--column", "score"], "column 'score' is double, expected a list of numbers"),
        (["--column", "missing"], "vector column 'missing' not found"),
        (["--sweep", "0.9,2"], "--sweep: thresholds must be between 0 and 1"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            dedup.run(dedup_args(input_dir, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()
    os.makedirs(tmp_path / "full")
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InputError, match="not empty"):
        dedup.run(dedup_args(input_dir, tmp_path / "full"))


def test_cli_runs_dedup(data, tmp_path, capsys):
    from ae_tf.cli import main

    input_dir, x = data
    assert main(["dedup", "--input", input_dir, "--output", str(tmp_path / "out"), "--keep-columns", "id"]) == 0
    assert f"rows       {len(x):,} in" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        main(["dedup", "--input", input_dir, "--output", str(tmp_path / "o2"), "--keep", "best"])
    assert exited.value.code == 2
    assert main(["dedup", "--input", input_dir, "--output", str(tmp_path / "o3"), "--id-column", "key"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ae-tf: error: ") and "'key' (--id-column) not found" in err[-1]


# ---- the LSH and bookkeeping math, without Beam -------------------------------------------------------

def pairs_at(similarity: float, count: int, dim: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(count, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    d = rng.normal(size=(count, dim))
    d -= np.sum(d * x, 1)[:, None] * x
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return x.astype(np.float32), (similarity * x + np.sqrt(1 - similarity**2) * d).astype(np.float32)


def test_banding_formula_matches_simulated_collisions():
    rng = np.random.default_rng(0)
    bands, rows, similarity, count = 6, 8, 0.85, 4000
    x, y = pairs_at(similarity, count, 24, rng)
    hasher = BandHasher(24, bands, rows, seed=1)
    (kx, sx), (ky, sy) = hasher.signatures(x), hasher.signatures(y)
    observed = (kx == ky).any(axis=1).mean()
    expected = float(banding_recall(similarity, bands, rows))
    assert abs(observed - expected) < 4 * np.sqrt(expected * (1 - expected) / count)
    distance = np.bitwise_count(sx ^ sy).sum(axis=1)
    assert abs(distance.mean() - 128 * (1 - collision_probability(similarity))) < 0.5


def test_choose_banding_reaches_recall_and_follows_the_data():
    orthogonal = choose_banding(0.95, 1_000_000)
    similar = choose_banding(0.95, 1_000_000, np.random.default_rng(0).uniform(0.5, 0.9, 10_000))
    for banding in (orthogonal, similar):
        assert banding.recall >= 0.99
        assert banding.recall == pytest.approx(float(banding_recall(0.95, banding.bands, banding.rows,
                                                                     banding.sketch_max_distance)))
    assert similar.rows > orthogonal.rows  # a similar background needs stricter bands
    assert choose_banding(0.9, 1000, rows=10).rows == 10
    assert sketch_max_distance(0.95) < sketch_max_distance(0.9)


def test_bucket_pairs_are_all_pairs_within_buckets_and_windows():
    rng = np.random.default_rng(2)
    keys = rng.integers(0, 40, size=(300, 1)).astype(np.uint64) << np.uint64(40)
    keys[:50] = np.uint64(999) << np.uint64(40)  # one bucket of 50 rows, more than max_bucket
    entries = pack_entries(keys, first_row=0, row_bits=9).reshape(-1)
    sketches = np.zeros((300, 2), dtype=np.uint64)
    order = rng.permutation(300)  # the input order must not matter
    found = set()
    for a, b, _ in bucket_pairs(entries[order], sketches[order], 9, max_distance=0, max_bucket=20,
                                max_pairs_per_chunk=100):
        assert (a < b).all()
        found |= set(zip(a.tolist(), b.tolist(), strict=True))
    expected = {(i, j) for i in range(50, 300) for j in range(i + 1, 300) if keys[i, 0] == keys[j, 0]}
    windows = [range(lo, min(lo + 20, 50)) for lo in range(0, 40, 10)]  # windows of 20 rows, step 10
    expected |= {(i, j) for w in windows for i in w for j in w if i < j}
    assert found == expected
    far = sketches.copy()
    far[1::2] = np.uint64(2**64 - 1)  # odd rows' sketches differ in every bit: their pairs are dropped
    kept = set()
    for a, b, _ in bucket_pairs(entries, far, 9, max_distance=10, max_bucket=20):
        kept |= set(zip(a.tolist(), b.tolist(), strict=True))
    assert kept == {(i, j) for i, j in expected if i % 2 == j % 2}


def test_connected_components_match_scipy():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5000, 3000), rng.integers(0, 5000, 3000)
    nodes, component = connected_components(a, b)
    np.testing.assert_array_equal(component, components(a, b, 5000)[nodes])
