"""The model directory contract: a plain SavedModel plus a metadata JSON in its assets.

Signatures (all take `features`: the stored values, raw; normalisation and image decoding are inside):
  encode / serving_default -> embedding [rows, k]
  decode (embedding)       -> reconstruction [rows, width] in raw scale, or [rows, h, w, c] in [0, 1]
  score                    -> reconstruction_error [rows], anomaly_score [rows] (the metadata's
                              `anomaly_score.rule`, ae_tf.anomaly_score) and its two terms
                              standardized_error, latent_distance [rows]
  encode_and_score         -> embedding, reconstruction_error, anomaly_score in one pass (what Beam calls)
  sample (n, VAE only)     -> samples: n rows (or images) decoded from codes drawn from the prior
`features` is float32 [rows, width] for numeric features, tf.string [rows] of encoded files (PNG, JPEG,
...) for image-bytes features, float32 [rows, h*w*c] for images stored as pixel arrays.
The directory is written under a temporary name and renamed, so it is never seen half-written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import uuid

METADATA_FILE = "ae_tf_metadata.json"
HISTORY_FILE = "history.json"
FORMAT = "ae-tf-model/1"
REQUIRED_SIGNATURES = ("encode", "decode", "score", "serving_default")


class ModelDirError(ValueError):
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

    from ae_tf.anomaly_score import score_outputs
    from ae_tf.images import model_input_signature

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

    def encode_and_score(features):
        out = score_outputs(model, features, score_parameters)
        return {name: out[name] for name in ("embedding", "reconstruction_error", "anomaly_score")}

    functions = [
        ("serving_default", encode, features),
        ("encode", encode, features),
        ("decode", decode, code),
        ("score", score, features),
        ("encode_and_score", encode_and_score, features),
    ]
    if hasattr(model, "sample"):
        def sample(n):
            return {"samples": model.sample(n)}

        functions.append(("sample", sample, tf.TensorSpec([], tf.int32, name="n")))
    return functions


def export_model(model, model_dir: str, metadata: dict, history: dict | None = None,
                 overwrite: bool = False, score_parameters=None) -> dict:
    """Write `model` as a SavedModel at `model_dir` (atomically) and return the metadata written.

    `score_parameters` (ae_tf.anomaly_score.ScoreParameters) are the constants of `anomaly_score`; without
    them it is the plain reconstruction error."""
    import keras
    import tensorflow as tf

    if tf.io.gfile.exists(model_dir) and not overwrite:
        raise ModelDirError(f"{model_dir}: already exists; choose a new path or pass --overwrite")
    from ae_tf.features import FeatureSpec

    spec = FeatureSpec.from_dict(metadata["feature_spec"])
    created = dt.datetime.now(dt.timezone.utc)
    metadata = {
        "format": FORMAT,
        "model_version": make_version(model, created),
        "created_at": created.isoformat(timespec="seconds"),
        "versions": library_versions(),
        **metadata,
        "signatures": [name for name, _, _ in _signature_functions(model, spec)],
    }
    signatures = _signature_functions(model, spec, score_parameters)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, input_spec in signatures:
        archive.add_endpoint(name=name, fn=fn, input_signature=[input_spec])

    staging = f"{model_dir.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        archive.write_out(staging, verbose=False)
        assets = os.path.join(staging, "assets")
        tf.io.gfile.makedirs(assets)
        with tf.io.gfile.GFile(os.path.join(assets, METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2, sort_keys=True)
        if history is not None:
            with tf.io.gfile.GFile(os.path.join(assets, HISTORY_FILE), "w") as f:
                json.dump(history, f, indent=2)
        if tf.io.gfile.exists(model_dir):
            tf.io.gfile.rmtree(model_dir)
        tf.io.gfile.rename(staging, model_dir)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return metadata


def read_metadata(model_dir: str) -> dict:
    """The metadata JSON of a model directory; a clear error when the path is not one of ours."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(model_dir):
        raise ModelDirError(f"{model_dir}: model directory not found")
    if not tf.io.gfile.exists(os.path.join(model_dir, "saved_model.pb")):
        raise ModelDirError(f"{model_dir}: not a SavedModel (no saved_model.pb)")
    path = os.path.join(model_dir, "assets", METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise ModelDirError(f"{model_dir}: SavedModel has no {METADATA_FILE} in assets; not an ae-tf model")
    with tf.io.gfile.GFile(path) as f:
        metadata = json.load(f)
    if metadata.get("format") != FORMAT:
        raise ModelDirError(f"{model_dir}: metadata format {metadata.get('format')!r}, expected {FORMAT!r}")
    return metadata


def read_history(model_dir: str) -> dict:
    import tensorflow as tf

    with tf.io.gfile.GFile(os.path.join(model_dir, "assets", HISTORY_FILE)) as f:
        return json.load(f)


@dataclasses.dataclass
class LoadedModel:
    """A model directory loaded with plain `tf.saved_model.load`, plus its metadata."""

    path: str
    saved_model: object
    metadata: dict

    @property
    def version(self) -> str:
        return self.metadata["model_version"]

    def signature(self, name: str):
        try:
            return self.saved_model.signatures[name]
        except KeyError:
            raise ModelDirError(f"{self.path}: SavedModel has no {name!r} signature") from None


def load_model_dir(model_dir: str) -> LoadedModel:
    """Load for inference: checks the metadata and the required signatures first."""
    import tensorflow as tf

    metadata = read_metadata(model_dir)
    saved = tf.saved_model.load(model_dir)
    missing = [s for s in REQUIRED_SIGNATURES if s not in saved.signatures]
    if missing:
        raise ModelDirError(f"{model_dir}: SavedModel lacks signature(s) {', '.join(missing)}")
    return LoadedModel(model_dir, saved, metadata)


def signature_names(model_dir: str) -> list[str]:
    """Signature names read from saved_model.pb without loading the graph (cheap launch-time check)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        try:
            proto.ParseFromString(f.read())
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
