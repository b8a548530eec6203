"""Scene rules: tracked detections in, confirmed violations out.

Three rule kinds serve all 14 scene classes (see catalogue.py; registry.RULE_KINDS lists them):
  DwellRule        a tracked object stays nearly still inside a zone for dwell_s (parking, vendors, ...)
  CountRule        at least min_count objects are inside a zone for hold_s (crowds)
  PersistenceRule  an object class is present in a zone for persist_s, track-agnostic (garbage, water, ads)
  SceneChangeRule  something new stands in a zone for dwell_s, found by the scene model, not the model
                   (a zone's rule picks it with `detector: scene_change`, for any class)

A rule reports a Violation on every analysed frame on which it holds and is confirmed; turning that
stream into opened/updated/resolved events is the deduplicator's job (events.py).
"""

from .base import Box, ObservedObject, RuleParams, RuleStep, Violation, ZoneRule
from .dwell import DwellParams, DwellRule
from .presence import CountParams, CountRule, PersistenceParams, PersistenceRule
from .registry import RULE_KINDS, kind_for, params_model, resolve_params, rule_kind
from .ruleset import RuleSet
from .scene_change import SceneChangeParams, SceneChangeRule

__all__ = [
    "RULE_KINDS",
    "SceneChangeParams",
    "SceneChangeRule",
    "kind_for",
    "Box",
    "CountParams",
    "CountRule",
    "DwellParams",
    "DwellRule",
    "ObservedObject",
    "PersistenceParams",
    "PersistenceRule",
    "RuleParams",
    "RuleSet",
    "RuleStep",
    "Violation",
    "ZoneRule",
    "params_model",
    "resolve_params",
    "rule_kind",
]
