"""`ae-tf retrain`: train a challenger, judge it against the champion, promote only a better one.

The steps, and why each is safe to interrupt:
  1. read the champion pointer (this snapshot is what a promotion must still match at the end);
  2. train the challenger into `REGISTRY/_staging/<run>/` (a local temporary directory for a gs://
     registry; a crash here leaves only staging behind; versions and the pointer are untouched);
  3. judge challenger and champion on the same held-out rows (ae_tf.model.evaluation);
  4. move the challenger into `versions/` with one rename (on gs://: an upload, metadata last), promoted
     or not, so it can be inspected or promoted by hand later;
  5. if there is no champion, or the challenger's error is lower by at least `min_improvement`
     (relative), compare-and-swap the pointer. If another run promoted meanwhile the swap fails and this
     run reports `kept`: its verdict was reached against a champion that is no longer current;
  6. write the evaluation report beside the version.
The challenger's recipe (features, architecture, epochs, ...) defaults to the champion's own training
config, so a scheduled retrain needs only the registry and the data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from ae_tf.contracts import ModelMetadata
from ae_tf.errors import InvalidInput
from ae_tf.inputs.features import parse_feature_columns
from ae_tf.model.evaluation import (
    EvaluationError,
    Sample,
    held_out_sample,
    input_sample,
    reconstruction_error,
)
from ae_tf.registry.registry import ChampionState, PromotionConflict, Registry, utc_now

log = logging.getLogger(__name__)

PROMOTED = "promoted"
KEPT = "kept"
REPORT_FORMAT = "ae-tf-evaluation/1"

# Settings of one run, never copied from the champion: where this run reads and writes. Every other
# TrainConfig / ModelConfig field (architecture, family options, optimiser, split, seed) is inherited.
PER_RUN = frozenset({"input", "features", "output", "code_size", "model", "checkpoint_dir", "overwrite", "resume",
                     "tfds", "tfds_data_dir"})


class RetrainError(InvalidInput):
    """Arguments that cannot produce a fair retrain; nothing was trained."""


@dataclasses.dataclass(frozen=True)
class RetrainConfig:
    """One retrain. `train` holds explicit training settings (flag name -> value); unset ones are inherited."""

    registry: str
    input: str
    latest_partitions: int | None = None
    features: str | None = None
    code_size: int | None = None
    train: dict = dataclasses.field(default_factory=dict)
    min_improvement: float = 0.01
    eval_input: str | None = None
    eval_rows: int = 100_000

    def validate(self) -> None:
        if not 0 <= self.min_improvement < 1:
            raise RetrainError(f"--min-improvement must be in [0, 1), got {self.min_improvement}")
        if self.eval_rows < 1:
            raise RetrainError(f"--eval-rows must be at least 1, got {self.eval_rows}")
        if self.latest_partitions is not None and self.latest_partitions < 1:
            raise RetrainError(f"--latest-partitions must be at least 1, got {self.latest_partitions}")


@dataclasses.dataclass
class RetrainOutcome:
    decision: str
    version: str
    report: dict
    report_path: str
    state: ChampionState


def inheritable_settings() -> frozenset[str]:
    from ae_tf.model.families import ModelConfig
    from ae_tf.model.train import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)} | {f.name for f in dataclasses.fields(ModelConfig)}
    return frozenset(names - PER_RUN)


def challenger_recipe(config: RetrainConfig, champion: ModelMetadata | None) -> dict:
    """make_train_config keyword arguments: explicit settings over the champion's recorded ones."""
    allowed = inheritable_settings()
    unknown = set(config.train) - allowed
    if unknown:
        raise RetrainError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
    recorded = dict((champion.extra.get("config") if champion else None) or {})
    recorded.update(recorded.pop("model", None) or {})
    recipe = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()
              if k in allowed and v is not None}  # JSON lists back to the tuples the configs hold
    recipe.update({k: v for k, v in config.train.items() if v is not None})
    columns = list(champion.feature_spec.get("columns", [])) if champion else []
    features = config.features or ",".join(columns)
    code_size = config.code_size or (champion.code_size if champion else None)
    if not features or not code_size:
        raise RetrainError(f"{config.registry}: no champion to copy the recipe from; the first retrain "
                           f"needs --features and --code-size")
    if champion and parse_feature_columns(features) != columns:
        raise RetrainError(f"--features {features} differs from the champion's "
                           f"{','.join(columns)}; a challenger must take the same "
                           f"features (train a new model with `ae-tf train` and `ae-tf models promote` it)")
    return {"features": features, "code_size": int(code_size), **recipe}


