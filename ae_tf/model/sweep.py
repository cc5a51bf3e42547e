"""`ae-tf sweep`: choose the bottleneck size by measurement, not by guess.

A code that is too large lets the network memorise its input; the advice is to start small and grow only
while reconstruction is unacceptable. The sweep trains one model per code size on a short schedule,
measures held-out reconstruction error for each (on the validation rows training held out, in the
model's own units: standardised values or [0, 1] pixels), puts PCA with the same number of components
beside it (the linear baseline: an autoencoder that cannot beat it is not worth its cost), and marks the
smallest size whose error is within `tolerance` of the best, the tolerance being a fraction of the
held-out data's variance (the error of always predicting the mean): with 0.02 the chosen size explains at
most 2% less of the variance than the best. (A tolerance relative to the best error would fail exactly
when every size is good: 0.012 is ten times 0.0012, yet both rebuild the data almost perfectly.) Outputs in OUTPUT_DIR: one model directory
per size (code-K/), sweep.json, sweep.png (the curve) and the printed table.

    ae-tf sweep --input 'data/*.parquet' --features pixels --code-sizes 2,4,8,16,32 --output-dir sweeps/digits
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np

from ae_tf import storage
from ae_tf.errors import InvalidInput, OutputExists
from ae_tf.inputs.data import TRAIN, VALIDATION
from ae_tf.inputs.features import IMAGE
from ae_tf.inputs.sources import open_source
from ae_tf.model.train import TrainConfig, train

log = logging.getLogger(__name__)

PLOT_FILE = "sweep.png"
RESULT_FILE = "sweep.json"


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A TrainConfig template (its output and code size are replaced per size) and the sweep settings."""

    template: TrainConfig
    code_sizes: tuple[int, ...]
    output_dir: str
    tolerance: float = 0.02  # fraction of the held-out variance the chosen size may lose against the best
    max_rows: int = 20_000  # rows of train (for PCA) and validation data held in memory for the comparison

    def validate(self) -> None:
        self.template.validate()
        if not self.code_sizes or any(k < 1 for k in self.code_sizes):
            raise InvalidInput(f"--code-sizes must be positive numbers, got {self.code_sizes}")
        if len(set(self.code_sizes)) != len(self.code_sizes):
            raise InvalidInput(f"--code-sizes repeats a size: {self.code_sizes}")
        if self.tolerance < 0:
            raise InvalidInput(f"--tolerance must be >= 0, got {self.tolerance}")
        if self.template.validation_fraction <= 0:
            raise InvalidInput("a sweep compares held-out error: --validation-fraction must be above 0")
        if self.max_rows < 10:
            raise InvalidInput(f"--max-rows must be at least 10, got {self.max_rows}")


