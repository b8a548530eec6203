"""Getting cases to the city's platform and its requests back: the durable spool, the emitter
and its cursor per sink, the sinks (JSONL, Redis Stream, signed webhook) opened from output URLs
(outputs.py), evidence retention, the command stream and the reference consumer."""
