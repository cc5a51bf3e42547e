"""How data becomes model input: Parquet and TFDS sources, feature columns, image decoding, demo data."""
