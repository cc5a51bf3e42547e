"""PCA from streamed batches: moments combined in float64, then an eigendecomposition.

`Moments` holds what one pass needs: the row count, the mean and the scatter matrix (sum of outer
products about the mean). It is the same information as count, sum and sum of outer products, kept
centred so merging batches or workers (Chan et al.'s update) loses no digits when the mean is large
compared with the spread. The fit then matches scikit-learn's PCA: covariance with n - 1, components
sign-fixed like `svd_flip` (largest |value| of each component positive), same `n_components` rule for a
variance fraction.

The artifact is plain JSON and .npz (mean, components, eigenvalues, explained variance ratio), so it
loads without this project; `plot_explained_variance` draws the scree plot.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np

from ae_tf.errors import InvalidInput
from ae_tf.vectors.hashing import row_hash, unit_interval

ARTIFACT_FORMAT = "ae_tf.pca/1"
JSON_NAME = "pca.json"
NPZ_NAME = "pca.npz"
PLOT_NAME = "explained_variance.png"


class PcaError(InvalidInput):
    """A fit that cannot be made or applied; the message says why."""


@dataclasses.dataclass
class Moments:
    """count, mean and scatter (sum of outer products about the mean), float64."""

    count: int = 0
    mean: np.ndarray | None = None
    scatter: np.ndarray | None = None

    @classmethod
    def of(cls, matrix: np.ndarray) -> Moments:
        x = np.asarray(matrix, dtype=np.float64)
        if len(x) == 0:
            return cls()
        mean = x.mean(axis=0)
        centred = x - mean
        return cls(len(x), mean, centred.T @ centred)

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        if other.mean.shape != self.mean.shape:
            raise PcaError(f"vectors of {other.mean.shape[0]} and {self.mean.shape[0]} numbers cannot be combined")
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / n)
        scatter = self.scatter + other.scatter + np.outer(delta, delta) * (self.count * other.count / n)
        return Moments(n, mean, scatter)


def fit_sample_mask(matrix: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Rows chosen for a --fit-sample fit: by a seeded hash of each row's values, so the sample does not
    depend on batch sizes, file splits or workers, and a rerun picks the same rows."""
    if fraction >= 1.0:
        return np.ones(len(matrix), dtype=bool)
    return unit_interval(row_hash(matrix, seed)) < fraction


@dataclasses.dataclass
class PcaFit:
    """A fitted PCA: what `transform` uses plus the whole spectrum for the report."""

    mean: np.ndarray  # [features]
    components: np.ndarray  # [n_components, features], rows are unit vectors
    eigenvalues: np.ndarray  # [features], covariance eigenvalues (n - 1), descending; = explained variance
    explained_variance_ratio: np.ndarray  # [features]
    n_rows: int
    selected_by: dict  # {"components": K} or {"variance": fraction}
    info: dict = dataclasses.field(default_factory=dict)  # inputs, column, sample fraction...

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    @property
    def explained_variance(self) -> np.ndarray:
        return self.eigenvalues[: self.n_components]

    def transform(self, matrix: np.ndarray, whiten: bool = False) -> np.ndarray:
        """[rows, features] -> [rows, n_components] float32, as sklearn's PCA.transform."""
        x = np.asarray(matrix, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise PcaError(f"the PCA was fitted on vectors of {self.n_features} numbers, got shape {x.shape}")
        out = (x - self.mean) @ self.components.T
        if whiten:
            out /= np.sqrt(np.maximum(self.explained_variance, np.finfo(np.float64).tiny))
        return out.astype(np.float32)

    def to_dict(self) -> dict:
        """The JSON artifact: every array as nested lists, plus how the fit was made."""
        return {
            "format": ARTIFACT_FORMAT, "n_rows": self.n_rows, "n_features": self.n_features,
            "n_components": self.n_components, "selected_by": self.selected_by,
            "explained_variance_ratio_kept": float(self.explained_variance_ratio[: self.n_components].sum()),
            "mean": self.mean.tolist(), "components": self.components.tolist(),
            "eigenvalues": self.eigenvalues.tolist(),
            "explained_variance_ratio": self.explained_variance_ratio.tolist(), **self.info,
        }

    def to_json_bytes(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2).encode()

    def to_npz_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, components=self.components, eigenvalues=self.eigenvalues,
                 explained_variance_ratio=self.explained_variance_ratio)
        return buffer.getvalue()

    @classmethod
    def from_json_bytes(cls, data: bytes, source: str = "pca.json") -> PcaFit:
        try:
            d = json.loads(data)
            if d.get("format") != ARTIFACT_FORMAT:
                raise PcaError(f"{source}: not an ae-tf PCA artifact (format {d.get('format')!r})")
            known = {"format", "n_rows", "n_features", "n_components", "selected_by", "mean", "components",
                     "eigenvalues", "explained_variance_ratio", "explained_variance_ratio_kept"}
            return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["components"], dtype=np.float64),
                       np.asarray(d["eigenvalues"], dtype=np.float64),
                       np.asarray(d["explained_variance_ratio"], dtype=np.float64), int(d["n_rows"]),
                       dict(d["selected_by"]), {k: v for k, v in d.items() if k not in known})
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise PcaError(f"{source}: unreadable PCA artifact ({err})") from None


