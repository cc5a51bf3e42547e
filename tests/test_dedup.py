"""Near-duplicate detection: the Beam pipeline against an exact greedy pass in numpy, on small data."""

import json
import os

import apache_beam as beam
import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from conftest import read_output

from ae_tf.contracts import DatasetManifest, DedupOutput, DedupSummary
from ae_tf.embeddings import embedding_array, embedding_matrix
from ae_tf.vectors.duplicates import connected_components, priority_keys
from ae_tf.vectors.greedy import decision_margin, greedy_representatives, unit_rows32
from pipelines import dedup
from pipelines.io.parquet import MANIFEST, InputError

DIM = 12
T = 0.95


def clustered_rows(rows: int = 1200, seed: int = 0) -> np.ndarray:
    """Dense clusters of near copies (members at cosine 0.95-0.995 to their item, so members chain), exact
    copies, unique rows and two zero vectors, shuffled."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(40, DIM))
    members = items[rng.integers(0, 40, rows // 2)]
    d = rng.normal(size=members.shape)
    d -= (np.sum(d * members, 1) / np.sum(members * members, 1))[:, None] * members
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    c = rng.uniform(0.95, 0.995, len(members))[:, None]
    members = c * members + np.sqrt(1 - c**2) * np.linalg.norm(members, axis=1, keepdims=True) * d
    unique = rng.normal(size=(rows - len(members) - rows // 10 - 2, DIM))
    body = np.concatenate([members, unique])
    data = np.concatenate([body, body[rng.integers(0, len(body), rows // 10)], np.zeros((2, DIM))])
    return data[rng.permutation(len(data))].astype(np.float32)


def write_rows(directory, x: np.ndarray, files: int = 3, score=None) -> None:
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, len(x), files + 1).astype(int)
    score = np.arange(len(x), dtype=np.float64) if score is None else score
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        table = pa.table({"id": [f"row-{j}" for j in range(lo, hi)], "embedding": embedding_array(x[lo:hi]),
                          "score": score[lo:hi]})
        pq.write_table(table, os.path.join(directory, f"part-{i}.parquet"), row_group_size=150)


def reference_greedy(x: np.ndarray, order: np.ndarray, threshold: float = T) -> tuple[np.ndarray, np.ndarray]:
    """A plain loop in float64: (keep, representative row) in input row numbers; zero rows equal each other."""
    norms = np.linalg.norm(x.astype(np.float64), axis=1)
    units = np.divide(x.astype(np.float64), norms[:, None], out=np.zeros(x.shape), where=norms[:, None] > 0)
    units[norms == 0, 0] = 1.0
    t = threshold + decision_margin(x.shape[1])
    keep, rep, kept = np.zeros(len(x), dtype=bool), np.arange(len(x)), []
    for i in order:
        if kept:
            sims = units[kept] @ units[i]
            j = int(sims.argmax())
            if sims[j] >= t:
                rep[i] = kept[j]
                continue
        kept.append(int(i))
        keep[i] = True
    return keep, rep


def cosine(x, a, b):
    xa, xb = x[a].astype(np.float64), x[b].astype(np.float64)
    n = np.linalg.norm(xa, axis=1) * np.linalg.norm(xb, axis=1)
    same = (x[a] == x[b]).all(axis=1)
    return np.where(same, 1.0, np.einsum("ij,ij->i", xa, xb) / np.where(n > 0, n, 1))


def annotated_by_row(out) -> pd.DataFrame:
    frame = pd.read_parquet(os.path.join(out, "annotated"))
    frame["row"] = frame["id"].str.split("-").str[1].astype(int)
    return frame.sort_values("row").reset_index(drop=True)


def check_invariants(x: np.ndarray, frame: pd.DataFrame, threshold: float = T) -> None:
    """Every removed row >= threshold to its kept representative; kept rows point at themselves."""
    keep, cluster = frame["keep"].to_numpy(), frame["cluster_id"].to_numpy()
    assert (cluster[keep] == np.flatnonzero(keep)).all()
    removed = np.flatnonzero(~keep)
    assert keep[cluster[removed]].all()  # representatives are kept rows
    assert (cosine(x, removed, cluster[removed]) >= threshold).all()  # no chaining, ever


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clustered")
    x = clustered_rows()
    write_rows(directory, x)
    return str(directory), x


def dedup_args(input_dir, out_dir, *extra):
    return ["--input", str(input_dir), "--output", str(out_dir), "--batch-rows", "100", "--progress-interval", "0",
            *extra]


def test_one_partition_equals_exact_greedy_and_outputs_read_back(data, tmp_path):
    input_dir, x = data
    out = tmp_path / "out"
    summary = dedup.run(dedup_args(input_dir, out, "--partitions", "1", "--max-rows-per-split", "300"))
    keep, rep = reference_greedy(x, np.arange(len(x)))
    frame = annotated_by_row(out)
    np.testing.assert_array_equal(frame["keep"].to_numpy(), keep)
    np.testing.assert_array_equal(frame["cluster_id"].to_numpy(), rep)
    removed = np.flatnonzero(~keep)
    np.testing.assert_allclose(frame["max_similarity"].to_numpy()[removed], cosine(x, removed, rep[removed]), atol=2e-6)
    assert frame.columns.tolist() == ["id", "embedding", "score", "cluster_id", "keep", "max_similarity", "row"]
    assert 100 < len(removed) < len(x) - 100
    assert summary["rows_kept"] == keep.sum() and summary["rows_removed"] == len(removed)
    assert summary["clusters"] == len(np.unique(rep[removed]))
    assert summary["checks"]["removed_below_threshold"] == 0
    assert summary["checks"]["residual_duplicates"]["rate"] == 0.0
    assert summary["exact_duplicates"]["rows_removed"] == int((x[removed] == x[rep[removed]]).all(axis=1).sum()) > 0

    pairs = pd.read_parquet(out / "pairs")  # one pair per removed row: its representative
    assert len(pairs) == len(removed) and pairs["representative"].all()
    got = {(int(a.split("-")[1]), int(b.split("-")[1])) for a, b in zip(pairs["id_a"], pairs["id_b"], strict=True)}
    assert got == set(zip(rep[removed].tolist(), removed.tolist(), strict=True))
    kept = pd.read_parquet(out / "deduplicated")
    assert sorted(kept["id"]) == sorted(f"row-{i}" for i in np.flatnonzero(keep))
    kept_rows = kept["id"].str.split("-").str[1].astype(int).to_numpy()
    np.testing.assert_array_equal(np.stack(kept["embedding"].to_numpy()), x[kept_rows])
    table = read_output(str(out / "deduplicated"))  # the fixed-size list column survives unchanged
    table_rows = np.array([int(i.split("-")[1]) for i in table.column("id").to_pylist()])
    np.testing.assert_array_equal(embedding_matrix(table.column("embedding")), x[table_rows])
    biggest = duckdb.sql(f"SELECT cluster_id, count(*) AS n, min(max_similarity) AS lowest FROM "
                         f"read_parquet('{out}/annotated/*.parquet') GROUP BY cluster_id ORDER BY n DESC LIMIT 1").fetchall()[0]
    assert biggest[1] == np.bincount(rep).max() and biggest[2] >= T - 1e-6
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{out}/pairs/*.parquet') WHERE similarity < {T}").fetchall()[0][0] == 0
    for name in ("annotated", "pairs", "deduplicated"):
        assert (out / name / MANIFEST).exists()
    assert summary["outputs"]["annotated"]["shards"] == 6  # 3 files cut at 300 rows
    assert json.loads((out / "summary.json").read_text())["rows_removed"] == len(removed)


def test_partitions_keep_the_semantics_and_reruns_are_identical(data, tmp_path):
    input_dir, x = data
    args = ("--partitions", "5", "--margin", "0.3", "--max-guests", "4", "--residual-sample", "5000")
    summary = dedup.run(dedup_args(input_dir, tmp_path / "a", *args))
    dedup.run(dedup_args(input_dir, tmp_path / "b", *args))
    first, second = annotated_by_row(tmp_path / "a"), annotated_by_row(tmp_path / "b")
    pd.testing.assert_frame_equal(first, second)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a" / "pairs").sort_values("id_b").reset_index(drop=True),
                                  pd.read_parquet(tmp_path / "b" / "pairs").sort_values("id_b").reset_index(drop=True))
    check_invariants(x, first)
    keep = first["keep"].to_numpy()
    kept = np.flatnonzero(keep)  # exact residual: kept rows with another kept row at >= T
    units, zero = unit_rows32(x[kept].astype(np.float64))
    units[zero, 0] = 1.0
    sims = units.astype(np.float64) @ units.T.astype(np.float64)
    np.fill_diagonal(sims, -1)
    residual = (sims >= T).any(axis=1).mean()
    reported = summary["checks"]["residual_duplicates"]
    assert reported["sample_kept_rows"] == len(kept)  # a sample bigger than the kept rows checks them all
    assert reported["rate"] == pytest.approx(residual, abs=2 / len(kept))
    assert residual <= 0.01
    assert summary["partitions"]["count"] == 6 and summary["partitions"]["guest_rows"] > 0
    one = reference_greedy(x, np.arange(len(x)))[0].sum()
    assert abs(summary["rows_kept"] - one) <= 0.02 * one  # close to the single-partition answer


def test_chain_ends_do_not_share_a_kept_row(tmp_path):
    rng = np.random.default_rng(5)
    step = rng.normal(size=DIM)
    chain = [step / np.linalg.norm(step)]
    for _ in range(99):  # each row at cosine 0.97 to the previous one
        d = rng.normal(size=DIM)
        d -= (d @ chain[-1]) * chain[-1]
        chain.append(0.97 * chain[-1] + np.sqrt(1 - 0.97**2) * d / np.linalg.norm(d))
    x = np.concatenate([np.array(chain), rng.normal(size=(200, DIM))]).astype(np.float32)
    assert cosine(x, np.array([0]), np.array([99]))[0] < 0.8  # the ends are far apart
    write_rows(tmp_path / "in", x, files=1)
    summary = dedup.run(dedup_args(tmp_path / "in", tmp_path / "out"))
    frame = annotated_by_row(tmp_path / "out")
    check_invariants(x, frame)
    cluster = frame["cluster_id"].to_numpy()
    assert cluster[0] != cluster[99]
    assert 3 <= frame["keep"].to_numpy()[:100].sum() < 100
    assert summary["checks"]["removed_below_threshold"] == 0

    connected = dedup.run(dedup_args(tmp_path / "in", tmp_path / "connected", "--clusters", "connected"))
    joined = annotated_by_row(tmp_path / "connected")["cluster_id"].to_numpy()
    assert joined[0] == joined[99]  # transitive groups chain the ends together, as documented
    assert connected["cluster_mode"] == "connected" and connected["rows_kept"] < summary["rows_kept"]


def near(x: np.ndarray, cosine: np.ndarray, rng) -> np.ndarray:
    """Rows at exactly `cosine` to the rows of x (same norm), in random directions."""
    d = rng.normal(size=x.shape)
    d -= (np.sum(d * x, 1) / np.sum(x * x, 1))[:, None] * x
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    c = np.asarray(cosine)[:, None]
    return c * x + np.sqrt(1 - c**2) * np.linalg.norm(x, axis=1, keepdims=True) * d


def test_kept_rows_with_members_merge_across_partitions(tmp_path):
    """Pairs of groups whose centres are at 0.96 land in different partitions (no guests): both centres
    are kept at home with members of their own. The merge must remove one and re-decide its members."""
    rng = np.random.default_rng(7)
    a = rng.normal(size=(60, DIM))
    b = near(a, np.full(60, 0.96), rng)
    centres = np.concatenate([a, b])
    members = near(np.repeat(centres, 6, axis=0), rng.uniform(0.985, 0.995, 720), rng)
    x = np.concatenate([centres, members, rng.normal(size=(300, DIM))]).astype(np.float32)  # centres first
    write_rows(tmp_path / "in", x, files=2)
    args = ("--partitions", "8", "--margin", "0", "--max-guests", "0", "--residual-sample", "5000")
    summary = dedup.run(dedup_args(tmp_path / "in", tmp_path / "out", *args))
    frame = annotated_by_row(tmp_path / "out")
    check_invariants(x, frame)
    parts = summary["partitions"]
    assert parts["kept_rows_merged"] > 0 and parts["guest_rows"] == 0
    kept = np.flatnonzero(frame["keep"].to_numpy())
    units = x[kept] / np.linalg.norm(x[kept], axis=1, keepdims=True)
    sims = units.astype(np.float64) @ units.T.astype(np.float64)
    np.fill_diagonal(sims, -1)
    assert not (sims >= T).any()  # no kept row is left with a kept duplicate, not even a merged row's member
    assert summary["checks"]["residual_duplicates"]["with_kept_duplicate"] == 0
    pairs = pd.read_parquet(tmp_path / "out" / "pairs")
    assert len(pairs) == len(x) - len(kept) and (pairs["similarity"] >= T).all()
    assert set(pairs["id_a"]) <= {f"row-{i}" for i in kept}
    dedup.run(dedup_args(tmp_path / "in", tmp_path / "again", *args))
    pd.testing.assert_frame_equal(frame, annotated_by_row(tmp_path / "again"))


def test_dense_cluster_output_is_bounded(tmp_path):
    rng = np.random.default_rng(6)
    centre = rng.normal(size=DIM)
    x = (centre + 0.03 * np.linalg.norm(centre) / np.sqrt(DIM) * rng.normal(size=(5000, DIM))).astype(np.float32)
    write_rows(tmp_path / "in", x, files=2)
    summary = dedup.run(dedup_args(tmp_path / "in", tmp_path / "out", "--batch-rows", "1000",
                                   "--max-pairs-per-row", "2"))
    frame = annotated_by_row(tmp_path / "out")
    check_invariants(x, frame)
    removed = int((~frame["keep"]).sum())
    assert removed >= 4900  # one dense cluster: nearly everything goes
    pairs = pd.read_parquet(tmp_path / "out" / "pairs")
    assert pairs["representative"].sum() == removed
    assert removed <= len(pairs) <= 3 * removed  # not the 12.5M pairs of all-pairs output
    assert (pairs["similarity"] >= T).all()
    assert summary["pairs"] == len(pairs)


def test_keep_policies_and_priority_follow_their_order(data, tmp_path):
    input_dir, x = data
    rows = np.arange(len(x))
    for policy, extra in (("random", ("--seed", "3")), ("first", ("--priority", "score", "desc"))):
        out = tmp_path / policy
        dedup.run(dedup_args(input_dir, out, "--partitions", "1", "--keep", policy, *extra))
        if policy == "random":
            primary, secondary = priority_keys(rows, "random", 3)
        else:
            primary, secondary = priority_keys(rows, "first", column=rows.astype(float), descending=True)
        keep, rep = reference_greedy(x, np.lexsort((rows, secondary, primary)))
        frame = annotated_by_row(out)
        np.testing.assert_array_equal(frame["keep"].to_numpy(), keep)
        np.testing.assert_array_equal(frame["cluster_id"].to_numpy(), rep)
    home_cosine = np.array([0.2, 0.9, 0.5])  # closest-to-centroid: the row nearest its centroid comes first
    primary, secondary = priority_keys(np.arange(3), "closest-to-centroid", home_cosine=home_cosine)
    assert np.lexsort((np.arange(3), secondary, primary)).tolist() == [1, 2, 0]


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
        (["--priority", "id"], "--priority column 'id' is string, expected numbers"),
        (["--priority", "score", "up"], "--priority takes a column and optionally 'desc'"),
        (["--bands", "4"], "--bands belonged to the LSH search"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            dedup.run(dedup_args(input_dir, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()
    os.makedirs(tmp_path / "full")
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(InputError, match="not empty"):
        dedup.run(dedup_args(input_dir, tmp_path / "full"))


def test_cli_runs_dedup_with_a_sweep(data, tmp_path, capsys):
    from ae_tf_cli import main

    input_dir, x = data
    assert main(["dedup", "--input", input_dir, "--output", str(tmp_path / "out"), "--keep", "closest-to-centroid",
                 "--sweep", "0.9,0.99", "--progress-interval", "0"]) == 0
    out = capsys.readouterr().out
    assert f"rows       {len(x):,} in" in out and "sweep      >= 0.9" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert DedupSummary.from_dict(summary).to_dict() == summary and summary["format"] == DedupSummary.FORMAT
    for name in DedupOutput.DATASETS:  # each dataset's own _SUCCESS is a DatasetManifest (ae_tf.contracts)
        DatasetManifest.from_json((tmp_path / "out" / name / "_SUCCESS").read_text(), source=name)
    check_invariants(x, annotated_by_row(tmp_path / "out"))
    by_threshold = {s["threshold"]: s["rows_kept"] for s in summary["sweep"]}
    assert by_threshold[0.9] < summary["rows_kept"] < by_threshold[0.99]
    assert main(["dedup", "--input", input_dir, "--output", str(tmp_path / "o3"), "--id-column", "key"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ae-tf: error: ") and "'key' (--id-column) not found" in err[-1]


# ---- the numpy core, without Beam ---------------------------------------------------------------------

def test_greedy_blocks_match_a_plain_loop():
    import ae_tf.vectors.greedy as greedy

    x = clustered_rows(900, seed=2)
    units, zero = unit_rows32(x)
    units[zero, 0] = 1.0
    keep, rep = reference_greedy(x, np.arange(len(x)))
    saved = greedy.CHUNK, greedy.BLOCK_ENTRIES
    try:
        for chunk, entries in ((7, 500), (64, 20_000), (1024, 1 << 22)):  # blocks, chunks and rounds all differ
            greedy.CHUNK, greedy.BLOCK_ENTRIES = chunk, entries
            result = greedy_representatives(units, T)
            np.testing.assert_array_equal(result.kept, keep)
            np.testing.assert_array_equal(result.representative, rep)
    finally:
        greedy.CHUNK, greedy.BLOCK_ENTRIES = saved


def test_connected_components():
    nodes, component = connected_components(np.array([0, 2, 5, 7]), np.array([1, 1, 6, 5]))
    np.testing.assert_array_equal(nodes, [0, 1, 2, 5, 6, 7])
    np.testing.assert_array_equal(component, [0, 0, 0, 5, 5, 5])
