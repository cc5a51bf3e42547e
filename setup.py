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
    # The demo builds its dataset from scikit-learn's bundled digits and ends with the visual report;
    # `ae-tf demo --images` crops the photographs that ship inside scikit-image and scikit-learn.
    "demo": ["scikit-learn>=1.4,<2", "matplotlib>=3.8,<4", "scikit-image>=0.24,<0.26", "pillow>=10,<13"],
    # `ae-tf report` (and `ae-tf sweep`'s plot) draw PNG figures with matplotlib (Agg, no display).
    "report": ["matplotlib>=3.8,<4"],
    # benchmarks/dedup.py compares against faiss exact range search (and builds digits data with scikit-learn)
    "benchmark": ["faiss-cpu>=1.8,<2", "scikit-learn>=1.4,<2"],
    "test": [
        "pytest>=8,<10",
        # `make test` runs the suite on two workers (-n 2 --dist loadfile)
        "pytest-xdist>=3.5,<4",
        "ruff>=0.6,<1",
        "scikit-learn>=1.4,<2",
        "pandas>=2,<4",
        "polars>=1,<3",
        "duckdb>=1,<3",
        "matplotlib>=3.8,<4",
        # the image tests write PNG, JPEG, GIF, BMP and WebP files (the models decode them with TensorFlow)
        "pillow>=10,<13",
        # a real GCS API on localhost for the gs:// tests (tests/gcs_emulator.py)
        "gcp-storage-emulator>=2026.7,<2027",
        # benchmarks/image_encode.py crops the photographs bundled in its wheel (skimage/data)
        "scikit-image>=0.24,<0.26",
    ],
}

setup(
    name="ae-tf",
    version=VERSION,
    description="Keras autoencoders exported as SavedModels, and Beam pipelines that encode Parquet into embeddings.",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["ae_tf", "ae_tf.*", "pipelines", "pipelines.*"]),
    py_modules=["ae_tf_cli"],  # the command table above both packages (docs/ARCHITECTURE.md)
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["ae-tf=ae_tf_cli:main"]},
)
