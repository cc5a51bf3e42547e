"""Fitting a model on Parquet: streaming input, device strategy, early stopping, checkpoints, export.

`train(config)` is the whole job behind `ae-tf train`; the resolved config is written beside the model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np

from ae_tf.anomaly import quantile_table
from ae_tf.anomaly_score import fit_parameters, granularity_for, score_outputs
from ae_tf.data import TRAIN, VALIDATION, fingerprint, open_source, resolve_spec  # noqa: F401 (re-exported)
from ae_tf.features import parse_feature_columns
from ae_tf.images import parse_image_size
from ae_tf.models import ModelConfig

log = logging.getLogger(__name__)

ANOMALY_QUANTILE = 0.99


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; defaults are the documented recipe.

    The input is Parquet (`input`, a glob or directory) or a TensorFlow Datasets split by name (`tfds`,
    NAME[:split], with `tfds_data_dir`); `features` may be empty for TFDS (its image is used).
    """

    input: str
    features: tuple[str, ...]
    output: str
    model: ModelConfig = ModelConfig()
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-3
    # a small dataset is cycled so every epoch has at least this many steps: the same 20 epochs then
    # train 1,000 rows as well as 1,000,000 (larger inputs are unaffected)
    min_steps_per_epoch: int = 100
    validation_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    mixed_precision: bool = False
    read_rows: int = 65536
    shuffle_buffer: int = 100_000
    checkpoint_dir: str | None = None
    overwrite: bool = False
    resume: bool = False
    tensorboard: bool = False
    tfds: str | None = None
    tfds_data_dir: str | None = None

    def validate(self) -> None:
        self.model.validate()
        if bool(self.input) == bool(self.tfds):
            raise ValueError("give exactly one training input: --input (Parquet) or --tfds (a TFDS dataset)")
        if self.input and not self.features:
            raise ValueError("--features names no column")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.learning_rate <= 0:
            raise ValueError(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.min_steps_per_epoch < 1:
            raise ValueError(f"--min-steps-per-epoch must be at least 1, got {self.min_steps_per_epoch}")

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


def collect_scores(model, dataset, params=None) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction_error, anomaly_score) of every row of `dataset`, as the exported `score` computes them."""
    errors, scores = [], []
    for batch in dataset:
        out = score_outputs(model, batch, params)
        errors.append(np.asarray(out["reconstruction_error"]))
        scores.append(np.asarray(out["anomaly_score"]))
    if not errors:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(errors), np.concatenate(scores)


def train(config: TrainConfig, callbacks: Sequence = ()) -> TrainResult:
    """Stream the input (Parquet or TFDS), fit, and export the model directory; returns model and metadata.

    Progress is backed up to `run_dir/backup` after every epoch: with `config.resume` a killed run goes on
    from its last finished epoch (weights, optimiser and epoch counter); without it a fresh run starts.
    `callbacks` are extra Keras callbacks, run after ours.
    """
    import keras
    import tensorflow as tf

    from ae_tf.callbacks import EpochHistory, EpochSummary, NaNGuard
    from ae_tf.devices import choose_strategy, describe_devices
    from ae_tf.export import export_model
    from ae_tf.models import build_model, input_layer

    config.validate()
    if tf.io.gfile.exists(config.output) and not config.overwrite:
        raise FileExistsError(f"{config.output}: already exists; choose a new path or pass --overwrite")
    keras.utils.set_random_seed(config.seed)
    source = open_source(config)
    spec = source.spec
    log.info("input: %s (%d input(s)), %d rows, features %s (%s, width %d)", source.inputs[0],
             len(source.inputs), source.num_rows, ",".join(spec.columns), spec.kind, spec.width)

    stats = source.statistics(TRAIN)
    prepare, normalization = input_layer(spec, stats, config.model.normalization)

    val_rows = source.num_rows - stats.count
    steps_per_epoch = max(config.min_steps_per_epoch, -(-stats.count // config.batch_size))
    train_ds = source.dataset(TRAIN, config.batch_size, shuffle=True, shuffle_buffer=config.shuffle_buffer,
                              rows=stats.count).repeat()
    val_ds = source.dataset(VALIDATION, config.batch_size, rows=val_rows) if val_rows > 0 else None

    strategy = choose_strategy(config.mixed_precision)
    with strategy.scope():
        model = build_model(config.model, spec, prepare)
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
        # halve the step size when progress stalls, before early stopping gives up
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=max(1, config.patience // 2)),
        keras.callbacks.ModelCheckpoint(os.path.join(config.run_dir, "best.weights.h5"), monitor=monitor,
                                        save_best_only=True, save_weights_only=True),
        EpochSummary(),
        *([keras.callbacks.TensorBoard(log_dir=os.path.join(config.run_dir, "tensorboard"))]
          if config.tensorboard else []),
        *callbacks,
    ]
    started = time.perf_counter()
    fit = model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                    callbacks=all_callbacks, verbose=2, shuffle=False)
    seconds = time.perf_counter() - started
    history = EpochHistory.read(history_log) if resuming else \
        {k: [float(v) for v in vals] for k, vals in fit.history.items()}

    score_params = fit_parameters(model, source.dataset(TRAIN, 4096), val_ds, granularity=granularity_for(spec.kind))
    val_errors, val_scores = collect_scores(model, val_ds if val_ds is not None else source.dataset(TRAIN, 4096),
                                            score_params)
    measured_on = "validation" if val_ds is not None else "train"
    best_epoch = int(np.argmin(history[monitor])) + 1
    metadata = {
        "family": config.model.family,
        "code_size": config.model.code_size,
        "feature_spec": spec.to_dict(),
        "normalization": normalization,
        "model": model.describe(),
        "training": {
            "device": describe_devices(),
            "epochs_run": len(history["loss"]),
            "best_epoch": best_epoch,
            "train_loss": history["loss"][best_epoch - 1],
            "validation_loss": history.get("val_loss", [None] * best_epoch)[best_epoch - 1],
            "rows_train": int(stats.count),
            "rows_validation": int(len(val_errors)) if val_ds is not None else 0,
            "seconds": round(seconds, 2),
            # every Keras metric at the best epoch: reconstruction, and kl/nll/elbo (vae) or
            # code_activation/sparsity_penalty (sparse), with val_* on the held-out rows
            "metrics": {k: v[best_epoch - 1] for k, v in history.items() if len(v) >= best_epoch},
        },
        "reconstruction_error": {
            "mean": float(val_errors.mean()) if len(val_errors) else None,
            "measured_on": measured_on,
            "quantiles": quantile_table(val_errors),
        },
        # the default anomaly score (ae_tf.anomaly_score): its rule and constants, and its held-out quantiles
        "anomaly_score": {
            **score_params.to_metadata(),
            "mean": float(val_scores.mean()) if len(val_scores) else None,
            "measured_on": measured_on,
            "quantiles": quantile_table(val_scores),
        },
        "anomaly_threshold": {
            "value": float(np.quantile(val_scores, ANOMALY_QUANTILE)) if len(val_scores) else None,
            "quantile": ANOMALY_QUANTILE,
            "score": "anomaly_score",
        },
        "data": {"inputs": source.inputs, "rows": source.num_rows, "fingerprint": source.fingerprint()},
        "config": config.to_dict(),
    }
    metadata = export_model(model, config.output, metadata, history=history, overwrite=config.overwrite,
                            score_parameters=score_params)
    with tf.io.gfile.GFile(os.path.join(config.run_dir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    log.info("exported %s (version %s)", config.output, metadata["model_version"])
    return TrainResult(model, metadata, history)


def make_train_config(input: str | None, features: str | None, output: str, code_size: int,
                      **kwargs) -> TrainConfig:
    """CLI-shaped arguments -> a validated TrainConfig (model fields are split off by name)."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in model_fields and kwargs[k] is not None}
    for name in ("hidden", "filters"):
        if name in model_kwargs and isinstance(model_kwargs[name], str):
            model_kwargs[name] = tuple(int(h) for h in model_kwargs[name].split(",") if h.strip())
    if "image_size" in model_kwargs:
        model_kwargs["image_size"] = parse_image_size(model_kwargs["image_size"])
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    columns = tuple(parse_feature_columns(features)) if features else ()
    config = TrainConfig(input=input or "", features=columns, output=output,
                         model=ModelConfig(code_size=code_size, **model_kwargs), **kwargs)
    config.validate()
    return config
