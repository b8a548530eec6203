#!/usr/bin/env python3
"""Train StreetScan's own YOLO from scratch, resumably, and export it with its model card.

    .venv/bin/python scripts/train.py                       # recipe: scripts/train.yaml
    .venv/bin/python scripts/train.py --epochs 2 --imgsz 160 --data /tmp/tiny/data.yaml --no-export

Every epoch writes `<project>/<name>/weights/last.pt`. Run the same command again after any
interruption (a 10-minute device call ending, a crash) and training resumes from it; once the
run is complete it goes straight to export. `--fresh` discards the run and starts over.
Export: ONNX (opset 17, dynamic batch and H/W, so the 16:9 rectangular input works) and a
card in `export.out`, named `export.name`, carrying the recipe and data provenance.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")  # no hub, no font or weight downloads: nothing is reachable
sys.path.insert(0, str(REPO / "scripts"))

from export_yolo import export_yolo  # noqa: E402

TRAIN_KEYS = (
    "model",
    "data",
    "imgsz",
    "epochs",
    "batch",
    "seed",
    "deterministic",
    "patience",
    "workers",
    "device",
    "close_mosaic",
    "project",
    "name",
)
OPTIONAL_KEYS = ("time", "cache")  # absent from the recipe: epochs rule, images read from disk
# Absent: Ultralytics' own choice. A fine-tune of a converged checkpoint wants a small fixed rate and
# a short warm-up instead of the from-scratch schedule.
SCHEDULE_KEYS = ("optimizer", "lr0", "warmup_epochs")
# Absent: Ultralytics' default jitter. `scale` is the random zoom gain (0.5: 0.5x-1.5x); a larger one
# shrinks more training objects to the size a pedestrian has under an elevated camera.
AUGMENT_KEYS = ("scale",)
PASSED_WHEN_SET = SCHEDULE_KEYS + AUGMENT_KEYS  # given to Ultralytics only when the recipe or a flag sets them


def offline_ultralytics() -> None:
    """Let Ultralytics train on a machine that reaches nothing and has only its own wheel.

    A GPU machine starts bare, without polars (a 40 MiB wheel Ultralytics reads one CSV with) or
    the YOLO weights its AMP self-check downloads; both would stop the run, neither changes it.
    """
    import ultralytics.engine.trainer as trainer

    try:
        import polars  # noqa: F401
    except ImportError:
        import csv

        def read_results_csv(self):
            try:
                with open(self.csv, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
            except OSError:
                return {}
            return {k.strip(): [float(r[k]) for r in rows] for k in (rows[0] if rows else {})}

        trainer.BaseTrainer.read_results_csv = read_results_csv
    from ultralytics.utils import WEIGHTS_DIR

    if not any(WEIGHTS_DIR.glob("yolo*n.pt")):
        trainer.check_amp = lambda model: True  # AMP on: the check needs a download


def load_recipe(path: Path, overrides: dict) -> dict:
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    missing = [k for k in TRAIN_KEYS if k not in recipe and k != "device"]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    for key in OPTIONAL_KEYS + PASSED_WHEN_SET:
        recipe.setdefault(key, None)
    return recipe


def is_checkpoint(model: str) -> bool:
    """A .pt model is a trained checkpoint to fine-tune; an architecture .yaml starts from scratch."""
    return str(model).endswith(".pt")


def resumable(last: Path) -> bool:
    """Ultralytics strips the optimizer and sets epoch -1 once a run is complete."""
    if not last.exists():
        return False
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return int(ckpt.get("epoch", -1)) >= 0


def train(recipe: dict, fresh: bool = False) -> Path:
    """Train (or resume, or do nothing if complete); the run's best.pt."""
    from ultralytics import YOLO

    offline_ultralytics()
    run_dir = (
        (REPO / recipe["project"] / recipe["name"])
        if not Path(recipe["project"]).is_absolute()
        else Path(recipe["project"]) / recipe["name"]
    )
    last, best = run_dir / "weights" / "last.pt", run_dir / "weights" / "best.pt"
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    if resumable(last):
        print(f"resuming {last}")
        YOLO(str(last)).train(resume=True)
    elif best.exists():
        print(f"{run_dir} is complete; nothing to train")
    else:
        data = Path(recipe["data"])
        if not data.exists():
            raise SystemExit(f"dataset {data} not found: build it with scripts/build_dataset.py --out {data.parent}")
        YOLO(recipe["model"]).train(
            data=str(data),
            imgsz=recipe["imgsz"],
            epochs=recipe["epochs"],
            batch=recipe["batch"],
            seed=recipe["seed"],
            deterministic=recipe["deterministic"],
            patience=recipe["patience"],
            workers=recipe["workers"],
            device=recipe.get("device"),
            close_mosaic=recipe["close_mosaic"],
            # Ultralytics drops a checkpoint's weights unless told to keep them.
            project=str(run_dir.parent),
            name=run_dir.name,
            exist_ok=True,
            pretrained=is_checkpoint(recipe["model"]),
            plots=False,  # plotting fetches a font from the internet
            amp=True,
            save_period=-1,
            verbose=False,
            time=recipe["time"],
            cache=recipe["cache"] or False,
            **{k: recipe[k] for k in PASSED_WHEN_SET if recipe[k] is not None},
        )
    if not best.exists():
        raise SystemExit(f"training left no {best}")
    return best


def hardware(device: str | None) -> str:
    import torch

    from streetscan.capacity import machine

    if torch.cuda.is_available() and device != "cpu":
        return f"GPU {torch.cuda.get_device_name(0)}"
    m = machine()
    return f"CPU {m['cpu']} ({m['cores']} cores)"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "scripts" / "train.yaml")
    for key, typ in (
        ("model", str),
        ("data", str),
        ("imgsz", int),
        ("epochs", int),
        ("batch", int),
        ("workers", int),
        ("device", str),
        ("project", str),
        ("name", str),
        ("seed", int),
        ("time", float),
        ("cache", str),
        ("optimizer", str),
        ("lr0", float),
        ("warmup_epochs", float),
        ("scale", float),
    ):
        ap.add_argument(f"--{key}", type=typ)
    ap.add_argument("--fresh", action="store_true", help="discard an existing run and start over")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--export-out", type=Path, help="where the ONNX and card go (default: the recipe's export.out)")
    args = ap.parse_args(argv)
    recipe = load_recipe(
        args.config, {k: getattr(args, k) for k in TRAIN_KEYS + OPTIONAL_KEYS + PASSED_WHEN_SET if hasattr(args, k)}
    )
    best = train(recipe, fresh=args.fresh)
    print(f"best weights: {best}")
    if args.no_export:
        return
    ex = recipe["export"]
    start = (
        f"fine-tuned from {recipe['model']}"
        if is_checkpoint(recipe["model"])
        else f"trained from scratch ({recipe['model']})"
    )
    provenance = (
        f"{start} by scripts/train.py (imgsz {recipe['imgsz']}, "
        f"{recipe['epochs']} epochs, batch {recipe['batch']}, seed {recipe['seed']}) on {recipe['data']}, "
        f"on {hardware(recipe.get('device'))}"
    )
    card = export_yolo(
        str(best),
        args.export_out or REPO / ex["out"],
        ex["name"],
        version=str(ex["version"]),
        imgsz=recipe["imgsz"],
        provenance=provenance,
        licence="AGPL-3.0 (Ultralytics code); data licences in models/MODEL_CARD.md",
    )
    print(f"exported: {card}")


if __name__ == "__main__":
    main()
