"""Loops that drive the pipeline: camera readers, batched inference, analysis, and the one runner
that `streetscan run` (live daemon) and `streetscan replay` configure."""
