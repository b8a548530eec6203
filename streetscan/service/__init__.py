"""The long-running service parts around the per-frame pipeline: the durable event spool, case
sinks, the emitter that feeds them, metrics and probes, evidence retention, retry backoff, and
the shape every loop shares (`Worker`)."""
