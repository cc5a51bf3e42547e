"""Beam IO shared by the pipelines: Parquet batches in and out, coders, vector input, artifact files."""
