"""Beam pipelines over Parquet; they use `ae_tf` only through its public functions.

Importing this package alone loads no Beam (`ae-tf train` imports pipelines.commands for the command table).
"""
