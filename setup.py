"""One install for users, tests and Dataflow workers (`--setup_file ./setup.py`)."""

from setuptools import find_packages, setup

VERSION = "0.1.0"

INSTALL_REQUIRES = [
    "apache-beam[gcp]>=2.77,<2.78",
    "tensorflow>=2.21,<2.22",
    # TensorFlow 2.21 no longer pulls it in; `ae-tf train --tensorboard` writes its logs through it.
    "tensorboard>=2.20,<3",
    "tensorflow-datasets>=4.9,<5",
    "pyarrow>=14,<26",
    "numpy>=1.26,<2.5",
]

EXTRAS = {
    # CUDA wheels for GPU training/encoding; the CPU build above is used otherwise.
    "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
    # The demo builds its dataset from scikit-learn's bundled digits and ends with the visual report.
    "demo": ["scikit-learn>=1.4,<2", "matplotlib>=3.8,<4"],
    # `ae-tf report` (and `ae-tf sweep`'s plot) draw PNG figures with matplotlib (Agg, no display).
    "report": ["matplotlib>=3.8,<4"],
    "test": [
        "pytest>=8,<10",
        "ruff>=0.6,<1",
        "scikit-learn>=1.4,<2",
        "pandas>=2,<4",
        "polars>=1,<3",
        "duckdb>=1,<3",
        "matplotlib>=3.8,<4",
        # the image tests write PNG, JPEG, GIF, BMP and WebP files (the models decode them with TensorFlow)
        "pillow>=10,<13",
        # benchmarks/image_encode.py crops the photographs bundled in its wheel (skimage/data)
        "scikit-image>=0.24,<0.27",
    ],
}

setup(
    name="ae-tf",
    version=VERSION,
    description="Keras autoencoders exported as SavedModels, and Beam pipelines that encode Parquet into embeddings.",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ae_tf", "ae_tf.*", "pipelines", "pipelines.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ae-tf=ae_tf.cli:main"]},
)
