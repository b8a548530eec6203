"""Model cards: an ONNX file plus the YAML that says how to feed it and what its classes mean.

Weights are resolved offline only: an explicit path, else a name in the models directory
(`STREETSCAN_MODELS`, default: the models installed with the package, `streetscan/models`, which
in a checkout is the repository's `models/`). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

# Package data: the wheel carries the project's models; a checkout links streetscan/models -> models/.
PACKAGED_MODELS_DIR = Path(str(resources.files("streetscan") / "models"))
FAMILIES = ("yolo", "centernet")
# The confidence an object needs to count for a rule when neither its card nor streams.yaml says.
DEFAULT_MIN_CONFIDENCE = 0.35


class ModelError(RuntimeError):
    """A model card or its weights are missing or inconsistent; the message says what to do."""


def models_dir() -> Path:
    return Path(os.environ.get("STREETSCAN_MODELS") or PACKAGED_MODELS_DIR)


@cache
def vocabulary(path: Path | None = None) -> tuple[str, ...]:
    """The object vocabulary the rules speak (models/vocabulary.yaml), in a fixed order."""
    path = path or PACKAGED_MODELS_DIR / "vocabulary.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(data["objects"])


@dataclass(frozen=True)
class Thresholds:
    """A model's own confidence scale, calibrated on event truth (benchmarks/ACCURACY.md) and kept in
    its card: a CenterNet's 0.3 and a YOLO's 0.3 do not mean the same thing.

    detect:          the decoder drops boxes below this; everything above reaches the tracker, whose
                     second stage (ByteTrack's low-score matching) keeps occluded, far objects alive
    track_high:      first-stage association; only such detections may start a track
    track_activate:  the least confidence a detection needs to start a track
    track_min_frames: a new track gets its id once matched on this many consecutive analysed frames:
                     persistence, not a single high score, is what activates a distant parked car
    min_confidence:  per scene class ("default" for the rest): an *untracked* detection counts for a
                     rule from this confidence; a detection on an activated track always counts
    """

    detect: float = 0.1
    track_high: float = 0.5
    track_activate: float = 0.4
    track_min_frames: int = 2
    min_confidence: dict[str, float] = field(default_factory=lambda: {"default": DEFAULT_MIN_CONFIDENCE})

    def min_confidence_for(self, scene_class: str) -> float:
        return self.min_confidence.get(scene_class, self.min_confidence.get("default", DEFAULT_MIN_CONFIDENCE))

    @classmethod
    def from_card(cls, raw: dict | None, card_path: Path) -> Thresholds:
        if not raw:
            return cls()
        if not isinstance(raw, dict):
            raise ModelError(f"model card {card_path}: thresholds must be a mapping")
        known = {"detect", "track_high", "track_activate", "track_min_frames", "min_confidence"}
        unknown = set(raw) - known
        if unknown:
            raise ModelError(
                f"model card {card_path}: unknown thresholds {', '.join(sorted(unknown))}; "
                f"known: {', '.join(sorted(known))}"
            )
        mc = raw.get("min_confidence", {"default": DEFAULT_MIN_CONFIDENCE})
        if isinstance(mc, (int, float)):
            mc = {"default": mc}
        values = {k: float(v) for k, v in raw.items() if k not in ("min_confidence", "track_min_frames")}
        values.update({f"min_confidence.{k}": float(v) for k, v in mc.items()})
        bad = [f"{k}={v}" for k, v in values.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ModelError(f"model card {card_path}: thresholds must be within 0..1: {', '.join(bad)}")
        t = cls(
            detect=float(raw.get("detect", 0.1)),
            track_high=float(raw.get("track_high", 0.5)),
            track_activate=float(raw.get("track_activate", 0.4)),
            track_min_frames=int(raw.get("track_min_frames", 2)),
            min_confidence={str(k): float(v) for k, v in mc.items()},
        )
        if t.track_activate > t.track_high or t.detect > t.track_activate or t.track_min_frames < 1:
            raise ModelError(
                f"model card {card_path}: thresholds need detect <= track_activate <= track_high "
                f"and track_min_frames >= 1"
            )
        return t


@dataclass(frozen=True)
class ObjectQuality:
    """How well a model finds one vocabulary object on human-drawn val boxes."""

    boxes: int
    ap50: float
    ap50_95: float

    def __post_init__(self):
        if self.boxes < 1:
            raise ValueError(f"boxes must be at least 1 (an AP over no boxes says nothing), not {self.boxes}")
        for name in ("ap50", "ap50_95"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within 0..1, not {getattr(self, name)}")


@dataclass(frozen=True)
class Quality:
    """A card's measured quality: per object, AP on the human-labelled val split of one dataset
    build, as scripts/evaluate.py --built --write-quality writes it. `val` fingerprints that split,
    so two cards' figures are compared only when they were measured on the same boxes."""

    measured: str  # date
    val: str  # digest of the val images and their human boxes
    images: int
    results: str  # the results file the figures come from
    objects: dict[str, ObjectQuality]

    MARKER = "# Measured quality, written by scripts/evaluate.py --write-quality: do not edit by hand."

    @classmethod
    def from_card(cls, raw, card_path: Path) -> Quality | None:
        if raw is None:
            return None
        where = f"model card {card_path}: quality"
        if not isinstance(raw, dict) or not isinstance(raw.get("objects"), dict):
            raise ModelError(f"{where} must be a mapping with `objects:` (object -> boxes, ap50, ap50_95)")
        missing = [k for k in ("measured", "val", "images", "results") if k not in raw]
        if missing:
            raise ModelError(f"{where} lacks {', '.join(missing)}")
        vocab = set(vocabulary())
        objects = {}
        for name, row in raw["objects"].items():
            if name not in vocab:
                raise ModelError(f"{where}.objects.{name}: not an object of models/vocabulary.yaml")
            try:
                objects[name] = ObjectQuality(int(row["boxes"]), float(row["ap50"]), float(row["ap50_95"]))
            except (KeyError, TypeError) as exc:
                raise ModelError(f"{where}.objects.{name}: needs boxes, ap50 and ap50_95 ({exc})") from None
            except ValueError as exc:
                raise ModelError(f"{where}.objects.{name}: {exc}") from None
        return cls(str(raw["measured"]), str(raw["val"]), int(raw["images"]), str(raw["results"]), objects)

    def as_yaml(self) -> str:
        body = {
            "measured": self.measured,
            "val": self.val,
            "images": self.images,
            "results": self.results,
            "objects": {
                o: {"boxes": q.boxes, "ap50": round(q.ap50, 3), "ap50_95": round(q.ap50_95, 3)}
                for o, q in self.objects.items()
            },
        }
        return f"{self.MARKER}\n" + yaml.safe_dump(
            {"quality": body}, sort_keys=False, default_flow_style=None, width=110
        )

    def write_into(self, card_path: Path) -> None:
        """Replace the card's quality block (always its tail, after MARKER), keeping the rest as written."""
        text = card_path.read_text(encoding="utf-8")
        head = text.split(self.MARKER, 1)[0]
        if head == text and yaml.safe_load(text).get("quality") is not None:
            raise ModelError(f"model card {card_path}: its quality block was written by hand; remove it first")
        card_path.write_text(head.rstrip("\n") + "\n" + self.as_yaml(), encoding="utf-8")


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    family: str
    weights: Path
    input_width: int
    input_height: int
    rect: bool  # input height follows the source aspect ratio (dynamic-shape exports only)
    layout: str  # NCHW or NHWC
    color: str  # RGB or BGR
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    class_names: tuple[str, ...]
    class_map: dict[str, str]  # detector class name -> vocabulary object
    max_batch: int = 16
    provenance: str = ""
    licence: str = ""
    card_path: Path | None = None
    torch_weights: Path | None = None  # the Ultralytics checkpoint the ONNX came from (torch devices)
    thresholds: Thresholds = field(default_factory=Thresholds)
    quality: Quality | None = None
    extra: dict = field(default_factory=dict)

    @property
    def fit(self) -> tuple[int, int]:
        """The box a camera picture is scaled into for this model (the decoder does the scaling)."""
        return self.input_width, self.input_height

    @property
    def objects(self) -> set[str]:
        """Vocabulary objects this model can output."""
        return set(self.class_map.values())


def _load_class_map(value, base: Path) -> dict[str, str]:
    if isinstance(value, str):
        # A named map lives in class_maps/ beside the card, or in the models directory's class_maps/.
        fname = value if value.endswith((".yaml", ".yml")) else f"class_maps/{value}.yaml"
        candidates = [base / fname, models_dir() / fname, PACKAGED_MODELS_DIR / fname]
        ref = next((c for c in candidates if c.exists()), None)
        if ref is None:
            raise ModelError(f"class map {value!r} not found (looked in {', '.join(str(c) for c in candidates)})")
        value = yaml.safe_load(ref.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise ModelError("class_map must be a mapping of detector class -> vocabulary object")
    vocab = set(vocabulary())
    out = {}
    for src, dst in value.items():
        if dst is None:
            continue
        if dst not in vocab:
            raise ModelError(f"class_map maps {src!r} to {dst!r}, which is not in models/vocabulary.yaml")
        out[str(src)] = str(dst)
    return out


def load_card(card_path: Path, weights_override: Path | None = None) -> ModelCard:
    try:
        data = yaml.safe_load(card_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read model card {card_path}: {exc}") from None
    base = card_path.parent
    missing = [k for k in ("name", "family", "weights", "input", "class_map") if k not in data]
    if missing:
        raise ModelError(f"model card {card_path} lacks {', '.join(missing)}")
    if data["family"] not in FAMILIES:
        raise ModelError(f"model card {card_path}: unknown family {data['family']!r}; known: {', '.join(FAMILIES)}")
    weights = weights_override or (base / data["weights"])
    if not weights.exists():
        raise ModelError(
            f"weights {weights} named by {card_path} are missing; see the card's provenance "
            f"for the script that makes them"
        )
    inp = data["input"]
    class_map = _load_class_map(data["class_map"], base)
    names = data.get("classes")
    if names is None and data["family"] == "yolo":
        names = _onnx_class_names(weights)
    if not names:
        raise ModelError(f"model card {card_path}: no class names (give `classes:` in the card)")
    if not set(class_map).intersection(names):
        raise ModelError(
            f"model card {card_path}: its class_map names none of the model's classes "
            f"({', '.join(map(str, names[:5]))}, ...)"
        )
    return ModelCard(
        name=str(data["name"]),
        version=str(data.get("version", "0")),
        family=data["family"],
        weights=weights,
        input_width=int(inp["width"]),
        input_height=int(inp["height"]),
        rect=bool(inp.get("rect", False)),
        layout=inp.get("layout", "NCHW"),
        color=inp.get("color", "RGB"),
        mean=tuple(inp.get("mean", (0.0, 0.0, 0.0))),
        std=tuple(inp.get("std", (255.0, 255.0, 255.0))),
        class_names=tuple(names),
        class_map=class_map,
        max_batch=int(data.get("max_batch", 16)),
        provenance=str(data.get("provenance", "")),
        licence=str(data.get("licence", "")),
        card_path=card_path,
        torch_weights=base / data["torch_weights"] if data.get("torch_weights") else None,
        thresholds=Thresholds.from_card(data.get("thresholds"), card_path),
        quality=Quality.from_card(data.get("quality"), card_path),
        extra=data,
    )


def _onnx_class_names(weights: Path) -> list[str] | None:
    """Ultralytics exports carry their class names in the ONNX metadata."""
    import ast

    import onnxruntime as ort

    meta = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"]).get_modelmeta()
    names = meta.custom_metadata_map.get("names")
    if not names:
        return None
    parsed = ast.literal_eval(names)
    return [parsed[i] for i in sorted(parsed)] if isinstance(parsed, dict) else list(parsed)


def card_paths(directory: Path) -> list[Path]:
    """The model cards in a directory: its YAML files that name a model family (not the vocabulary
    or the data manifest that live beside them)."""
    out = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(data, dict) and "family" in data:
            out.append(path)
    return out


def default_model_name() -> str | None:
    marker = models_dir() / "DEFAULT"
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else None


def resolve_model(spec: str | None) -> ModelCard:
    """A card path, an ONNX path (its card sits beside it, same stem), or a name in models_dir()."""
    if spec is None:
        spec = default_model_name()
        if spec is None:
            raise ModelError(
                f"no model given and no default in {models_dir() / 'DEFAULT'}; pass --model NAME|CARD.yaml|WEIGHTS.onnx"
            )
    p = Path(spec)
    if p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise ModelError(f"model card {p} not found")
        return load_card(p)
    if p.suffix == ".onnx":
        card = p.with_suffix(".yaml")
        if not p.exists():
            raise ModelError(f"weights {p} not found")
        if not card.exists():
            raise ModelError(f"weights {p} have no card: expected {card} (family, input, class_map)")
        return load_card(card, weights_override=p)
    card = models_dir() / f"{spec}.yaml"
    if not card.exists():
        known = [c.stem for c in card_paths(models_dir())]
        raise ModelError(
            f"model {spec!r} not found in {models_dir()} (set STREETSCAN_MODELS or pass a path); "
            f"available: {', '.join(known) or 'none'}"
        )
    return load_card(card)
