"""`ae-tf sweep`: one model per code size, held-out error next to PCA, the smallest good size, a plot."""

import json
import os

import numpy as np
import pytest
from conftest import write_vector_dataset

from ae_tf.model.sweep import SweepResult, choose_size, parse_code_sizes, pca_errors
from ae_tf_cli import main as cli_main


def test_choose_size_takes_the_smallest_within_tolerance():
    errors = {2: 0.50, 4: 0.20, 8: 0.104, 16: 0.100, 32: 0.101}
    assert choose_size(errors, 0.05, variance=1.0) == (8, 16)
    assert choose_size(errors, 0.0, variance=1.0) == (16, 16)
    assert choose_size(errors, 0.5, variance=1.0) == (2, 16)
    assert choose_size({3: 0.012, 6: 0.0012}, 0.02, variance=1.0) == (3, 6)  # both rebuild almost perfectly
    assert parse_code_sizes("8, 2,4") == (2, 4, 8)
    with pytest.raises(ValueError, match="comma-separated numbers"):
        parse_code_sizes("2,x")


def test_a_chosen_size_at_the_end_of_the_range_is_flagged():
    def result(sizes, chosen):
        rows = [{"code_size": k, "autoencoder": 1.0 / k, "pca": 1.0 / k} for k in sizes]
        return SweepResult(rows, chosen, chosen, 1.0, None, "sweep.json")

    largest = result((2, 4, 8, 16, 32), 32).range_note
    assert "32 is the largest tried" in largest and "--code-sizes 32,64,128" in largest
    assert "smallest tried" in result((4, 8, 16), 4).range_note and "--code-sizes 1,2,4" in result((4, 8), 4).range_note
    assert result((2, 4, 8), 4).range_note is None
    assert result((1, 2, 4), 1).range_note is None  # nothing smaller than 1 to try


def test_pca_errors_match_scikit_learn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    train, held_out = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)), rng.normal(size=(100, 6))
    ours = pca_errors(train, held_out, [1, 3, 6])
    assert ours[0] == pytest.approx(np.mean((held_out - train.mean(axis=0)) ** 2))
    for k in (1, 3):
        pca = PCA(k).fit(train)
        expected = np.mean((pca.inverse_transform(pca.transform(held_out)) - held_out) ** 2)
        assert ours[k] == pytest.approx(expected, rel=1e-6)
    assert ours[6] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_sweep_on_rank_three_data_finds_three_and_plots(tmp_path, capsys):
    write_vector_dataset(tmp_path / "d", rows=600, files=1)  # rows near a 3-D subspace, plus noise
    out = tmp_path / "sweep"
    code = cli_main(["sweep", "--input", str(tmp_path / "d"), "--features", "vec", "--code-sizes", "1,3,6",
                     "--output-dir", str(out), "--hidden", "32", "--epochs", "6", "--batch-size", "64",
                     "--validation-fraction", "0.2"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "code size" in printed and "PCA" in printed and "<- smallest within tolerance" in printed
    assert "note       code size" not in printed  # 3 is inside the range tried
    result = json.loads((out / "sweep.json").read_text())
    rows = {r["code_size"]: r for r in result["rows"]}
    assert set(rows) == {1, 3, 6}
    # PCA: three components capture the subspace, one does not
    assert rows[3]["pca"] < 0.2 * rows[1]["pca"]
    # the autoencoder agrees: size 1 is far worse, and the chosen size is the smallest near the best
    assert rows[1]["autoencoder"] > 2 * min(rows[3]["autoencoder"], rows[6]["autoencoder"])
    assert result["chosen"] == 3 and result["best"] in (3, 6) and result["range_note"] is None
    assert result["validation_rows"] > 60
    for k in (1, 3, 6):
        assert os.path.exists(out / f"code-{k}" / "saved_model.pb")
    png = (out / "sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    with pytest.raises(FileExistsError, match="not empty"):
        from ae_tf.model.sweep import SweepConfig, run_sweep
        from ae_tf.model.train import make_train_config

        template = make_train_config(str(tmp_path / "d"), "vec", str(out / "t"), 1)
        run_sweep(SweepConfig(template, (1,), str(out)))


@pytest.mark.slow
def test_image_sweep_scores_the_exported_savedmodel(tmp_path, monkeypatch):
    """Image-bytes candidates are judged through the SavedModel (BatchEncoder), like numeric ones, and
    agree with the in-memory Keras model they were exported from."""
    from image_data import write_image_dataset

    from ae_tf.model import sweep
    from ae_tf.model.encoder import BatchEncoder

    write_image_dataset(tmp_path / "img", rows=48)
    calls, keras_errors = [], []
    real_score = BatchEncoder.score_prepared_images

    def recording(self, images):
        calls.append(len(images))
        return real_score(self, images)

    real_error = sweep._held_out_error

    def with_keras(result, model_dir, val_raw):
        keras_errors.append(float(np.mean(np.concatenate([np.asarray(result.model.score(b)) for b in val_raw]))))
        return real_error(result, model_dir, val_raw)

    monkeypatch.setattr(BatchEncoder, "score_prepared_images", recording)
    monkeypatch.setattr(sweep, "_held_out_error", with_keras)
    out = tmp_path / "sweep"
    assert cli_main(["sweep", "--input", str(tmp_path / "img"), "--features", "image", "--model", "conv",
                     "--image-size", "16", "--channels", "3", "--filters", "4,8", "--code-sizes", "2,4",
                     "--output-dir", str(out), "--epochs", "1", "--batch-size", "16",
                     "--validation-fraction", "0.25"]) == 0
    assert len(calls) == 2 and all(n > 0 for n in calls)
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["autoencoder"] for r in rows] == pytest.approx(keras_errors, rel=1e-4)
