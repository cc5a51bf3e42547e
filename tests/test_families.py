"""Every model family through the same path: train a tiny model, export, reload with plain TensorFlow,
encode through the Beam pipeline; plus what each family adds (noise only in training, a sparse code, the
VAE's KL/ELBO metrics and `sample` signature) and the one factory shape."""

import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import ROWS, WIDTH, low_rank_rows, read_output

from ae_tf.embeddings import embedding_matrix
from ae_tf.inputs.features import FeatureError, FeatureSpec
from ae_tf.model.export import read_metadata
from ae_tf.model.families import FAMILIES, FAMILY_NAMES, Autoencoder, ModelConfig, Standardize, build_model
from ae_tf.model.train import make_train_config, train
from ae_tf_cli import main as cli_main
from pipelines import encode

TINY = {"epochs": 3, "batch_size": 64, "hidden": "16", "learning_rate": 3e-3, "read_rows": 256,
        "min_steps": 60}
VECTOR_FAMILIES = ("dense", "denoising", "sparse", "vae")


@pytest.fixture(scope="module")
def family_models(vector_data, tmp_path_factory):
    """{family: (model dir, TrainResult)} trained on the shared vector dataset (code size 3)."""
    root = tmp_path_factory.mktemp("families")
    return {family: (str(root / family), train(make_train_config(f"{vector_data}/*.parquet", "vec",
                                                                 str(root / family), 3, family=family, **TINY)))
            for family in VECTOR_FAMILIES}


