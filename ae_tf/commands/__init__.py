"""The `ae-tf` command line: one module per command (its flags and its handler), shared flags and help."""