@dataclasses.dataclass
class SweepResult:
    rows: list[dict]  # {code_size, autoencoder, pca, model_dir, epochs}
    chosen: int
    best: int
    variance: float  # held-out error of always predicting the mean: the scale of the tolerance
    plot: str | None
    path: str

    @property
    def range_note(self) -> str | None:
        """When the chosen size is at an end of the sizes tried, the best size may lie outside them."""
        sizes = [row["code_size"] for row in self.rows]
        if len(sizes) > 1 and self.chosen == max(sizes):
            return (f"code size {self.chosen} is the largest tried: a larger code may rebuild better still; "
                    f"try --code-sizes {self.chosen},{2 * self.chosen},{4 * self.chosen}")
        if len(sizes) > 1 and self.chosen == min(sizes) and self.chosen > 1:
            smaller = ",".join(str(k) for k in sorted({max(1, self.chosen // 4), max(1, self.chosen // 2)}))
            return (f"code size {self.chosen} is the smallest tried: a smaller code may do as well; "
                    f"try --code-sizes {smaller},{self.chosen}")
        return None

    def table(self) -> str:
        lines = [f"{'code size':>9}  {'autoencoder':>11}  {'PCA':>9}  {'AE / PCA':>8}"]
        for row in self.rows:
            mark = "  <- smallest within tolerance of the best" if row["code_size"] == self.chosen else ""
            ratio = row["autoencoder"] / row["pca"] if row["pca"] > 0 else float("nan")
            lines.append(f"{row['code_size']:>9}  {row['autoencoder']:>11.5f}  {row['pca']:>9.5f}  {ratio:>8.2f}{mark}")
        return "\n".join(lines)


def parse_code_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        raise InvalidInput(f"--code-sizes must be comma-separated numbers, got {text!r}") from None
    if not sizes:
        raise InvalidInput("--code-sizes names no size")
    return sizes


def choose_size(errors: dict[int, float], tolerance: float, variance: float) -> tuple[int, int]:
    """(smallest size whose error is at most best + tolerance * variance, size with the best error)."""
    best = min(errors, key=lambda k: (errors[k], k))
    limit = errors[best] + tolerance * variance
    return min(k for k, e in errors.items() if e <= limit), best


def _collect(dataset, limit: int) -> list:
    batches, rows = [], 0
    for batch in dataset:
        batch = batch.numpy()
        batches.append(batch[: limit - rows])
        rows += len(batches[-1])
        if rows >= limit:
            break
    return batches


def pca_errors(train_x: np.ndarray, val_x: np.ndarray, sizes: list[int]) -> dict[int, float]:
    """Held-out mean squared error per value of PCA with k components, fitted on `train_x` (rows x d);
    size 0 is the error of predicting the training mean (the held-out variance)."""
    mean = train_x.mean(axis=0)
    _, _, vt = np.linalg.svd(train_x - mean, full_matrices=False)
    centred = val_x - mean
    errors = {0: float(np.mean(np.square(centred)))}
    for k in sizes:
        basis = vt[: min(k, len(vt))]
        rebuilt = centred @ basis.T @ basis
        errors[k] = float(np.mean(np.square(centred - rebuilt)))
    return errors


def _held_out_error(result, model_dir: str, val_raw: list) -> float:
    """Mean held-out reconstruction error of one candidate, through its exported SavedModel (BatchEncoder,
    the inference path of encode, evaluation and the report), so the sweep judges what was written. Image
    rows here are already decoded to [0, 1]: image-bytes models take them through `encode_and_score_images`;
    only pixel-array image models (whose SavedModel takes raw pixel values, not decoded images) are scored
    with the in-memory Keras model that was exported."""
    from ae_tf.model.encoder import BatchEncoder

    if result.contract.spec.kind == IMAGE:
        encoder = BatchEncoder.load(model_dir)
        if encoder.decodes_once:
            return float(np.mean(encoder.score_prepared_images(np.concatenate(val_raw))))
        return float(np.mean(np.concatenate([np.asarray(result.model.score(b)) for b in val_raw])))
    _, errors, _ = BatchEncoder.load(model_dir).encode_array_scored(np.concatenate(val_raw).astype(np.float32))
    return float(np.mean(errors))


def run_sweep(config: SweepConfig) -> SweepResult:
    """Train one model per size, compare with PCA on the same held-out rows, write json/png, return all."""

    config.validate()
    if storage.isdir(config.output_dir) and storage.listdir(config.output_dir) and not config.template.overwrite:
        raise OutputExists(f"{config.output_dir}: not empty; choose a new directory or pass --overwrite")
    storage.makedirs(config.output_dir)
    models = {}
    for k in config.code_sizes:
        settings = dataclasses.replace(config.template, output=storage.join(config.output_dir, f"code-{k}"),
                                       model=dataclasses.replace(config.template.model, code_size=k))
        log.info("sweep: training code size %d", k)
        models[k] = train(settings)

    # the comparison rows, in the model's own (prepared) space; every size shares the same preparation
    source = open_source(config.template)
    prepare = models[config.code_sizes[0]].model.prepare
    train_raw = _collect(source.dataset(TRAIN, 1024), config.max_rows)
    val_raw = _collect(source.dataset(VALIDATION, 1024), config.max_rows)
    if not val_raw:
        raise InvalidInput(f"{source.inputs[0]}: no validation rows to compare on")

    def flat(batches):
        return np.concatenate([np.asarray(prepare(b)).reshape(len(b), -1) for b in batches]).astype(np.float64)

    pca = pca_errors(flat(train_raw), flat(val_raw), list(config.code_sizes))
    variance = pca[0]
    ae = {k: _held_out_error(r, storage.join(config.output_dir, f"code-{k}"), val_raw) for k, r in models.items()}
    chosen, best = choose_size(ae, config.tolerance, variance)
    rows = [{"code_size": k, "autoencoder": ae[k], "pca": pca[k],
             "model_dir": storage.join(config.output_dir, f"code-{k}"),
             "epochs": models[k].contract.training["epochs_run"]} for k in config.code_sizes]
    plot = save_plot(rows, chosen, storage.join(config.output_dir, PLOT_FILE), config.tolerance)
    path = storage.join(config.output_dir, RESULT_FILE)
    result = SweepResult(rows, chosen, best, variance, plot, path)
    storage.write_bytes(path, json.dumps({
        "rows": rows, "chosen": chosen, "best": best, "tolerance": config.tolerance,
        "range_note": result.range_note, "variance": variance,
        "validation_rows": int(sum(len(b) for b in val_raw)),
        "metric": "held-out mean squared reconstruction error per value, in the model's input units",
        "family": config.template.model.family, "inputs": source.inputs}, indent=2))
    return result


def save_plot(rows: list[dict], chosen: int, path: str, tolerance: float) -> str | None:
    """Error against code size (log2 axis), autoencoder and PCA, the chosen size marked."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install 'ae-tf[report]')")
        return None

    sizes = [r["code_size"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(sizes, [r["autoencoder"] for r in rows], "o-", label="autoencoder")
    ax.plot(sizes, [r["pca"] for r in rows], "s--", label="PCA", color="gray")
    chosen_error = next(r["autoencoder"] for r in rows if r["code_size"] == chosen)
    ax.scatter([chosen], [chosen_error], s=160, facecolors="none", edgecolors="red", linewidths=2,
               label=f"chosen: {chosen} (within {tolerance:.0%} of the variance of the best)", zorder=3)
    ax.set_xscale("log", base=2)
    errors = [e for r in rows for e in (r["autoencoder"], r["pca"]) if e > 0]
    if errors and max(errors) > 30 * min(errors):  # errors spanning decades: show them all
        ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.set_xlabel("code size")
    ax.set_ylabel("held-out reconstruction error (MSE)")
    ax.set_title("bottleneck sweep")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    local = path if "://" not in path else "/tmp/ae_tf_sweep.png"
    fig.savefig(local)
    plt.close(fig)
    if local != path:
        storage.copy_file(local, path)
    return path
