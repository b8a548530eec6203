"""The rule kinds StreetScan knows. A new kind is its own module (a ZoneRule subclass with its
Params) plus one entry here; catalogue.py then names it for the scene classes it serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalogue import GRADE_TIME_FACTOR, Grade, SceneClass
from .base import RuleParams, ZoneRule
from .dwell import DwellRule
from .presence import CountRule, PersistenceRule
from .scene_change import SceneChangeRule

RULE_KINDS: dict[str, type[ZoneRule]] = {k.kind: k for k in (DwellRule, CountRule, PersistenceRule, SceneChangeRule)}
# Kinds a zone's rule may pick for any scene class with `detector:` (they need no model class).
DETECTORS = ("model", *(k.kind for k in RULE_KINDS.values() if k.needs_scene))


def rule_kind(name: str) -> type[ZoneRule]:
    try:
        return RULE_KINDS[name]
    except KeyError:
        raise KeyError(f"unknown rule kind {name!r}; known: {', '.join(RULE_KINDS)}") from None


def params_model(name: str) -> type[RuleParams]:
    return rule_kind(name).Params


def kind_for(scene: SceneClass, overrides: Mapping[str, Any] | None = None) -> type[ZoneRule]:
    """The rule kind that judges a scene class in a zone: the catalogue's, unless the zone's rule
    names another `detector:` (a kind that finds objects without the model)."""
    detector = (overrides or {}).get("detector", "model")
    if detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    return rule_kind(scene.rule if detector == "model" else detector)


def resolve_params(scene: SceneClass, grade: Grade, overrides: Mapping[str, Any] | None = None) -> RuleParams:
    """A scene class's parameters in a zone of this road grade: the catalogue's defaults with the
    time threshold scaled to the grade, then streams.yaml's overrides, which are absolute (not
    scaled). With another `detector:` the class keeps only its time threshold. Raises pydantic's
    ValidationError for an override the kind does not take."""
    own = rule_kind(scene.rule)
    kind = kind_for(scene, overrides)
    values: dict[str, Any] = dict(scene.defaults) if kind is own else {}
    values[kind.time_key] = float(scene.defaults[own.time_key]) * GRADE_TIME_FACTOR[grade]
    values.update(overrides or {})
    return kind.Params.model_validate(values)