def components_for_variance(ratio: np.ndarray, fraction: float) -> int:
    """Fewest leading components whose explained variance ratio sums past `fraction` (sklearn's rule)."""
    count = int(np.searchsorted(np.cumsum(ratio), fraction, side="right")) + 1
    return min(count, len(ratio))


def fit_pca(moments: Moments, components: int | None = None, variance: float | None = None,
            info: dict | None = None) -> PcaFit:
    """Eigendecomposition of the covariance; keep `components` or enough for `variance` (default 0.95)."""
    if moments.count < 2:
        raise PcaError(f"PCA needs at least 2 rows to fit, got {moments.count}")
    if components is not None and variance is not None:
        raise PcaError("give either --components or --variance, not both")
    covariance = moments.scatter / (moments.count - 1)
    eigenvalues, vectors = np.linalg.eigh((covariance + covariance.T) / 2)
    eigenvalues, vectors = np.maximum(eigenvalues[::-1], 0.0), vectors[:, ::-1].T
    largest = np.argmax(np.abs(vectors), axis=1)
    vectors *= np.sign(vectors[np.arange(len(vectors)), largest])[:, None]
    total = eigenvalues.sum()
    ratio = eigenvalues / total if total > 0 else np.zeros_like(eigenvalues)
    features = len(eigenvalues)
    if components is not None:
        if not 1 <= components <= features:
            raise PcaError(f"--components must be between 1 and {features} (the vector size), got {components}")
        selected_by, keep = {"components": int(components)}, int(components)
    else:
        variance = 0.95 if variance is None else variance
        if not 0.0 < variance <= 1.0:
            raise PcaError(f"--variance must be a fraction in (0, 1], got {variance}")
        selected_by, keep = {"variance": float(variance)}, components_for_variance(ratio, variance)
    return PcaFit(moments.mean.copy(), vectors[:keep].copy(), eigenvalues, ratio, int(moments.count),
                  selected_by, dict(info or {}))


def plot_explained_variance(fit: PcaFit) -> bytes:
    """PNG scree plot: variance ratio per component, cumulative ratio, and the components kept."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    ratio = fit.explained_variance_ratio
    index = np.arange(1, len(ratio) + 1)
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    axes.bar(index, ratio, color="#4c72b0", label="explained variance ratio")
    axes.plot(index, np.cumsum(ratio), color="#dd8452", marker="o", markersize=3, label="cumulative")
    axes.axvline(fit.n_components + 0.5, color="grey", linestyle="--",
                 label=f"kept: {fit.n_components} ({ratio[: fit.n_components].sum():.1%})")
    if "variance" in fit.selected_by:
        axes.axhline(fit.selected_by["variance"], color="grey", linestyle=":", linewidth=1,
                     label=f"target {fit.selected_by['variance']:.0%}")
    axes.set_xlabel("component")
    axes.set_ylabel("fraction of variance")
    axes.set_ylim(0, 1.05)
    axes.set_title(f"PCA of {fit.n_rows:,} rows x {fit.n_features} features")
    axes.legend(loc="center right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
