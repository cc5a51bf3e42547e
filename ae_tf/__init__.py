"""ae-tf: Keras autoencoders exported as SavedModels, for batch embedding of Parquet data.

Importing the package is cheap: TensorFlow is imported by the modules that need it, and Beam never is.
"""

__version__ = "0.1.0"
