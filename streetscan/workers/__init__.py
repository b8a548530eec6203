"""Process loops that drive the pipeline: replay of recorded footage (and, later, the live daemon)."""
