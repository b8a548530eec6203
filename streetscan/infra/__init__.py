"""What every long-running part stands on: the loop shape (`Worker`), retry backoff, metrics and
the probe server, sharding a fleet. Nothing here knows what an event is."""
