"""Fitting a model on Parquet: streaming input, device strategy, early stopping, checkpoints, export.

`train(config)` is the whole job behind `ae-tf train`; the resolved config is written beside the model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence

import numpy as np

from ae_tf import interrupts, storage
from ae_tf.contracts import ModelMetadata
from ae_tf.defaults import BATCH_ROWS
from ae_tf.errors import InvalidInput, OutputExists
from ae_tf.inputs.data import TRAIN, VALIDATION, fingerprint, resolve_spec  # noqa: F401 (re-exported)
from ae_tf.inputs.features import parse_feature_columns
from ae_tf.inputs.images import parse_image_size
from ae_tf.inputs.input_cache import CACHE_MODES
from ae_tf.inputs.sources import open_source
from ae_tf.model.anomaly import quantile_table
from ae_tf.model.anomaly_score import fit_parameters, granularity_for, score_outputs
from ae_tf.model.export import model_dir_exists
from ae_tf.model.families import ModelConfig

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
    epochs: int = 20  # passes over the training rows (ae_tf.model.schedule)
    batch_size: int = 256
    learning_rate: float = 3e-3
    # a floor of optimiser steps that may raise the passes of a small dataset; None: 100 per epoch for
    # rows of <= 1,024 values (tabular, thumbnails), none for larger images (ae_tf.model.schedule)
    min_steps: int | None = None
    cache: str = "auto"  # decoded rows in memory between passes: auto | memory | none (ae_tf.inputs.input_cache)
    cache_limit_gb: float | None = None  # the budget of --cache auto; None: a quarter of RAM, at most 4 GB
    validation_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    mixed_precision: bool = False
    read_rows: int = BATCH_ROWS
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
            raise InvalidInput("give exactly one training input: --input (Parquet) or --tfds (a TFDS dataset)")
        if self.input and not self.features:
            raise InvalidInput("--features names no column")
        if self.epochs < 1:
            raise InvalidInput(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise InvalidInput(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 <= self.validation_fraction < 1:
            raise InvalidInput(f"--validation-fraction must be in [0, 1), got {self.validation_fraction}")
        if self.learning_rate <= 0:
            raise InvalidInput(f"--learning-rate must be positive, got {self.learning_rate}")
        if self.min_steps is not None and self.min_steps < 0:
            raise InvalidInput(f"--min-steps must be at least 0, got {self.min_steps}")
        if self.cache not in CACHE_MODES:
            raise InvalidInput(f"--cache must be one of {', '.join(CACHE_MODES)}, got {self.cache!r}")
        if self.cache_limit_gb is not None and self.cache_limit_gb < 0:
            raise InvalidInput(f"--cache-limit-gb must be at least 0, got {self.cache_limit_gb}")
        if self.checkpoint_dir and not storage.is_local(self.checkpoint_dir):
            raise InvalidInput(f"--checkpoint-dir {self.checkpoint_dir}: must be a local directory (checkpoints are "
                             f"written every epoch; a gs:// model keeps them in the local cache by default)")

    @property
    def run_dir(self) -> str:
        """Checkpoints and logs of this run live beside a local model, never inside it; for a gs:// model in
        the local cache (one directory per output path, so --resume finds it on the same machine)."""
        if self.checkpoint_dir:
            return self.checkpoint_dir
        if storage.is_local(self.output):
            return f"{self.output.rstrip(os.sep)}.run"
        key = hashlib.sha256(self.output.rstrip("/").encode()).hexdigest()[:16]
        return os.path.join(storage.cache_root(), "runs", f"{os.path.basename(self.output.rstrip('/'))}-{key}")

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

    @property
    def contract(self) -> ModelMetadata:
        """The metadata written, typed (ae_tf.contracts.ModelMetadata)."""
        return ModelMetadata.from_dict(self.metadata)


def collect_scores(model, dataset, params=None) -> tuple[np.ndarray, np.ndarray]:
    """(reconstruction_error, anomaly_score) of every row of `dataset`, as the exported `score` computes them."""
    from ae_tf.model.anomaly_score import calibration_passes, compiled_step

    def errors_and_scores(model, x):
        out = score_outputs(model, x, params)
        return out["reconstruction_error"], out["anomaly_score"]

    errors, scores = [], []
    for error, score in calibration_passes(compiled_step(model, errors_and_scores), dataset):
        errors.append(error)
        scores.append(score)
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

    from ae_tf.inputs.input_cache import decide_cache, decoded_row_bytes
    from ae_tf.model.batching import rows_within_budget
    from ae_tf.model.callbacks import EpochHistory, EpochSummary, NaNGuard, PausePoint
    from ae_tf.model.devices import choose_strategy, describe_devices
    from ae_tf.model.export import export_model
    from ae_tf.model.families import build_model, input_layer
    from ae_tf.model.schedule import plan_schedule

    config.validate()
    if model_dir_exists(config.output) and not config.overwrite:
        raise OutputExists(f"{config.output}: already exists; choose a new path or pass --overwrite")
    keras.utils.set_random_seed(config.seed)
    source = open_source(config)
    spec = source.spec
    log.info("input: %s (%d input(s)), %d rows, features %s (%s, width %d)", source.inputs[0],
             len(source.inputs), source.num_rows, ",".join(spec.columns), spec.kind, spec.width)

    stats = source.statistics(TRAIN)
    prepare, normalization = input_layer(spec, stats, config.model.normalization)

    val_rows = source.num_rows - stats.count
    schedule = plan_schedule(config.epochs, stats.count, config.batch_size, decoded_row_bytes(spec) // 4,
                             config.min_steps)
    log.info("%s", schedule.describe())
    cache = decide_cache(config.cache, spec, source.num_rows, config.cache_limit_gb)
    log.info("%s", cache.describe())
    train_ds, val_ds = input_datasets(source, config, stats.count, val_rows, cache.enabled)
    train_ds = train_ds.repeat()  # whole passes per epoch; a dropped undecodable row never ends a run early

    strategy = choose_strategy(config.mixed_precision)
    with strategy.scope():
        model = build_model(config.model, spec, prepare)
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        model(next(iter(train_ds.take(1))))  # build every variable now, inside the strategy's scope
    monitor = "val_loss" if val_ds is not None else "loss"
    backup_dir = os.path.join(config.run_dir, "backup")
    history_log = os.path.join(config.run_dir, "history.jsonl")
    resuming = config.resume and os.path.exists(backup_dir)
    if not resuming:
        for stale in (backup_dir, history_log):
            if os.path.exists(stale):
                shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
    elif config.resume:
        log.info("resuming from %s", backup_dir)
    os.makedirs(config.run_dir, exist_ok=True)
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
    if os.environ.get(interrupts.PAUSE_ENV) == "batches":
        all_callbacks.append(PausePoint())
    interrupts.pause_point("planning")  # tests: input planned and model built, no step taken yet
    started = time.perf_counter()
    # Validation reads a repeated stream in fixed-size slices: with an unknown row count (image bytes may
    # fail to decode) a finite one would end each evaluation with Keras' "ran out of data" warning.
    fit = model.fit(train_ds, validation_data=val_ds.repeat() if val_ds is not None else None,
                    validation_steps=-(-val_rows // config.batch_size) if val_ds is not None else None,
                    epochs=config.epochs, steps_per_epoch=schedule.steps_per_epoch,
                    callbacks=all_callbacks, verbose=0, shuffle=False)  # EpochSummary logs each epoch once
    seconds = time.perf_counter() - started
    history = EpochHistory.read(history_log) if resuming else \
        {k: [float(v) for v in vals] for k, vals in fit.history.items()}

    score_rows = rows_within_budget(model, spec.width)
    score_params = fit_parameters(model, source.dataset(TRAIN, score_rows), val_ds,
                                  granularity=granularity_for(spec.kind))
    val_errors, val_scores = collect_scores(model, val_ds if val_ds is not None else source.dataset(TRAIN, score_rows),
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
            "schedule": schedule.to_dict(),
            "cache": cache.to_dict(),
            # every Keras metric at the best epoch: reconstruction, and kl/nll/elbo (vae) or
            # code_activation/sparsity_penalty (sparse), with val_* on the held-out rows
            "metrics": {k: v[best_epoch - 1] for k, v in history.items() if len(v) >= best_epoch},
        },
        "reconstruction_error": {
            "mean": float(val_errors.mean()) if len(val_errors) else None,
            "measured_on": measured_on,
            "quantiles": quantile_table(val_errors),
        },
        # the default anomaly score (ae_tf.model.anomaly_score): its rule and constants, and its held-out quantiles
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
    with open(os.path.join(config.run_dir, "config.json"), "w") as f:
        json.dump(config.to_dict(), f, indent=2)
    log.info("exported %s (version %s)", config.output, ModelMetadata.from_dict(metadata).model_version)
    return TrainResult(model, metadata, history)


def input_datasets(source, config: TrainConfig, train_rows: int, val_rows: int, cached: bool):
    """(train, validation or None) tf.data pipelines: streamed from the source, or decoded once into memory."""
    if not cached:
        train_ds = source.dataset(TRAIN, config.batch_size, shuffle=True, shuffle_buffer=config.shuffle_buffer,
                                  rows=train_rows)
        val_ds = source.dataset(VALIDATION, config.batch_size, rows=val_rows) if val_rows > 0 else None
        return train_ds, val_ds
    from ae_tf.inputs.input_cache import cached_dataset, load_part

    started = time.perf_counter()
    train_part = load_part(source, TRAIN, train_rows)
    val_part = load_part(source, VALIDATION, val_rows) if val_rows > 0 else None
    log.info("cache: %d train + %d validation rows decoded into memory in %.1fs", train_part.rows,
             val_part.rows if val_part else 0, time.perf_counter() - started)
    train_ds = cached_dataset(train_part, source, config.batch_size, shuffle=True,
                              shuffle_buffer=config.shuffle_buffer)
    val_ds = cached_dataset(val_part, source, config.batch_size) if val_part else None
    return train_ds, val_ds


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
