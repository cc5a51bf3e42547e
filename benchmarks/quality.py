"""Quality of the model families, measured on real data that ships with scikit-learn (not a timed test).

    python benchmarks/quality.py [--out benchmarks/quality_output] [--sections recon,anomaly,vae]

Every model is trained by the real `ae_tf.model.train.train` on Parquet written here, with the default recipe
of its family (only `--model` and `--code-size` are chosen), so the numbers describe what a user gets.
Baselines (PCA, IsolationForest) are computed in the same run on the same rows.

1. digits (8x8, scaled to [0, 1]), 75/25 split (random_state=0): held-out mean squared error per pixel,
   in pixel units, at code sizes 2, 8 and 16, for each family, next to PCA with as many components.
   Target: dense beats PCA by at least 40% at sizes 8 and 2. Published reference points on this split:
   PCA 0.054 / 0.025 / 0.012; a tuned small MLP autoencoder 0.0127 at size 8.
2. anomaly detection by reconstruction error (AUROC of the model's `score`):
   breast_cancer: trained on 75% of the benign rows, tested on the other benign rows and every
   malignant row (reference: IsolationForest 0.953, PCA 0.891); dense, denoising, sparse and vae,
   each the mean over seeds 0, 1, 2 (small data: one seed moves AUROC by about 0.005);
   digits one-class: each digit in turn is normal, trained on that digit's training rows, tested on the
   whole test split; the mean over the ten, dense (reference: PCA 0.996, IsolationForest 0.971).
   References computed here: IsolationForest (200 trees, mean over the same seeds) and PCA
   reconstruction error on raw and on standardised features, with as many components as the code.
   Target: at least the best reference on both.
3. VAE: a grid of samples decoded from the prior through the exported SavedModel's `sample` signature
   (OUT/vae_samples.png) and the held-out ELBO on the digits test split (nats per image).
Results also go to OUT/quality.json. Expect about 6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ae_tf.embeddings import embedding_array  # noqa: E402

SIZES = (2, 8, 16)
RECON_FAMILIES = ("dense", "conv", "denoising", "sparse", "vae")
ANOMALY_CODE_SIZE = {"breast_cancer": 8, "digits": 8}
ANOMALY_FAMILIES = ("dense", "denoising", "sparse", "vae")
ANOMALY_SEEDS = (0, 1, 2)
SEED = 0


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = data.data.astype(np.float32) / 16.0
    return train_test_split(x, data.target, test_size=0.25, random_state=SEED)


def write_parquet(path: str, x: np.ndarray, scalar_columns: bool = False) -> str:
    if scalar_columns:
        table = pa.table({f"f{j}": x[:, j].astype(np.float64) for j in range(x.shape[1])})
    else:
        table = pa.table({"id": np.arange(len(x)), "pixels": embedding_array(x)})
    pq.write_table(table, path)
    return path


def fit(workdir: str, name: str, x: np.ndarray, code_size: int, scalar_columns: bool = False, **settings):
    """Train with the default recipe (plus `settings`) through the real training entry point."""
    from ae_tf.model.train import make_train_config, train

    data = write_parquet(os.path.join(workdir, f"{name}.parquet"), x, scalar_columns)
    features = ",".join(f"f{j}" for j in range(x.shape[1])) if scalar_columns else "pixels"
    settings.setdefault("seed", SEED)
    config = make_train_config(data, features, os.path.join(workdir, name), code_size, **settings)
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints a line per epoch
        return train(config)


def pixel_mse(model, x: np.ndarray) -> float:
    """Held-out error in pixel units: encode, decode (back to the raw scale), compare."""
    rebuilt = np.asarray(model.decode(model.encode(x))).reshape(len(x), -1)
    return float(np.mean(np.square(rebuilt - x)))


def pca_mse(x_train: np.ndarray, x_test: np.ndarray, k: int) -> float:
    from sklearn.decomposition import PCA

    pca = PCA(k, random_state=SEED).fit(x_train)
    return float(np.mean(np.square(pca.inverse_transform(pca.transform(x_test)) - x_test)))


def reconstruction(workdir: str) -> dict:
    x_train, x_test, _, _ = digits_split()
    results = {"PCA": {k: pca_mse(x_train, x_test, k) for k in SIZES}}
    for family in RECON_FAMILIES:
        results[family] = {}
        for k in SIZES:
            started = time.perf_counter()
            result = fit(workdir, f"digits-{family}-{k}", x_train, k, family=family)
            results[family][k] = pixel_mse(result.model, x_test)
            logging.info("digits %s k=%d: %.5f (%.0fs)", family, k, results[family][k], time.perf_counter() - started)
    return results


def auroc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomaly_scores))]
    return float(roc_auc_score(labels, np.r_[normal_scores, anomaly_scores]))


def _pca_error(x_train: np.ndarray, x_test: np.ndarray, k: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    pca = PCA(min(k, len(x_train) - 1), random_state=SEED).fit(x_train)
    return np.mean(np.square(pca.inverse_transform(pca.transform(x_test)) - x_test), axis=1)


def reference_scores(x_train: np.ndarray, x_test: np.ndarray, k: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Anomaly scores of the baselines: IsolationForest, PCA reconstruction error (raw, standardised)."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(x_train)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant pixels
    return {"IsolationForest": -forest.score_samples(x_test),
            "PCA (raw)": _pca_error(x_train, x_test, k),
            "PCA (standardised)": _pca_error((x_train - mean) / std, (x_test - mean) / std, k)}


def anomaly(workdir: str) -> dict:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    out = {}
    # breast cancer: benign is target 1
    data = load_breast_cancer()
    benign, malignant = data.data[data.target == 1], data.data[data.target == 0]
    b_train, b_test = train_test_split(benign, test_size=0.25, random_state=SEED)
    x_test = np.r_[b_test, malignant]
    is_anomaly = np.r_[np.zeros(len(b_test)), np.ones(len(malignant))].astype(bool)
    k = ANOMALY_CODE_SIZE["breast_cancer"]
    runs = []
    for seed in ANOMALY_SEEDS:
        scores = {}
        for family in ANOMALY_FAMILIES:
            result = fit(workdir, f"breast-cancer-{family}-{seed}", b_train.astype(np.float32), k,
                         scalar_columns=True, family=family, seed=seed)
            scores[family] = np.asarray(result.model.score(x_test.astype(np.float32)))
        scores.update(reference_scores(b_train, x_test, k, seed))
        runs.append({name: auroc(s[~is_anomaly], s[is_anomaly]) for name, s in scores.items()})
        logging.info("breast_cancer seed %d: %s", seed, runs[-1])
    out["breast_cancer"] = {name: float(np.mean([r[name] for r in runs])) for name in runs[0]}
    out["breast_cancer_per_seed"] = runs

    # digits one-class, mean over the ten digits
    x_train, x_test, y_train, y_test = digits_split()
    k = ANOMALY_CODE_SIZE["digits"]
    per_digit = {}
    for digit in range(10):
        normal = x_train[y_train == digit]
        result = fit(workdir, f"digit-{digit}", normal, k)
        scores = {"dense": np.asarray(result.model.score(x_test))}
        scores.update(reference_scores(normal, x_test, k))
        per_digit[digit] = {name: auroc(s[y_test == digit], s[y_test != digit]) for name, s in scores.items()}
        logging.info("digit %d one-class: %s", digit, per_digit[digit])
    names = per_digit[0].keys()
    out["digits_one_class"] = {name: float(np.mean([per_digit[d][name] for d in range(10)])) for name in names}
    out["digits_per_digit"] = per_digit
    return out


def vae(workdir: str, out_dir: str) -> dict:
    """Train the default VAE on digits, sample through the exported SavedModel, held-out ELBO."""
    import tensorflow as tf

    x_train, x_test, _, _ = digits_split()
    k = 8
    result = fit(workdir, "digits-vae-samples", x_train, k, family="vae")
    loaded = tf.saved_model.load(os.path.join(workdir, "digits-vae-samples"))  # plain TF, no project code
    tf.random.set_seed(SEED)
    samples = loaded.signatures["sample"](n=tf.constant(100))["samples"].numpy().reshape(100, 8, 8)
    cells = np.pad(np.kron(np.clip(samples, 0, 1), np.ones((4, 4))), ((0, 0), (2, 2), (2, 2)),
                   constant_values=0.35)  # 4x nearest-neighbour upscale, grey frame: 36x36 per sample
    grid = cells.reshape(10, 10, 36, 36).transpose(0, 2, 1, 3).reshape(360, 360)
    path = os.path.join(out_dir, "vae_samples.png")
    with open(path, "wb") as f:
        f.write(tf.io.encode_png((grid[..., None] * 255).round().astype(np.uint8)).numpy())
    with contextlib.redirect_stdout(io.StringIO()):
        held_out = result.model.evaluate(x_test, batch_size=256, return_dict=True, verbose=0)
    return {"code_size": k, "elbo_test": held_out["elbo"], "kl_test": held_out["kl"],
            "pixel_mse_test": pixel_mse(result.model, x_test),
            "elbo_validation": result.metadata["training"]["metrics"].get("val_elbo"), "samples_png": path,
            "sample_pixel_mean": float(samples.mean()), "data_pixel_mean": float(x_test.mean())}


def print_report(results: dict) -> None:
    if "reconstruction" in results:
        rec = results["reconstruction"]
        print("\ndigits 8x8, held-out MSE per pixel (75/25 split); lower is better")
        print(f"{'model':<12}" + "".join(f"{'k=' + str(k):>10}" for k in SIZES) + "   vs PCA at k=2 / 8 / 16")
        for name, row in rec.items():
            gain = "" if name == "PCA" else "   " + " / ".join(f"{1 - row[k] / rec['PCA'][k]:+.0%}" for k in SIZES)
            print(f"{name:<12}" + "".join(f"{row[k]:>10.4f}" for k in SIZES) + gain)
        dense = rec["dense"]
        ok = all(dense[k] <= 0.6 * rec["PCA"][k] for k in (2, 8))
        print(f"target (dense beats PCA by >= 40% at k=8 and k=2): {'met' if ok else 'NOT met'}")
    if "anomaly" in results:
        an = results["anomaly"]
        print("\nanomaly detection, AUROC; higher is better (breast_cancer: mean of 3 seeds)")
        print(f"{'model':<22}{'breast_cancer':>15}{'digits one-class':>18}")
        names = list(dict.fromkeys([*an["breast_cancer"], *an["digits_one_class"]]))
        for name in names:
            cells = [f"{an[d][name]:>{w}.3f}" if name in an[d] else f"{'-':>{w}}"
                     for d, w in (("breast_cancer", 15), ("digits_one_class", 18))]
            print(f"{name:<22}" + "".join(cells))
        verdicts = []
        for d in ("breast_cancer", "digits_one_class"):
            ours = max((n for n in an[d] if n in ANOMALY_FAMILIES), key=an[d].get)
            reference = max((n for n in an[d] if n not in ANOMALY_FAMILIES), key=an[d].get)
            verdicts.append(an[d][ours] >= an[d][reference])
            print(f"{d}: best family {ours} {an[d][ours]:.3f} vs best reference {reference} {an[d][reference]:.3f}")
        print(f"target (an autoencoder >= best reference on both): {'met' if all(verdicts) else 'NOT met'}")
    if "vae" in results:
        v = results["vae"]
        print(f"\nVAE (code {v['code_size']}): held-out ELBO {v['elbo_test']:.1f} nats/image, pixels in [0, 1] "
              f"(KL {v['kl_test']:.1f}; MSE per pixel from the mean code {v['pixel_mse_test']:.4f}); "
              f"validation ELBO {v['elbo_validation']:.1f}; samples: {v['samples_png']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/quality_output", help="where quality.json and PNGs go")
    parser.add_argument("--sections", default="recon,anomaly,vae", help="comma-separated: recon, anomaly, vae")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("ae_tf", "absl", "tensorflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.makedirs(args.out, exist_ok=True)
    sections = set(args.sections.split(","))
    workdir = tempfile.mkdtemp(prefix="ae_tf_quality_")
    results: dict = {}
    started = time.perf_counter()
    try:
        if "recon" in sections:
            results["reconstruction"] = reconstruction(workdir)
        if "anomaly" in sections:
            results["anomaly"] = anomaly(workdir)
        if "vae" in sections:
            results["vae"] = vae(workdir, args.out)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - started, 1)
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump(results, f, indent=2, default=float)
    print_report(results)
    print(f"\n{results['seconds']:.0f}s; results in {args.out}/quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
