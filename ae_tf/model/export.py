"""The model directory contract: a plain SavedModel plus a metadata JSON in its assets.

Signatures (all take `features`: the stored values, raw; normalisation and image decoding are inside):
  encode / serving_default -> embedding [rows, k]
  decode (embedding)       -> reconstruction [rows, width] in raw scale, or [rows, h, w, c] in [0, 1]
  score                    -> reconstruction_error [rows], anomaly_score [rows] (the metadata's
                              `anomaly_score.rule`, ae_tf.model.anomaly_score) and its two terms
                              standardized_error, latent_distance [rows]
  encode_and_score         -> embedding, reconstruction_error, anomaly_score in one pass
  prepare_images           -> images [rows, h, w, c] in [0, 1] and valid [rows] (image bytes only): each file
                              decoded once, a file that does not decode flagged instead of failing the call
  encode_and_score_images  -> embedding, reconstruction_error, anomaly_score of prepared images (image
                              bytes only); with prepare_images, what the Beam pipeline calls on image models
  sample (n, VAE only)     -> samples: n rows (or images) decoded from codes drawn from the prior
`features` is float32 [rows, width] for numeric features, tf.string [rows] of encoded files (PNG, JPEG,
...) for image-bytes features, float32 [rows, h*w*c] for images stored as pixel arrays.
The directory is written under a temporary name and renamed (on gs://: uploaded with the metadata last),
so it is never seen half-written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import platform
import shutil
import tempfile
import uuid

from ae_tf import interrupts, storage
from ae_tf.contracts import ModelMetadata
from ae_tf.errors import InvalidInput
from ae_tf.model.model_cache import local_model_dir

METADATA_FILE = "ae_tf_metadata.json"
HISTORY_FILE = "history.json"
# written last when a model directory is published: on gs:// the directory is complete once it is there
MARKER = f"assets/{METADATA_FILE}"
FORMAT = ModelMetadata.FORMAT
REQUIRED_SIGNATURES = ("encode", "decode", "score", "serving_default")


class ModelDirError(InvalidInput):
    """A path that is not a usable ae-tf model directory."""


def weights_digest(model) -> str:
    """Short content hash of every weight: two exports of the same weights share it."""
    digest = hashlib.sha256()
    for weight in model.weights:  # values and shapes only: layer names differ between runs
        value = weight.numpy()
        digest.update(str(value.shape).encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:12]


def make_version(model, created: dt.datetime) -> str:
    return f"{created:%Y%m%dT%H%M%SZ}-{weights_digest(model)}"


def library_versions() -> dict:
    import keras
    import tensorflow as tf

    import ae_tf

    return {"ae_tf": ae_tf.__version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "python": platform.python_version()}


def _signature_functions(model, spec, score_parameters=None):
    import tensorflow as tf

    from ae_tf.inputs.features import IMAGE
    from ae_tf.inputs.image_validity import decode_images_checked
    from ae_tf.inputs.images import BYTES, model_input_signature
    from ae_tf.model.anomaly_score import score_outputs

    features = model_input_signature(spec)
    code = tf.TensorSpec([None, model.config.code_size], tf.float32, name="embedding")

    def encode(features):
        return {"embedding": model.encode(features)}

    def decode(embedding):
        return {"reconstruction": model.decode(embedding)}

    def score(features):
        out = score_outputs(model, features, score_parameters)
        del out["embedding"]
        return out

    def encode_and_score(features):  # also takes prepared images: the input layer passes rank 4 through
        out = score_outputs(model, features, score_parameters)
        return {name: out[name] for name in ("embedding", "reconstruction_error", "anomaly_score")}

    functions = [
        ("serving_default", encode, features),
        ("encode", encode, features),
        ("decode", decode, code),
        ("score", score, features),
        ("encode_and_score", encode_and_score, features),
    ]
    if spec.kind == IMAGE and spec.image.encoding == BYTES:
        def prepare_images(features):
            images, valid = decode_images_checked(features, spec.image)
            return {"images": images, "valid": valid}

        images = tf.TensorSpec([None, *spec.image.shape], tf.float32, name="images")
        functions += [("prepare_images", prepare_images, features),
                      ("encode_and_score_images", encode_and_score, images)]
    if hasattr(model, "sample"):
        def sample(n):
            return {"samples": model.sample(n)}

        functions.append(("sample", sample, tf.TensorSpec([], tf.int32, name="n")))
    return functions


def export_model(model, model_dir: str, metadata: dict, history: dict | None = None,
                 overwrite: bool = False, score_parameters=None) -> dict:
    """Write `model` as a SavedModel at `model_dir` (atomically) and return the metadata written.

    `score_parameters` (ae_tf.model.anomaly_score.ScoreParameters) are the constants of `anomaly_score`; without
    them it is the plain reconstruction error."""
    import keras

    if model_dir_exists(model_dir) and not overwrite:
        raise ModelDirError(f"{model_dir}: already exists; choose a new path or pass --overwrite")
    from ae_tf.model.batching import activation_floats_per_row

    created = dt.datetime.now(dt.timezone.utc)
    contract = ModelMetadata.from_dict({  # the contract's keys are there
        "format": FORMAT,
        "model_version": make_version(model, created),
        "created_at": created.isoformat(timespec="seconds"),
        "versions": library_versions(),
        **metadata,
        # what sizes the encoder's sub-batches (ae_tf.model.batching)
        "inference": {"activation_floats_per_row": activation_floats_per_row(model)},
    }, source=model_dir)
    spec = contract.spec
    contract.signatures = [name for name, _, _ in _signature_functions(model, spec)]
    metadata = contract.to_dict()
    signatures = _signature_functions(model, spec, score_parameters)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, input_spec in signatures:
        archive.add_endpoint(name=name, fn=fn, input_signature=[input_spec])

    # Written locally first (next to a local target, so the final step is one rename; in a temporary
    # directory for gs://, then uploaded with the metadata last: see ae_tf.storage.publish_dir).
    if storage.is_local(model_dir):
        staging = f"{model_dir.rstrip(os.sep)}.tmp-{uuid.uuid4().hex[:8]}"
    else:
        staging = os.path.join(tempfile.mkdtemp(prefix="ae-tf-export-"), "model")
    try:
        archive.write_out(staging, verbose=False)
        assets = os.path.join(staging, "assets")
        os.makedirs(assets, exist_ok=True)
        with open(os.path.join(assets, METADATA_FILE), "w") as f:
            f.write(ModelMetadata.from_dict(metadata).to_json())
        if history is not None:
            with open(os.path.join(assets, HISTORY_FILE), "w") as f:
                json.dump(history, f, indent=2)
        interrupts.pause_point("publishing")  # tests: the model is written, not yet in place
        if storage.is_local(model_dir) and os.path.exists(model_dir):
            shutil.rmtree(model_dir)
        storage.publish_dir(staging, model_dir, MARKER)
    finally:
        shutil.rmtree(staging if storage.is_local(model_dir) else os.path.dirname(staging), ignore_errors=True)
    return metadata


def model_dir_exists(model_dir: str) -> bool:
    """Locally: the path exists. On gs://: the marker is there (an interrupted upload does not count)."""
    return os.path.exists(model_dir) if storage.is_local(model_dir) else storage.isfile(
        storage.join(model_dir, MARKER))


