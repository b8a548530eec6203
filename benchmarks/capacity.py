#!/usr/bin/env python3
"""Capacity benchmark: how many cameras this machine carries. Same as `streetscan bench`:

.venv/bin/python benchmarks/capacity.py --quick                 # < 2 min on 2 cores
.venv/bin/python benchmarks/capacity.py --analysis-fps 1 --analysis-fps 2 --model yolo11n.yaml
"""

from streetscan.cli import app

if __name__ == "__main__":
    app(["bench", *__import__("sys").argv[1:]])
