"""Beam's multi-process local mode, the closest local stand-in for Dataflow workers (each worker process
unpickles the DoFns and loads its own model copy; splits are spread between processes).

encode, reduce and dedup under `--direct_running_mode multi_processing --direct_num_workers 2` write the
same rows as the in-process runner.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import ROWS, read_output

from ae_tf.embeddings import embedding_matrix

MULTI = ["--direct_running_mode", "multi_processing", "--direct_num_workers", "2", "--progress-interval", "0"]


def by_id(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


@pytest.mark.slow
def test_encode_reduce_dedup_under_two_worker_processes_match_in_process(tmp_path, vector_model, vector_data):
    from pipelines import dedup, encode, reduce

    def both(run, *argv: str) -> tuple[pa.Table, pa.Table, dict]:
        name = run.__module__.rsplit(".", 1)[-1]
        single, multi = tmp_path / f"{name}-single", tmp_path / f"{name}-multi"
        run([*argv, "--output", str(single), "--progress-interval", "0"])
        manifest = run([*argv, "--output", str(multi), *MULTI])
        return by_id(read_output(str(single))), by_id(read_output(str(multi))), manifest

    one, two, manifest = both(encode.run, "--model", vector_model[0], "--input", vector_data)
    assert manifest["rows_out"] == ROWS == two.num_rows
    assert two.column("id").to_pylist() == one.column("id").to_pylist() == list(range(ROWS))
    np.testing.assert_allclose(embedding_matrix(two.column("embedding")), embedding_matrix(one.column("embedding")),
                               rtol=1e-6, atol=1e-6)
    encoded = str(tmp_path / "encode-single")

    one, two, manifest = both(reduce.run, "--input", encoded, "--components", "2")
    assert manifest["rows_out"] == ROWS and two.column("id").equals(one.column("id"))
    np.testing.assert_allclose(embedding_matrix(two.column("reduced")), embedding_matrix(one.column("reduced")),
                               rtol=1e-4, atol=1e-5)  # moments summed in another order

    single, multi = tmp_path / "dedup-single", tmp_path / "dedup-multi"
    dedup.run(["--input", encoded, "--output", str(single), "--keep-columns", "id", "--progress-interval", "0"])
    dedup.run(["--input", encoded, "--output", str(multi), "--keep-columns", "id", *MULTI])
    columns = ["id", "cluster_id", "keep"]
    one = by_id(read_output(str(single / "annotated")).select(columns))
    two = by_id(read_output(str(multi / "annotated")).select(columns))
    assert two.num_rows == ROWS and two.equals(one)