def read_metadata(model_dir: str) -> dict:
    """The metadata JSON of a model directory (checked against ae_tf.contracts.ModelMetadata) as a dict."""
    return read_model_metadata(model_dir).to_dict()


def read_model_metadata(model_dir: str) -> ModelMetadata:
    """The metadata of a model directory; a clear error when the path is not one of ours."""
    if not storage.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: model directory not found")
    if not storage.isfile(storage.join(model_dir, "saved_model.pb")):
        raise ModelDirError(f"{model_dir}: not a SavedModel (no saved_model.pb)")
    path = storage.join(model_dir, MARKER)
    if not storage.isfile(path):
        raise ModelDirError(f"{model_dir}: SavedModel has no {METADATA_FILE} in assets; not an ae-tf model")
    return parse_metadata(storage.read_bytes(path), model_dir)


def parse_metadata(text: str | bytes, model_dir: str) -> ModelMetadata:
    """The metadata file's text as ModelMetadata; errors are ModelDirError naming the directory."""
    try:
        return ModelMetadata.from_json(text, source=model_dir)
    except InvalidInput as err:
        raise ModelDirError(str(err)) from None


def read_history(model_dir: str) -> dict:
    return json.loads(storage.read_bytes(storage.join(model_dir, "assets", HISTORY_FILE)))


@dataclasses.dataclass
class LoadedModel:
    """A model directory loaded with plain `tf.saved_model.load`, plus its metadata."""

    path: str
    saved_model: object
    metadata: dict

    @functools.cached_property
    def contract(self) -> ModelMetadata:
        """The metadata, typed (ae_tf.contracts.ModelMetadata)."""
        return ModelMetadata.from_dict(self.metadata, source=self.path)

    @property
    def version(self) -> str:
        return self.contract.model_version

    def signature(self, name: str):
        try:
            return self.saved_model.signatures[name]
        except KeyError:
            raise ModelDirError(f"{self.path}: SavedModel has no {name!r} signature") from None


def load_model_dir(model_dir: str) -> LoadedModel:
    """Load for inference: checks the metadata and the required signatures first."""
    import tensorflow as tf

    metadata = read_metadata(model_dir)
    saved = tf.saved_model.load(local_model_dir(model_dir, MARKER))  # gs:// -> a cached local copy
    missing = [s for s in REQUIRED_SIGNATURES if s not in saved.signatures]
    if missing:
        raise ModelDirError(f"{model_dir}: SavedModel lacks signature(s) {', '.join(missing)}")
    return LoadedModel(model_dir, saved, metadata)


def signature_names(model_dir: str) -> list[str]:
    """Signature names read from saved_model.pb without loading the graph (cheap launch-time check)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString(storage.read_bytes(storage.join(model_dir, "saved_model.pb")))
    except Exception as err:  # a protobuf DecodeError: the file is not a SavedModel
        raise ModelDirError(f"{model_dir}: saved_model.pb cannot be parsed ({err})") from None
    return sorted({name for graph in proto.meta_graphs for name in graph.signature_def})


def check_model_dir(model_dir: str) -> dict:
    """Metadata of a usable ae-tf model directory; ModelDirError names what is missing."""
    metadata = read_metadata(model_dir)
    missing = [s for s in REQUIRED_SIGNATURES if s not in signature_names(model_dir)]
    if missing:
        raise ModelDirError(f"{model_dir}: SavedModel lacks signature(s) {', '.join(missing)}")
    return metadata
