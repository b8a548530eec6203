"""One camera's plan: its configuration, the catalogue's defaults and the model card, resolved once.

`Camera` (config.py) is what streams.yaml says, with the file's defaults merged in; its equality
drives a reload. The plan adds what only the model decides (each class's calibrated confidence,
the tracker's thresholds) and lists the rules the camera runs, each with typed, final parameters,
so that rules, verification and reports read one value and work out none again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .catalogue import CATALOGUE, SceneClass, served_by
from .config import Camera, ZoneConfig
from .models import Thresholds
from .rules.base import RuleParams, ZoneRule
from .rules.registry import kind_for, resolve_params
from .track import TrackerSettings

if TYPE_CHECKING:
    from .models import ModelCard


@dataclass(frozen=True)
class RulePlan:
    """One scene class in one zone, with everything its rule needs."""

    zone: ZoneConfig
    scene: SceneClass
    kind: type[ZoneRule]
    params: RuleParams
    min_confidence: float  # streams.yaml's, else the model card's for the class
    confirmed_gap_s: float  # a confirmed violation survives a gap as long as its event would

    @property
    def confirm_s(self) -> float:
        return float(getattr(self.params, self.kind.time_key))

    def build(self, camera_id: str) -> ZoneRule:
        return self.kind(
            self.scene,
            self.zone,
            self.params,
            camera_id,
            min_confidence=self.min_confidence,
            confirmed_gap_s=self.confirmed_gap_s,
        )


@dataclass(frozen=True)
class CameraPlan:
    camera: Camera
    tracker: TrackerSettings
    rules: tuple[RulePlan, ...]  # the rules that run, zone by zone in the camera's order
    unserved: tuple[SceneClass, ...]  # scene classes the model cannot serve
    thresholds: Thresholds

    @classmethod
    def build(cls, camera: Camera, objects: set[str], thresholds: Thresholds | None = None) -> CameraPlan:
        """`objects`: what the model detects; `thresholds`: its card's (default: Thresholds())."""
        thresholds = thresholds or Thresholds()
        served, unserved = served_by(objects)
        served_codes = {c.code for c in served}
        rules = []
        for zone in camera.zones:
            for code in zone.classes or list(CATALOGUE):
                scene = CATALOGUE[code]
                overrides = camera.rule_overrides(code, zone)
                kind = kind_for(scene, overrides)
                if not scene.applies_to(zone.kind) or (code not in served_codes and not kind.needs_scene):
                    continue
                params = resolve_params(scene, zone.grade, overrides)
                if not params.enabled:
                    continue
                confidence = params.min_confidence
                rules.append(
                    RulePlan(
                        zone,
                        scene,
                        kind,
                        params,
                        thresholds.min_confidence_for(code) if confidence is None else confidence,
                        camera.event.resolve_grace_s,
                    )
                )
        tracking = camera.tracking
        tracker = TrackerSettings.resolve(
            thresholds,
            lost_s=tracking.lost_s or camera.event.resolve_grace_s,
            high=tracking.high,
            activate=tracking.activate,
            min_frames=tracking.min_frames,
        )
        return cls(camera, tracker, tuple(rules), tuple(unserved), thresholds)

    @classmethod
    def for_model(cls, camera: Camera, card: ModelCard) -> CameraPlan:
        return cls.build(camera, card.objects, card.thresholds)

    @property
    def needs_scene(self) -> bool:
        """Whether a rule reads the camera's scene model (so the camera keeps one)."""
        return any(r.kind.needs_scene for r in self.rules)

    @property
    def track_memory_s(self) -> float:
        """A track unseen for longer than any rule would wait for it no longer matters to the rules."""
        return max([max(r.params.gap_s, r.confirmed_gap_s) for r in self.rules], default=RuleParams().gap_s)

    def rule(self, zone_id: str, scene_class: str) -> RulePlan | None:
        return next((r for r in self.rules if r.zone.id == zone_id and r.scene.code == scene_class), None)

    def min_confidence(self, zone_id: str, scene_class: str) -> float:
        """The bar an object of the class must clear in the zone: its rule's, else the card's."""
        rule = self.rule(zone_id, scene_class)
        return rule.min_confidence if rule else self.thresholds.min_confidence_for(scene_class)
