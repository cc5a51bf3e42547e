"""Beam pipelines over Parquet; they use `ae_tf` only through its public functions."""
