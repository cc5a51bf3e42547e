"""The files that pass between the halves of ae-tf, typed: what a writer puts there and a reader may rely on.

  ModelMetadata    assets/ae_tf_metadata.json of a model directory (ae_tf.model.export)
  EncodeManifest   OUT_DIR/_SUCCESS of `ae-tf encode` (pipelines.encode; the report and refresh read it)
  ReduceManifest   OUT_DIR/_SUCCESS of `ae-tf reduce` (pipelines.reduce)
  DedupOutput      the layout of `ae-tf dedup`'s output: directory names, columns, summary file names
  DedupSummary     OUT_DIR/summary.json (and OUT_DIR/_SUCCESS) of `ae-tf dedup`
  DatasetManifest  the `_SUCCESS` of each dedup dataset (annotated/, pairs/, deduplicated/)

Each has to_dict/from_dict and to_json/from_json and a format version ("ae-tf-encode/1"...). The JSON keys
are the fields' names; keys a reader does not know are kept in `extra` and written back unchanged. A file
without a "format" (written before it existed) is read as version 1; a newer version of the same format
is refused with one line naming the file. No Beam, no TensorFlow here: both halves import this.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar, TypeVar

from ae_tf.errors import InvalidInput

T = TypeVar("T", bound="Contract")
SUCCESS = "_SUCCESS"  # the manifest of every pipeline output, written last


@dataclasses.dataclass(kw_only=True)
class Contract:
    """A JSON document with a format version; subclasses list its keys as fields."""

    FORMAT: ClassVar[str] = ""
    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.name != "extra"]

    def to_dict(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.keys()}
        return {"format": self.FORMAT, **self.extra, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any], source: str = "") -> T:
        where = f"{source}: " if source else ""
        if not isinstance(data, dict):
            raise InvalidInput(f"{where}expected a JSON object ({cls.__name__}), got {type(data).__name__}")
        check_format(data.get("format"), cls.FORMAT, where)
        known = cls.keys()
        required = [f.name for f in dataclasses.fields(cls)
                    if f.name != "extra" and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise InvalidInput(f"{where}{cls.__name__} lacks {missing[0]!r}; not an ae-tf {cls.FORMAT} file")
        extra = {k: v for k, v in data.items() if k not in known and k != "format"}
        return cls(**{k: data[k] for k in known if k in data}, extra=extra)

    @classmethod
    def from_json(cls: type[T], text: str | bytes, source: str = "") -> T:
        try:
            data = json.loads(text)
        except ValueError as err:
            raise InvalidInput(f"{source}: not JSON ({err})") from None
        return cls.from_dict(data, source)


def check_format(found: object, expected: str, where: str = "") -> None:
    """None (a file from before format versions) or the same name at a version we read."""
    if found is None:
        return
    name, _, version = expected.partition("/")
    found_name, _, found_version = str(found).partition("/")
    if found_name != name:
        raise InvalidInput(f"{where}format {found!r}, expected {expected!r}")
    if not found_version.isdigit() or int(found_version) > int(version):
        raise InvalidInput(f"{where}format {found!r} is newer than this ae-tf reads ({expected}); upgrade ae-tf")


@dataclasses.dataclass(kw_only=True)
class ModelMetadata(Contract):
    """A model directory's metadata: what encode, score, evaluation and the report rely on. The rest
    (normalization, model, reconstruction_error, anomaly_score, config...) is in `extra`."""

    FORMAT: ClassVar[str] = "ae-tf-model/1"
    model_version: str
    code_size: int
    feature_spec: dict[str, Any]
    family: str = "dense"
    created_at: str | None = None
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    anomaly_threshold: dict[str, Any] | None = None
    inference: dict[str, Any] = dataclasses.field(default_factory=dict)
    signatures: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> ModelMetadata:
        found = data.get("format") if isinstance(data, dict) else None
        if found != cls.FORMAT:  # model metadata has had its format from the start
            raise InvalidInput(f"{source}: metadata format {found!r}, expected {cls.FORMAT!r}")
        return super().from_dict(data, source)

    @property
    def spec(self):
        """The feature spec as ae_tf.inputs.features.FeatureSpec."""
        from ae_tf.inputs.features import FeatureSpec

        return FeatureSpec.from_dict(self.feature_spec)


@dataclasses.dataclass(kw_only=True)
class EncodeManifest(Contract):
    """`_SUCCESS` of an encode run. `shards`: [{"file", "rows"}] in split order; `embedding_codec`: the
    ae_tf.vectors.codes.Codec of the embedding column. A store version's manifest (pipelines.refresh) has
    the same keys plus folder, embedding_dtype, files and run (in `extra`)."""

    FORMAT: ClassVar[str] = "ae-tf-encode/1"
    rows_in: int
    rows_out: int
    shards: list[dict[str, Any]]
    rows_rejected: int = 0
    model_dir: str | None = None
    model_version: str | None = None
    output_dir: str | None = None
    code_size: int | None = None
    inputs: list[str] = dataclasses.field(default_factory=list)
    keep_columns: list[str] = dataclasses.field(default_factory=list)
    reconstruction_error: dict[str, float | None] = dataclasses.field(default_factory=dict)
    rejected_shards: list[str] = dataclasses.field(default_factory=list)
    skipped_files: list[dict[str, str]] = dataclasses.field(default_factory=list)
    model_batch_rows: int | None = None
    anomalies: dict[str, Any] | None = None
    embedding_codec: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    ae_tf_version: str | None = None

    @property
    def shard_files(self) -> list[str]:
        return [shard["file"] for shard in self.shards]


@dataclasses.dataclass(kw_only=True)
class ReduceManifest(Contract):
    """`_SUCCESS` of a reduce run; `pca` describes the fit (and where its artifact is)."""

    FORMAT: ClassVar[str] = "ae-tf-reduce/1"
    rows_in: int
    rows_out: int
    shards: list[dict[str, Any]]
    pca: dict[str, Any]
    rows_rejected: int = 0
    inputs: list[str] = dataclasses.field(default_factory=list)
    output_dir: str | None = None
    column: str = "embedding"
    keep_columns: list[str] = dataclasses.field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    ae_tf_version: str | None = None


class DedupOutput:
    """The layout of a dedup output directory: three datasets of part-*.parquet, each with its own
    `_SUCCESS`, the summary as summary.json and OUT_DIR/_SUCCESS (written last)."""

    ANNOTATED, PAIRS, DEDUPLICATED = "annotated", "pairs", "deduplicated"
    DATASETS = (ANNOTATED, PAIRS, DEDUPLICATED)
    SUMMARY = "summary.json"
    # summary file names of earlier ae-tf versions, read when summary.json is not there
    OLD_SUMMARIES = ("dedup_summary.json", "_SUMMARY.json")
    # columns added to the input rows in annotated/
    CLUSTER_ID, KEEP, MAX_SIMILARITY = "cluster_id", "keep", "max_similarity"
    ANNOTATION_COLUMNS = (CLUSTER_ID, KEEP, MAX_SIMILARITY)
    # columns of pairs/
    ID_A, ID_B, SIMILARITY, EXACT, REPRESENTATIVE = "id_a", "id_b", "similarity", "exact", "representative"
    PAIR_COLUMNS = (ID_A, ID_B, SIMILARITY, EXACT, REPRESENTATIVE)

    @staticmethod
    def dataset_dir(output_dir: str, name: str) -> str:
        return f"{output_dir.rstrip('/')}/{name}"

    @classmethod
    def summary_names(cls) -> tuple[str, ...]:
        """Where a reader looks for the summary, in order."""
        return (cls.SUMMARY, *cls.OLD_SUMMARIES, SUCCESS)


@dataclasses.dataclass(kw_only=True)
class DatasetManifest(Contract):
    """`_SUCCESS` of one dedup dataset."""

    FORMAT: ClassVar[str] = "ae-tf-dataset/1"
    rows: int
    shards: list[dict[str, Any]]
    finished_at: str | None = None


@dataclasses.dataclass(kw_only=True)
class DedupSummary(Contract):
    """summary.json of a dedup run (the same document is OUT_DIR/_SUCCESS)."""

    FORMAT: ClassVar[str] = "ae-tf-dedup/1"
    rows: int
    rows_kept: int
    rows_removed: int
    threshold: float
    clusters: int = 0
    rows_in_clusters: int = 0
    pairs: int = 0
    keep_policy: str = "first"
    priority: str | None = None
    descending: bool = False
    cluster_mode: str = "greedy"
    sweep: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    exact_duplicates: dict[str, Any] = dataclasses.field(default_factory=dict)
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)
    partitions: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: list[str] = dataclasses.field(default_factory=list)
    output_dir: str | None = None
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    column: str = "embedding"
    id_column: str = "id"
    seed: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    ae_tf_version: str | None = None
