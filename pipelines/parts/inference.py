"""A Beam ModelHandler for ae-tf model directories, usable with Beam's own `RunInference`.

Beam's stock TF handlers cannot load Keras 3 SavedModels, so this one loads the directory
with `tf.saved_model.load` (through ae_tf) and calls its `encode_and_score` signature. Elements are whole
Arrow batches (pyarrow.RecordBatch or Table): one model call per batch, no Python object per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from ae_tf.embeddings import EMBEDDING, RECONSTRUCTION_ERROR, embedding_array
from ae_tf.malloc import tune_malloc
from ae_tf.model.encoder import BatchEncoder
from ae_tf.model.export import read_metadata

ArrowBatch = pa.RecordBatch | pa.Table
CHECKED = {"checked": True}  # inference_args of the encode pipeline (AutoencoderModelHandler.run_inference)


class AutoencoderModelHandler(ModelHandler[ArrowBatch, PredictionResult, BatchEncoder]):
    """Loads an ae-tf model directory once per worker process and encodes Arrow batches (the model is
    called on sub-batches of `model_batch_rows`, automatic by default: see ae_tf.model.batching).

    Each PredictionResult carries the input batch as `example` and, as `inference`, a RecordBatch with
    `embedding` (fixed_size_list<float32>[k]) and `reconstruction_error` (float32), row-aligned with it.
    """

    def __init__(self, model_dir: str, model_batch_rows: int | None = None, **kwargs):
        # Elements are already batches: RunInference should hand them over one at a time.
        kwargs.setdefault("max_batch_size", 1)
        super().__init__(**kwargs)
        self._model_dir = model_dir
        self._model_batch_rows = model_batch_rows  # rows per model call; None: sized automatically
        self._max_batch_size = kwargs["max_batch_size"]

    @property
    def model_dir(self) -> str:
        return self._model_dir

    def metadata(self) -> dict:
        return read_metadata(self._model_dir)

    def load_model(self) -> BatchEncoder:
        tune_malloc()  # once per worker process: big batches reuse freed blocks (ae_tf.malloc)
        return BatchEncoder.load(self._model_dir, self._model_batch_rows)

    def run_inference(self, batch: Sequence[ArrowBatch], model: BatchEncoder,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        """One PredictionResult per Arrow batch. With inference_args CHECKED ({"checked": True}), as the
        encode pipeline asks, `inference` is the BatchEncoder's CheckedEncoding instead: the outputs of the
        rows that can be encoded and every row's verdict, so bad rows are routed aside instead of failing."""
        if inference_args and inference_args.get("checked"):
            for element in batch:
                yield PredictionResult(example=element, inference=model.encode_checked(element),
                                       model_id=model.version)
            return
        for element in batch:
            if element.num_rows == 0:
                embedding = np.zeros((0, model.code_size), dtype=np.float32)
                error = np.zeros(0, dtype=np.float32)
            else:
                embedding, error = model.encode(element)
            outputs = pa.RecordBatch.from_arrays(
                [embedding_array(embedding), pa.array(error.astype(np.float32, copy=False))],
                names=[EMBEDDING, RECONSTRUCTION_ERROR],
            )
            yield PredictionResult(example=element, inference=outputs, model_id=model.version)

    def get_num_bytes(self, batch: Sequence[ArrowBatch]) -> int:
        return sum(element.nbytes for element in batch)

    def get_metrics_namespace(self) -> str:
        return "ae_tf"

    def batch_elements_kwargs(self) -> dict:
        return {"max_batch_size": self._max_batch_size}
