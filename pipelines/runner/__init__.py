"""How a pipeline runs: options, runner choice, Dataflow presets, credentials, progress, one-line failures."""
