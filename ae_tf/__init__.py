"""ae-tf: Keras autoencoders exported as SavedModels, for batch embedding of Parquet data.

Importing the package is cheap: TensorFlow is imported by the modules that need it, and Beam never is.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`ae_tf.read_embeddings` without importing pyarrow until it is used."""
    if name == "read_embeddings":
        from ae_tf.embeddings import read_embeddings

        return read_embeddings
    raise AttributeError(f"module 'ae_tf' has no attribute {name!r}")