@pytest.mark.parametrize("family", VECTOR_FAMILIES)
def test_family_exports_the_contract_and_matches_the_in_memory_model(family, family_models):
    model_dir, result = family_models[family]
    meta = read_metadata(model_dir)
    assert meta["family"] == family and meta["model"]["network"] == "dense" and meta["code_size"] == 3
    assert result.history["reconstruction"][-1] < result.history["reconstruction"][0]
    held_out = low_rank_rows(400, seed=8)
    prepared = np.asarray(result.model.prepare(held_out))
    always_the_mean = float(np.mean((prepared - prepared.mean(axis=0)) ** 2))
    error = float(np.mean(np.asarray(result.model.score(held_out))))
    # a sparse code of 3 units mostly near zero rebuilds less: it trades reconstruction for sparsity
    assert error < (0.8 if family == "sparse" else 0.6) * always_the_mean, (family, error, always_the_mean)
    loaded = tf.saved_model.load(model_dir)
    assert {"encode", "decode", "score", "serving_default", "encode_and_score"} <= set(loaded.signatures)
    assert ("sample" in loaded.signatures) == (family == "vae")
    x = tf.constant(low_rank_rows(50, seed=9))
    out = loaded.signatures["encode_and_score"](features=x)
    np.testing.assert_allclose(out["embedding"].numpy(), np.asarray(result.model.encode(x)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["reconstruction_error"].numpy(), np.asarray(result.model.score(x)),
                               rtol=1e-5, atol=1e-6)
    rebuilt = loaded.signatures["decode"](embedding=out["embedding"])["reconstruction"].numpy()
    np.testing.assert_allclose(rebuilt, np.asarray(result.model.decode(out["embedding"])), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("family", ["denoising", "sparse", "vae"])
def test_family_encodes_through_the_beam_pipeline(family, family_models, vector_data, tmp_path):
    model_dir, result = family_models[family]
    manifest = encode.run(["--model", model_dir, "--input", f"{vector_data}/*.parquet", "--output",
                           str(tmp_path / "out"), "--batch-rows", "300"])
    assert manifest["rows_out"] == ROWS and manifest["rows_rejected"] == 0
    table = read_output(str(tmp_path / "out")).sort_by("id")
    source = low_rank_rows(ROWS)  # the rows conftest wrote, in id order
    np.testing.assert_allclose(embedding_matrix(table.column("embedding")), np.asarray(result.model.encode(source)),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(table.column("reconstruction_error").to_numpy(),
                               np.asarray(result.model.score(source)), rtol=1e-4, atol=1e-6)


def test_denoising_noise_exists_only_while_training(family_models):
    model_dir, result = family_models["denoising"]
    assert read_metadata(model_dir)["model"]["corruption"] == {"noise_stddev": 0.5, "mask_fraction": 0.0}
    model = result.model
    x = tf.constant(low_rank_rows(20, seed=3))
    noisy = [np.asarray(model(x, training=True)["reconstruction"]) for _ in range(2)]
    assert not np.allclose(noisy[0], noisy[1])  # the corruption is really there in training
    signature = tf.saved_model.load(model_dir).signatures["encode"]
    first, second = (signature(features=x)["embedding"].numpy() for _ in range(2))
    np.testing.assert_array_equal(first, second)  # same input -> same embedding
    np.testing.assert_allclose(first, np.asarray(model.encode(x)), rtol=1e-5, atol=1e-6)
    clean = [np.asarray(model(x, training=False)["reconstruction"]) for _ in range(2)]
    np.testing.assert_array_equal(clean[0], clean[1])


def test_masking_noise_works_on_any_family():
    spec = FeatureSpec("vector", ("v",), 6)
    model = build_model(ModelConfig(code_size=2, hidden=(8,), mask_fraction=0.5), spec,
                        Standardize(np.zeros(6), np.ones(6)))
    x = np.ones((200, 6), np.float32)
    masked = np.asarray(model.corrupt(model.prepare(x), training=True))
    assert set(np.unique(masked)) == {0.0, 1.0} and 0.4 < (masked == 0).mean() < 0.6  # zeroed, not rescaled
    np.testing.assert_array_equal(np.asarray(model.corrupt(model.prepare(x), training=False)), x)


def test_sparse_code_is_reported_and_sparse(family_models):
    model_dir, result = family_models["sparse"]
    metrics = read_metadata(model_dir)["training"]["metrics"]
    assert {"code_activation", "val_code_activation", "sparsity_penalty"} <= set(metrics)
    codes = np.asarray(result.model.encode(low_rank_rows(300, seed=4)))
    assert codes.min() >= 0 and codes.max() <= 1  # sigmoid units (KL penalty)
    # pulled from 0.5 (a sigmoid's neutral value) towards the 0.05 target, and the metric says so
    assert metrics["val_code_activation"] < 0.3
    assert abs(codes.mean() - metrics["val_code_activation"]) < 0.1
    assert result.history["code_activation"][-1] < result.history["code_activation"][0]


def test_vae_reports_kl_and_reconstruction_and_samples(family_models):
    model_dir, result = family_models["vae"]
    meta = read_metadata(model_dir)
    metrics = meta["training"]["metrics"]
    assert {"kl", "nll", "elbo", "reconstruction", "val_kl", "val_elbo"} <= set(metrics)
    assert metrics["val_kl"] > 0
    assert metrics["val_elbo"] == pytest.approx(-(metrics["val_nll"] + metrics["val_kl"]), rel=1e-4)
    assert meta["model"]["beta"] == 1.0 and meta["model"]["decoder_variance"] > 0
    loaded = tf.saved_model.load(model_dir)
    for n in (5, 1):
        samples = loaded.signatures["sample"](n=tf.constant(n))["samples"].numpy()
        assert samples.shape == (n, WIDTH) and np.isfinite(samples).all()
    # samples come out in the raw scale of the data, near the training rows' spread
    many = loaded.signatures["sample"](n=tf.constant(500))["samples"].numpy()
    data = low_rank_rows(500, seed=2)
    assert np.abs(many.mean(axis=0) - data.mean(axis=0)).max() < 1.0 * data.std(axis=0).max()
    x = tf.constant(data[:10])  # the embedding is the mean: deterministic
    np.testing.assert_array_equal(loaded.signatures["encode"](features=x)["embedding"].numpy(),
                                  loaded.signatures["encode"](features=x)["embedding"].numpy())


def test_one_factory_shape_for_every_family():
    assert tuple(FAMILIES) == FAMILY_NAMES
    spec = FeatureSpec("vector", ("v",), 5)
    for family in FAMILY_NAMES:
        config = ModelConfig(family=family, code_size=2, hidden=(4,))
        if family == "conv":
            with pytest.raises(FeatureError, match="a conv model needs an image column"):
                build_model(config, spec, Standardize(np.zeros(5), np.ones(5)))
            continue
        model = build_model(config, spec, Standardize(np.zeros(5), np.ones(5)))
        assert isinstance(model, Autoencoder)
        assert np.asarray(model.encode(np.zeros((3, 5), np.float32))).shape == (3, 2)


@pytest.mark.parametrize("settings, message", [
    ({"family": "pca"}, "--model must be one of"),
    ({"family": "dense", "base": "conv"}, "contradicts --model dense"),
    ({"mask_fraction": 1.0}, "--mask-fraction must be in"),
    ({"family": "sparse", "sparsity": "l2"}, "--sparsity must be kl or l1"),
    ({"sparsity_target": 0.0}, "--sparsity-target"),
    ({"beta": -1.0}, "--beta"),
    ({"channels": 2}, "--channels must be 1 or 3"),
])
def test_bad_family_settings_fail_before_any_data_is_read(settings, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        make_train_config(str(tmp_path / "missing"), "vec", str(tmp_path / "m"), 3, **settings)


def test_cli_trains_a_sparse_l1_model_and_prints_its_metrics(vector_data, tmp_path, capsys):
    out = str(tmp_path / "l1")
    code = cli_main(["train", "--input", f"{vector_data}/part-0.parquet", "--features", "vec", "--code-size", "4",
                     "--output", out, "--model", "sparse", "--sparsity", "l1", "--sparsity-weight", "0.05",
                     "--hidden", "16", "--epochs", "2", "--batch-size", "64"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "family     sparse" in printed and "code_activation" in printed and "reconstruction" in printed
    meta = read_metadata(out)
    assert meta["model"]["sparsity"] == {"penalty": "l1", "weight": 0.05, "target": 0.05}
    codes = tf.saved_model.load(out).signatures["encode"](features=tf.constant(low_rank_rows(200, seed=6)))
    assert codes["embedding"].numpy().min() >= 0  # ReLU code under an L1 penalty
    assert os.path.exists(f"{out}.run/config.json")
