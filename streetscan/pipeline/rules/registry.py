"""The rule kinds StreetScan knows. A new kind is its own module (a ZoneRule subclass with its
Params) plus one entry here; catalogue.py then names it for the scene classes it serves."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..catalogue import GRADE_TIME_FACTOR, Grade, SceneClass
from .base import RuleParams, ZoneRule
from .dwell import DwellRule
from .presence import CountRule, PersistenceRule

RULE_KINDS: dict[str, type[ZoneRule]] = {k.kind: k for k in (DwellRule, CountRule, PersistenceRule)}


def rule_kind(name: str) -> type[ZoneRule]:
    try:
        return RULE_KINDS[name]
    except KeyError:
        raise KeyError(f"unknown rule kind {name!r}; known: {', '.join(RULE_KINDS)}") from None


def params_model(name: str) -> type[RuleParams]:
    return rule_kind(name).Params


def resolve_params(scene: SceneClass, grade: Grade, overrides: Mapping[str, Any] | None = None) -> RuleParams:
    """A scene class's parameters in a zone of this road grade: the catalogue's defaults with the
    time threshold scaled to the grade, then streams.yaml's overrides, which are absolute (not
    scaled). Raises pydantic's ValidationError for an override the kind does not take."""
    kind = rule_kind(scene.rule)
    values: dict[str, Any] = dict(scene.defaults)
    values[kind.time_key] = float(values[kind.time_key]) * GRADE_TIME_FACTOR[grade]
    values.update(overrides or {})
    return kind.Params.model_validate(values)
