"""Fitting a model on Parquet: streaming input, device strategy, early stopping, checkpoints, export.

`train(config)` is the whole job behind `ae-tf train`; the resolved config is written beside the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from ae_tf.anomaly import quantile_table
from ae_tf.data import TRAIN, VALIDATION, ParquetSource, match_files, open_parquet
from ae_tf.features import VECTOR, FeatureSpec, infer_feature_spec, parse_feature_columns
from ae_tf.models import ModelConfig

log = logging.getLogger(__name__)

ANOMALY_QUANTILE = 0.99


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults are the documented recipe."""

    input: str
    features: tuple[str, ...]
    output: str
    model: ModelConfig = ModelConfig()
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    validation_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    mixed_precision: bool = False
    read_rows: int = 65536
    shuffle_buffer: int = 100_000
    checkpoint_dir: str | None = None
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        self.model.validate()
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be positive, got {self.learning_rate}")

    @property
    def run_dir(self) -> str:
        """Checkpoints and logs of this run live beside the model, never inside it."""
        return self.checkpoint_dir or f"{self.output.rstrip('/')}.run"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["features"] = list(self.features)
        data["model"]["hidden"] = list(self.model.hidden)
        return data


@dataclasses.dataclass
class TrainResult:
    model: object
    metadata: dict
    history: dict


def fingerprint(files: list[str], num_rows: int) -> str:
    """Identifies the training data cheaply: file names, sizes and the row count."""
    import tensorflow as tf

    digest = hashlib.sha256(str(num_rows).encode())
    for path in files:
        digest.update(path.encode())
        digest.update(str(tf.io.gfile.stat(path).length).encode())
    return digest.hexdigest()[:16]


def resolve_spec(files: list[str], features: tuple[str, ...]) -> FeatureSpec:
    first = open_parquet(files[0])
    sample = next(first.iter_batches(batch_size=1024, columns=list(features)), None)
    sample_table = pa.Table.from_batches([sample]) if sample is not None else None
    return infer_feature_spec(first.schema_arrow, features, source=files[0], sample=sample_table)


def collect_scores(model, dataset) -> np.ndarray:
    scores = [np.asarray(model.score(batch)) for batch in dataset]
    return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)


