"""Shared fixtures: small real Parquet datasets and tiny real models trained once per session."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share two cores: one intra-op thread each (and for the commands they start) instead of
    # TensorFlow's one per core. Measured, runs alternated: 158-161 s against 177-179 s with the default on
    # 60 tests that train in process; 87-90 s against 85-97 s on the subprocess-heavy multiprocess+deploy files.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from ae_tf.embeddings import embedding_array  # noqa: E402

pytest_plugins = ["gcs_emulator"]  # the gcs_emulator / gcs_root fixtures (a real GCS API on localhost)

WIDTH = 12
ROWS = 1200


def low_rank_rows(rows: int, width: int = WIDTH, rank: int = 3, seed: int = 0) -> np.ndarray:
    """Rows near one fixed 3-D subspace, on uneven scales: an autoencoder of size 3 rebuilds them well.

    `seed` draws new rows from the same subspace (held-out data); the subspace itself never changes.
    """
    basis = np.random.default_rng(1234).normal(size=(rank, width))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, rank)) @ basis + 0.05 * rng.normal(size=(rows, width))
    return (x * np.linspace(1, 10, width) + np.arange(width)).astype(np.float32)


def write_vector_dataset(directory, rows: int = ROWS, files: int = 3, seed: int = 0,
                         list_type: str = "fixed") -> list[str]:
    """`files` Parquet files: id (unique int64), name (string), vec (list of WIDTH floats)."""
    x = low_rank_rows(rows, seed=seed)
    os.makedirs(directory, exist_ok=True)
    bounds = np.linspace(0, rows, files + 1).astype(int)
    paths = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        vec = embedding_array(x[lo:hi])
        if list_type == "variable":
            vec = vec.cast(pa.list_(pa.float64()))
        table = pa.table({"id": np.arange(lo, hi, dtype=np.int64),
                          "name": [f"row-{j}" for j in range(lo, hi)], "vec": vec})
        path = os.path.join(directory, f"part-{i}.parquet")
        pq.write_table(table, path, row_group_size=150)
        paths.append(path)
    return paths


def write_scalar_dataset(directory, rows: int = ROWS, seed: int = 1) -> list[str]:
    """One Parquet file with id plus WIDTH numeric scalar columns f0..f11 (mixed int and float)."""
    x = low_rank_rows(rows, seed=seed)
    columns = {"id": np.arange(rows, dtype=np.int64)}
    for j in range(WIDTH):
        columns[f"f{j}"] = np.round(x[:, j]).astype(np.int32) if j == 0 else x[:, j].astype(np.float64)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "scalars.parquet")
    pq.write_table(pa.table(columns), path, row_group_size=400)
    return [path]


SCALAR_FEATURES = ",".join(f"f{j}" for j in range(WIDTH))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files holding a `slow` case run first, each file's tests kept together and in order.

    `make test` spreads whole files over two workers (`-n 2 --dist loadfile --no-loadscope-reorder`, so a
    module's trained fixtures are built once) in this order: the long files start early and the short ones
    fill in at the end, instead of a one-minute file starting last on one worker while the other sits idle.
    """
    by_module: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_module.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def has_slow(module: str) -> bool:
        return any(item.get_closest_marker("slow") for item in by_module[module])

    order = sorted(by_module, key=lambda module: not has_slow(module))  # stable: collection order otherwise
    items[:] = [item for module in order for item in by_module[module]]


def train_tiny(input_glob: str, features: str, output: str, **kwargs):
    from ae_tf.model.train import make_train_config, train

    settings = {"epochs": 6, "batch_size": 64, "hidden": "16", "learning_rate": 3e-3, "read_rows": 256}
    settings.update(kwargs)
    return train(make_train_config(input_glob, features, output, code_size=3, **settings))


@pytest.fixture(scope="session")
def vector_data(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("vector_data")
    write_vector_dataset(directory)
    return str(directory)


@pytest.fixture(scope="session")
def scalar_data(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("scalar_data")
    write_scalar_dataset(directory)
    return str(directory)


@pytest.fixture(scope="session")
def vector_model(tmp_path_factory, vector_data):
    """(model directory, TrainResult) of a tiny dense model on the vector dataset."""
    out = str(tmp_path_factory.mktemp("models") / "vector_model")
    return out, train_tiny(f"{vector_data}/*.parquet", "vec", out)


@pytest.fixture(scope="session")
def scalar_model(tmp_path_factory, scalar_data):
    out = str(tmp_path_factory.mktemp("models") / "scalar_model")
    return out, train_tiny(f"{scalar_data}/*.parquet", SCALAR_FEATURES, out)


def read_output(out_dir: str) -> pa.Table:
    import pyarrow.dataset as ds

    return ds.dataset(out_dir, format="parquet").to_table()
