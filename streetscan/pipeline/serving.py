"""What a model serves, as measured: each scene class's status under a model card, and the bar a
StreetScan model must clear before `models/DEFAULT` may name it (issue #16).

Mapping an object is a claim; a card's `quality` block is the evidence. A scene class is *served*
when every one of its objects that the card maps reaches SERVED_AP50 on human-drawn val boxes: any
of them opens the class's cases, so one poor object is enough to fill the queue with false ones.
A class with a mapped object below the bar is *weak*; one with a mapped object never measured on
human boxes (taught from teacher labels only, or a card without a quality block) is *unmeasured*.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .catalogue import SCENE_CLASSES, SceneClass
from .models import ModelCard

SERVED_AP50 = 0.3  # an object counts as served from this AP50 on its human val boxes
DEFAULT_MIN_SERVED = 10  # of the 14 scene classes
# The default must also find these at least as well as the model it would replace.
DEFAULT_MATCHED_OBJECTS = ("person", "car")
BASELINE_MODEL = "coco-centernet-mbv3"  # the COCO bootstrap every StreetScan model is measured against


class Status(StrEnum):
    SERVED = "served"
    UNMEASURED = "unmeasured"
    WEAK = "weak"
    MISSING = "missing"


@dataclass(frozen=True)
class Service:
    scene: SceneClass
    status: Status
    objects: tuple[str, ...]  # the card's objects behind the status (none when missing)


def services(card: ModelCard) -> list[Service]:
    """Every scene class, in catalogue order, with its status under this card."""
    measured = card.quality.objects if card.quality else {}
    out = []
    for scene in SCENE_CLASSES:
        mapped = tuple(o for o in scene.objects if o in card.objects)
        weak = tuple(o for o in mapped if o in measured and measured[o].ap50 < SERVED_AP50)
        unmeasured = tuple(o for o in mapped if o not in measured)
        if not mapped:
            out.append(Service(scene, Status.MISSING, ()))
        elif weak:
            out.append(Service(scene, Status.WEAK, weak))
        elif unmeasured:
            out.append(Service(scene, Status.UNMEASURED, unmeasured))
        else:
            out.append(Service(scene, Status.SERVED, mapped))
    return out


def by_status(card: ModelCard) -> dict[Status, list[Service]]:
    """The scene classes under each status (every status present, maybe empty)."""
    out: dict[Status, list[Service]] = {status: [] for status in Status}
    for s in services(card):
        out[s.status].append(s)
    return out


def default_shortfalls(card: ModelCard, baseline: ModelCard) -> list[str]:
    """Why `card` may not be the default: one line per condition it fails; none when it may."""
    if card.name == baseline.name:
        return []
    if card.quality is None:
        return [f"{card.name} has no measured quality (scripts/evaluate.py --write-quality)"]
    if baseline.quality is None or baseline.quality.val != card.quality.val:
        return [f"{card.name} and {baseline.name} were not measured on the same val boxes; evaluate both in one run"]
    out = []
    served = by_status(card)[Status.SERVED]
    if len(served) < DEFAULT_MIN_SERVED:
        out.append(
            f"serves {len(served)} of {len(SCENE_CLASSES)} scene classes at AP50 >= {SERVED_AP50}; "
            f"needs {DEFAULT_MIN_SERVED}"
        )
    for obj in DEFAULT_MATCHED_OBJECTS:
        mine, theirs = card.quality.objects.get(obj), baseline.quality.objects.get(obj)
        if mine is None:
            out.append(f"{obj} not measured")
        elif theirs is not None and mine.ap50 < theirs.ap50:
            out.append(f"{obj} AP50 {mine.ap50:.3f} below {baseline.name}'s {theirs.ap50:.3f}")
    return out