def train(config: TrainConfig, callbacks: Sequence = ()) -> TrainResult:
    """Stream the Parquet input, fit, and export the model directory; returns model and metadata.

    Progress is backed up to `run_dir/backup` after every epoch: with `config.resume` a killed run goes on
    from its last finished epoch (weights, optimiser and epoch counter); without it a fresh run starts.
    `callbacks` are extra Keras callbacks, run after ours.
    """
    import keras
    import tensorflow as tf

    from ae_tf.callbacks import EpochHistory, EpochSummary, NaNGuard
    from ae_tf.devices import choose_strategy, describe_devices
    from ae_tf.export import export_model
    from ae_tf.models import Standardize, build_model

    config.validate()
    if tf.io.gfile.exists(config.output) and not config.overwrite:
        raise FileExistsError(f"{config.output}: already exists; choose a new path or pass --overwrite")
    keras.utils.set_random_seed(config.seed)
    files = match_files(config.input)
    spec = resolve_spec(files, config.features)
    source = ParquetSource(files, spec, config.validation_fraction, config.seed, config.read_rows)
    log.info("input: %d file(s), %d rows, features %s (%s, width %d)",
             len(files), source.num_rows, ",".join(spec.columns), spec.kind, spec.width)

    stats = source.statistics(TRAIN)
    mode = config.model.normalization
    if mode == "auto":
        mode = "global" if spec.kind == VECTOR else "feature"
    shift, scale = stats.scales(mode)

    val_rows = source.num_rows - stats.count
    train_ds = source.dataset(TRAIN, config.batch_size, shuffle=True, shuffle_buffer=config.shuffle_buffer,
                              rows=stats.count)
    val_ds = source.dataset(VALIDATION, config.batch_size, rows=val_rows) if val_rows > 0 else None

    strategy = choose_strategy(config.mixed_precision)
    with strategy.scope():
        model = build_model(config.model, spec.width, Standardize(shift, scale, name="standardize"))
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        model(next(iter(train_ds.take(1))))  # build every variable now, inside the strategy's scope
    monitor = "val_loss" if val_ds is not None else "loss"
    backup_dir = os.path.join(config.run_dir, "backup")
    history_log = os.path.join(config.run_dir, "history.jsonl")
    resuming = config.resume and tf.io.gfile.exists(backup_dir)
    if not resuming:
        for stale in (backup_dir, history_log):
            if tf.io.gfile.exists(stale):
                tf.io.gfile.rmtree(stale) if tf.io.gfile.isdir(stale) else tf.io.gfile.remove(stale)
    elif config.resume:
        log.info("resuming from %s", backup_dir)
    tf.io.gfile.makedirs(config.run_dir)
    all_callbacks = [
        NaNGuard(),
        keras.callbacks.BackupAndRestore(backup_dir),
        EpochHistory(history_log),
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience, restore_best_weights=True),
        keras.callbacks.ModelCheckpoint(os.path.join(config.run_dir, "best.weights.h5"), monitor=monitor,
                                        save_best_only=True, save_weights_only=True),
        EpochSummary(),
        *callbacks,
    ]
    started = time.perf_counter()
    fit = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, callbacks=all_callbacks, verbose=2,
                    shuffle=False)
    seconds = time.perf_counter() - started
    history = EpochHistory.read(history_log) if resuming else \
        {k: [float(v) for v in vals] for k, vals in fit.history.items()}

    val_scores = collect_scores(model, val_ds if val_ds is not None else source.dataset(TRAIN, 4096))
    best_epoch = int(np.argmin(history[monitor])) + 1
    metadata = {
        "family": config.model.family,
        "code_size": config.model.code_size,
        "feature_spec": spec.to_dict(),
        "normalization": {"mode": mode, "shift": shift.tolist(), "scale": scale.tolist()},
        "training": {
            "device": describe_devices(),
            "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch,
            "train_loss": history["loss"][best_epoch - 1],
            "validation_loss": history.get("val_loss", [None] * best_epoch)[best_epoch - 1],
            "rows_train": int(stats.count),
            "rows_validation": int(len(val_scores)) if val_ds is not None else 0,
            "seconds": round(seconds, 2),
        },
        "reconstruction_error": {
            "mean": float(val_scores.mean()) if len(val_scores) else None,
            "measured_on": "validation" if val_ds is not None else "train",
            "quantiles": quantile_table(val_scores),
        },
        "anomaly_threshold": {
            "value": float(np.quantile(val_scores, ANOMALY_QUANTILE)) if len(val_scores) else None,
            "quantile": ANOMALY_QUANTILE,
        },
        "data": {"inputs": files, "rows": source.num_rows, "fingerprint": fingerprint(files, source.num_rows)},
        "config": config.to_dict(),
    }
    metadata = export_model(model, config.output, metadata, history=history, overwrite=config.overwrite)
    with tf.io.gfile.GFile(os.path.join(config.run_dir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    log.info("exported %s (version %s)", config.output, metadata["model_version"])
    return TrainResult(model, metadata, history)


def make_train_config(input: str, features: str, output: str, code_size: int, **kwargs) -> TrainConfig:
    """CLI-shaped arguments -> a validated TrainConfig (model fields are split off by name)."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in model_fields and kwargs[k] is not None}
    if "hidden" in model_kwargs and isinstance(model_kwargs["hidden"], str):
        model_kwargs["hidden"] = tuple(int(h) for h in model_kwargs["hidden"].split(",") if h.strip())
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    config = TrainConfig(input=input, features=tuple(parse_feature_columns(features)), output=output,
                         model=ModelConfig(code_size=code_size, **model_kwargs), **kwargs)
    config.validate()
    return config