def select_inputs(config: RetrainConfig) -> str | tuple[str, ...]:
    if config.latest_partitions is None:
        return config.input
    from ae_tf.registry.partitions import newest_partitions

    chosen = tuple(newest_partitions(config.input, config.latest_partitions))
    log.info("training on the newest %d partition(s): %s", len(chosen), ", ".join(chosen))
    return chosen


def decide(challenger: float, champion: float | None, min_improvement: float) -> tuple[str, str, float | None]:
    """(decision, reason, relative improvement). Lower error is better."""
    if champion is None:
        return PROMOTED, "no champion yet", None
    improvement = (champion - challenger) / champion if champion > 0 else 0.0
    if challenger < champion and improvement >= min_improvement:
        return PROMOTED, f"error {challenger:.6g} vs champion {champion:.6g}: {improvement:.1%} better", improvement
    return KEPT, (f"error {challenger:.6g} vs champion {champion:.6g}: improvement {improvement:.1%}, "
                  f"needs {min_improvement:.1%}"), improvement


def run_retrain(config: RetrainConfig) -> RetrainOutcome:
    """The whole job (steps in the module docstring). Raises on bad arguments or a failed run;
    in either case the registry's versions and champion are exactly as before."""
    from ae_tf.model.train import make_train_config, train

    config.validate()
    started, clock = utc_now(), time.perf_counter()
    registry = Registry(config.registry)
    before = registry.state()
    champion_meta = (ModelMetadata.from_dict(registry.metadata(before.champion),
                                             source=registry.version_dir(before.champion))
                     if before.champion else None)
    recipe = challenger_recipe(config, champion_meta)
    inputs = select_inputs(config)

    staging = registry.new_staging_dir()  # always local; a gs:// registry gets the version uploaded
    try:
        model_dir = os.path.join(staging, "model")
        train_config = make_train_config(inputs, recipe.pop("features"), model_dir, recipe.pop("code_size"),
                                         checkpoint_dir=os.path.join(staging, "run"), **recipe)
        log.info("training a challenger for %s (champion: %s)", registry.root, before.champion or "none")
        result = train(train_config)
        trained = result.contract
        sample = judging_sample(config, trained, train_config)
        errors = {"challenger": reconstruction_error(model_dir, sample)}
        if before.champion:
            errors["champion"] = reconstruction_error(registry.version_dir(before.champion), sample)
        decision, reason, improvement = decide(errors["challenger"], errors.get("champion"),
                                               config.min_improvement)
        version = registry.add_version(model_dir)
        state = before
        if decision == PROMOTED:
            try:
                state = registry.promote(version, f"retrain: {reason}", expected=before)
            except PromotionConflict as err:
                decision, reason = KEPT, f"not promoted: another run changed the champion meanwhile ({err})"
                state = registry.state()
        log.info("challenger %s %s: %s", version, decision, reason)
        report = {
            "format": REPORT_FORMAT, "version": version, "decision": decision, "reason": reason,
            "metric": sample.metric, "min_improvement": config.min_improvement, "improvement": improvement,
            "challenger": {"version": version, "error": errors["challenger"]},
            "champion": ({"version": before.champion, "error": errors["champion"]} if before.champion else None),
            "sample": {"rows": sample.rows, "source": sample.source},
            "training": {"inputs": trained.data["inputs"], "rows": trained.data["rows"],
                         "epochs_run": trained.training["epochs_run"], "seconds": trained.training["seconds"]},
            "pointer": {"generation_before": before.generation, "generation_after": state.generation,
                        "champion_after": state.champion},
            "started_at": started, "finished_at": utc_now(), "seconds": round(time.perf_counter() - clock, 2),
        }
        path = registry.write_report(version, report)
        return RetrainOutcome(decision, version, report, path, state)
    finally:
        registry.discard_staging(staging)


def judging_sample(config: RetrainConfig, metadata: ModelMetadata, train_config) -> Sample:
    spec = metadata.spec
    if config.eval_input:
        return input_sample(config.eval_input, spec, config.eval_rows)
    try:
        return held_out_sample(metadata.data["inputs"], spec, train_config.validation_fraction,
                               train_config.seed, train_config.read_rows, config.eval_rows)
    except EvaluationError as err:
        raise RetrainError(str(err)) from None
