"""Model cards: an ONNX file plus the YAML that says how to feed it and what its classes mean.

Weights are resolved offline only: an explicit path, else a name in the models directory
(`STREETSCAN_MODELS`, default: the models installed with the package, `streetscan/models`, which
in a checkout is the repository's `models/`). Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from importlib import resources
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

# Package data: the wheel carries the project's models; a checkout links streetscan/models -> models/.
PACKAGED_MODELS_DIR = Path(str(resources.files("streetscan") / "models"))
FAMILIES = ("yolo", "centernet")


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
    min_confidence: dict[str, float] = field(default_factory=lambda: {"default": 0.35})

    def min_confidence_for(self, scene_class: str) -> float:
        return self.min_confidence.get(scene_class, self.min_confidence.get("default", 0.35))

    @classmethod
    def from_card(cls, raw: dict | None, card_path: Path) -> Thresholds:
        if not raw:
            return cls()
        if not isinstance(raw, dict):
            raise ModelError(f"model card {card_path}: thresholds must be a mapping")
        known = {"detect", "track_high", "track_activate", "track_min_frames", "min_confidence"}
        unknown = set(raw) - known
        if unknown:
            raise ModelError(f"model card {card_path}: unknown thresholds {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(sorted(known))}")
        mc = raw.get("min_confidence", {"default": 0.35})
        if isinstance(mc, (int, float)):
            mc = {"default": mc}
        values = {k: float(v) for k, v in raw.items() if k not in ("min_confidence", "track_min_frames")}
        values.update({f"min_confidence.{k}": float(v) for k, v in mc.items()})
        bad = [f"{k}={v}" for k, v in values.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ModelError(f"model card {card_path}: thresholds must be within 0..1: {', '.join(bad)}")
        t = cls(detect=float(raw.get("detect", 0.1)), track_high=float(raw.get("track_high", 0.5)),
                track_activate=float(raw.get("track_activate", 0.4)),
                track_min_frames=int(raw.get("track_min_frames", 2)),
                min_confidence={str(k): float(v) for k, v in mc.items()})
        if t.track_activate > t.track_high or t.detect > t.track_activate or t.track_min_frames < 1:
            raise ModelError(f"model card {card_path}: thresholds need detect <= track_activate <= track_high "
                             f"and track_min_frames >= 1")
        return t


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
        raise ModelError(f"weights {weights} named by {card_path} are missing; see the card's provenance "
                         f"for the script that makes them")
    inp = data["input"]
    class_map = _load_class_map(data["class_map"], base)
    names = data.get("classes")
    if names is None and data["family"] == "yolo":
        names = _onnx_class_names(weights)
    if not names:
        raise ModelError(f"model card {card_path}: no class names (give `classes:` in the card)")
    if not set(class_map).intersection(names):
        raise ModelError(f"model card {card_path}: its class_map names none of the model's classes "
                         f"({', '.join(map(str, names[:5]))}, ...)")
    return ModelCard(
        name=str(data["name"]), version=str(data.get("version", "0")), family=data["family"],
        weights=weights, input_width=int(inp["width"]), input_height=int(inp["height"]),
        rect=bool(inp.get("rect", False)), layout=inp.get("layout", "NCHW"), color=inp.get("color", "RGB"),
        mean=tuple(inp.get("mean", (0.0, 0.0, 0.0))), std=tuple(inp.get("std", (255.0, 255.0, 255.0))),
        class_names=tuple(names), class_map=class_map, max_batch=int(data.get("max_batch", 16)),
        provenance=str(data.get("provenance", "")), licence=str(data.get("licence", "")),
        card_path=card_path, torch_weights=base / data["torch_weights"] if data.get("torch_weights") else None,
        thresholds=Thresholds.from_card(data.get("thresholds"), card_path), extra=data,
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


def default_model_name() -> str | None:
    marker = models_dir() / "DEFAULT"
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else None


def resolve_model(spec: str | None) -> ModelCard:
    """A card path, an ONNX path (its card sits beside it, same stem), or a name in models_dir()."""
    if spec is None:
        spec = default_model_name()
        if spec is None:
            raise ModelError(f"no model given and no default in {models_dir() / 'DEFAULT'}; "
                             f"pass --model NAME|CARD.yaml|WEIGHTS.onnx")
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
        known = sorted(c.stem for c in models_dir().glob("*.yaml") if c.stem != "vocabulary")
        raise ModelError(f"model {spec!r} not found in {models_dir()} (set STREETSCAN_MODELS or pass a path); "
                         f"available: {', '.join(known) or 'none'}")
    return load_card(card)
