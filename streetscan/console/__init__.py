"""Operator console: case index, users and the web app (`streetscan console`, `streetscan users`)."""
