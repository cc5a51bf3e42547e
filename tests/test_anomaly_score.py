"""The default anomaly score: its constants in the metadata, the exported signatures, and a numpy recomputation."""

import numpy as np
import pytest
from conftest import WIDTH, low_rank_rows

from ae_tf.contracts import ModelMetadata
from ae_tf.inputs.data import TRAIN, ParquetSource, match_files
from ae_tf.inputs.features import FeatureSpec
from ae_tf.model.anomaly import resolve_threshold
from ae_tf.model.anomaly_score import MIN_VARIANCE_ROWS, ScoreParameters
from ae_tf.model.export import read_metadata


def odd_rows(rows: int = 20) -> np.ndarray:
    """Rows far off the training subspace, mixed with normal ones by the tests."""
    return np.random.default_rng(5).normal(0, 30, size=(rows, WIDTH)).astype(np.float32)


def numpy_scores(meta: dict, x: np.ndarray, code: np.ndarray, rebuilt: np.ndarray) -> dict[str, np.ndarray]:
    """Every score recomputed from the metadata alone, in float64 (ae_tf.model.anomaly_score's formulas)."""
    norm, params = meta["normalization"], meta["anomaly_score"]
    shift, scale = np.asarray(norm["shift"]), np.asarray(norm["scale"])
    squared = np.square((x - shift) / scale - (rebuilt - shift) / scale)  # in the model's standardised units
    standardized = np.mean(squared / np.asarray(params["error_variance"]), axis=1)
    centred = code - np.asarray(params["code_mean"])
    latent = np.einsum("ij,jk,ik->i", centred, np.asarray(params["code_precision"]), centred) / code.shape[1]
    assert params["rule"] == "standardized_error+latent_distance"
    return {"reconstruction_error": squared.mean(axis=1), "standardized_error": standardized,
            "latent_distance": latent, "anomaly_score": standardized + params["latent_weight"] * latent}


def test_exported_scores_equal_a_numpy_recomputation_from_the_metadata(scalar_model):
    import tensorflow as tf

    model_dir, _ = scalar_model
    meta = read_metadata(model_dir)
    loaded = tf.saved_model.load(model_dir)  # plain TensorFlow, no project code involved
    x = np.vstack([low_rank_rows(40, seed=9), odd_rows()])
    code = loaded.signatures["encode"](features=tf.constant(x))["embedding"].numpy()
    rebuilt = loaded.signatures["decode"](embedding=tf.constant(code))["reconstruction"].numpy()
    expected = numpy_scores(meta, x.astype(np.float64), code.astype(np.float64), rebuilt.astype(np.float64))
    got = loaded.signatures["score"](features=tf.constant(x))
    assert set(got) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(got[name].numpy(), values, rtol=2e-4, atol=1e-5, err_msg=name)
    fused = loaded.signatures["encode_and_score"](features=tf.constant(x))
    np.testing.assert_allclose(fused["anomaly_score"].numpy(), got["anomaly_score"].numpy(), rtol=1e-6)
    assert set(fused) == {"embedding", "reconstruction_error", "anomaly_score"}
    scores = got["anomaly_score"].numpy()
    assert scores[40:].min() > np.quantile(scores[:40], 0.9)  # the odd rows score far above the normal ones


def test_metadata_constants_are_the_training_statistics(scalar_model):
    """Residual spread and code moments recomputed from the training run's own split, and the threshold and
    quantile table on the new score."""
    model_dir, result = scalar_model
    meta = read_metadata(model_dir)
    params, config = meta["anomaly_score"], meta["config"]
    assert params["granularity"] == "value" and len(params["error_variance"]) == WIDTH
    spec = FeatureSpec.from_dict(meta["feature_spec"])
    source = ParquetSource(match_files(config["input"]), spec, config["validation_fraction"], config["seed"],
                           config["read_rows"])
    train_rows = np.concatenate(list(source.iter_arrays(TRAIN)))
    everything = np.concatenate(list(source.iter_arrays()))
    assert meta["training"]["rows_validation"] < MIN_VARIANCE_ROWS  # so the spread pools train + validation
    assert params["variance_rows"] == len(everything) and params["code_rows"] == len(train_rows)
    model = result.model
    code = np.asarray(model.encode(train_rows), np.float64)
    np.testing.assert_allclose(params["code_mean"], code.mean(axis=0), rtol=1e-4, atol=1e-5)
    covariance = np.cov(code.T, bias=True)
    covariance += 1e-3 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    np.testing.assert_allclose(params["code_precision"], np.linalg.inv(covariance), rtol=1e-3, atol=1e-3)
    clean = np.asarray(model.prepare(everything), np.float64)
    rebuilt = np.asarray(model.decoder(model.encode(everything)), np.float64)
    variance = np.square(clean - rebuilt).mean(axis=0)
    np.testing.assert_allclose(params["error_variance"], np.maximum(variance, 0.01 * variance.mean()), rtol=1e-3)

    parameters = ScoreParameters.from_metadata(params)
    assert parameters.rule == params["rule"] and parameters.error_variance.shape == (WIDTH,)
    table = params["quantiles"]
    threshold = meta["anomaly_threshold"]
    assert threshold["score"] == "anomaly_score"
    assert threshold["value"] == pytest.approx(np.interp(0.99, table["levels"], table["values"]), rel=1e-6)
    assert threshold["value"] != pytest.approx(np.interp(0.99, meta["reconstruction_error"]["quantiles"]["levels"],
                                                         meta["reconstruction_error"]["quantiles"]["values"]))
    value, rule = resolve_threshold(ModelMetadata.from_dict(meta), quantile=0.5)
    assert value == pytest.approx(np.interp(0.5, table["levels"], table["values"]))
    assert "anomaly_score (standardized_error+latent_distance)" in rule


def test_flags_threshold_the_anomaly_score(scalar_model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf
    from conftest import read_output

    from pipelines import encode

    model_dir, _ = scalar_model
    x = np.vstack([low_rank_rows(200, seed=21), odd_rows()])
    columns = {"id": np.arange(len(x), dtype=np.int64)}
    columns.update({f"f{j}": x[:, j].astype(np.float64) for j in range(WIDTH)})
    pq.write_table(pa.table(columns), tmp_path / "rows.parquet")
    manifest = encode.run(["--model", model_dir, "--input", str(tmp_path / "rows.parquet"), "--output",
                           str(tmp_path / "out"), "--flag-anomalies", "--keep-columns", "id"])
    out = read_output(str(tmp_path / "out")).sort_by("id")
    assert out.schema.names == ["id", "embedding", "reconstruction_error", "anomaly_score", "is_anomaly"]
    threshold = read_metadata(model_dir)["anomaly_threshold"]["value"]
    assert manifest["anomalies"]["threshold"] == pytest.approx(threshold)
    scores = out.column("anomaly_score").to_numpy()
    flags = out.column("is_anomaly").to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(flags, scores > threshold)
    expected = tf.saved_model.load(model_dir).signatures["score"](features=tf.constant(x.astype(np.float32)))
    np.testing.assert_allclose(scores, expected["anomaly_score"].numpy(), rtol=1e-5)
    np.testing.assert_allclose(out.column("reconstruction_error").to_numpy(),
                               expected["reconstruction_error"].numpy(), rtol=1e-5)
    assert flags[200:].all() and flags[:200].sum() <= 12  # ~1% of normal rows by construction, with slack

