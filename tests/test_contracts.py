"""The typed contracts (ae_tf.contracts): round trips, files from before format versions, newer versions and
broken files refused in one line, unknown keys kept, and no Beam or TensorFlow behind them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ae_tf.contracts import (
    DatasetManifest,
    DedupOutput,
    DedupSummary,
    EncodeManifest,
    ModelMetadata,
    ReduceManifest,
)
from ae_tf.errors import InvalidInput, UserError

ENCODE = {"rows_in": 10, "rows_out": 9, "rows_rejected": 1, "shards": [{"file": "part-00000-of-00001.parquet", "rows": 9}],
          "model_dir": "m", "model_version": "v1", "output_dir": "out", "code_size": 4, "inputs": ["a.parquet"],
          "keep_columns": ["id"], "reconstruction_error": {"mean": 0.1, "max": 0.5}, "rejected_shards": [],
          "skipped_files": [], "model_batch_rows": 512, "anomalies": None,
          "embedding_codec": {"dtype": "float32"}, "started_at": "s", "finished_at": "f", "ae_tf_version": "0.1"}


@pytest.mark.parametrize("kind, data", [
    (EncodeManifest, ENCODE),
    (ReduceManifest, {"rows_in": 3, "rows_out": 3, "shards": [], "pca": {"n_components": 2}}),
    (DatasetManifest, {"rows": 3, "shards": [{"file": "part-00000-of-00001.parquet", "rows": 3}]}),
    (DedupSummary, {"rows": 5, "rows_kept": 4, "rows_removed": 1, "threshold": 0.95, "sweep": []}),
    (ModelMetadata, {"format": "ae-tf-model/1", "model_version": "v", "code_size": 2,
                     "feature_spec": {"columns": ["x"]}, "normalization": {"mean": [0.0]}}),
])
def test_round_trip_keeps_every_key_and_adds_the_format(kind, data):
    contract = kind.from_json(json.dumps(data), source="f.json")
    again = kind.from_json(contract.to_json())
    assert again == contract
    written = json.loads(contract.to_json())
    assert written["format"] == kind.FORMAT
    assert {k: written[k] for k in data} == data  # unknown keys ("normalization") come back unchanged


def test_a_file_from_before_format_versions_is_read():
    manifest = EncodeManifest.from_dict(ENCODE)  # no "format" key: written by an older ae-tf
    assert manifest.rows_out == 9 and manifest.shard_files == ["part-00000-of-00001.parquet"]
    old = {"rows_in": 3, "rows_out": 3, "shards": []}  # only the keys every version wrote
    assert EncodeManifest.from_dict(old).model_batch_rows is None


def test_newer_other_and_broken_files_are_one_line_user_errors():
    with pytest.raises(InvalidInput, match=r"x/_SUCCESS: format 'ae-tf-encode/2' is newer than this ae-tf reads"):
        EncodeManifest.from_dict({**ENCODE, "format": "ae-tf-encode/2"}, source="x/_SUCCESS")
    with pytest.raises(InvalidInput, match=r"format 'ae-tf-reduce/1', expected 'ae-tf-encode/1'"):
        EncodeManifest.from_dict({**ENCODE, "format": "ae-tf-reduce/1"}, source="x/_SUCCESS")
    with pytest.raises(InvalidInput, match=r"x/_SUCCESS: EncodeManifest lacks 'shards'"):
        EncodeManifest.from_dict({"rows_in": 1, "rows_out": 1}, source="x/_SUCCESS")
    with pytest.raises(InvalidInput, match=r"x/_SUCCESS: not JSON"):
        EncodeManifest.from_json("{", source="x/_SUCCESS")
    with pytest.raises(UserError, match=r"m: metadata format None, expected 'ae-tf-model/1'"):
        ModelMetadata.from_dict({"model_version": "v", "code_size": 2, "feature_spec": {}}, source="m")


def test_dedup_layout_names():
    assert DedupOutput.DATASETS == ("annotated", "pairs", "deduplicated")
    assert DedupOutput.summary_names()[0] == "summary.json" and DedupOutput.summary_names()[-1] == "_SUCCESS"
    assert DedupOutput.dataset_dir("gs://b/out/", DedupOutput.PAIRS) == "gs://b/out/pairs"


def test_contracts_import_neither_beam_nor_tensorflow():
    code = ("import sys, ae_tf.contracts; bad = [m for m in ('apache_beam', 'tensorflow', 'pipelines') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
