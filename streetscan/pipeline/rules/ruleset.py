"""RuleSet: every active rule of one camera, built from its plan, applied frame by frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import TYPE_CHECKING

import supervision as sv

from ..track import TrackBook
from ..zones import FrameZones, ZoneIndex
from .base import RuleStep, Violation, ZoneRule

if TYPE_CHECKING:
    from ..catalogue import SceneClass
    from ..config import Allowance, ZoneConfig
    from ..plan import CameraPlan


@dataclass
class RuleSet:
    """Every active rule of one camera; applies zone schedules in the camera's local time."""

    camera_id: str
    zones: ZoneIndex
    rules: list[ZoneRule] = field(default_factory=list)
    unserved: tuple[SceneClass, ...] = ()  # scene classes the model cannot serve
    allowances: list[tuple[ZoneConfig, Allowance]] = field(default_factory=list)  # zones that allow classes
    book: TrackBook = field(default_factory=lambda: TrackBook(forget_s=0.0))

    @classmethod
    def of(cls, plan: CameraPlan) -> RuleSet:
        rules = [p.build(plan.camera.id) for p in plan.rules]
        # A track unseen for longer than any rule would wait for it no longer matters to the rules.
        return cls(
            camera_id=plan.camera.id,
            zones=ZoneIndex(plan.camera.zones),
            rules=rules,
            unserved=plan.unserved,
            allowances=[(z, a) for z in plan.camera.zones for a in z.allows],
            book=TrackBook(forget_s=plan.track_memory_s),
        )

    def confirm_s(self, zone_id: str, scene_class: str) -> float:
        """How long this camera's rule for (zone, class) takes to confirm a violation; 0 if none."""
        return max(
            (r.confirm_s for r in self.rules if r.zone.id == zone_id and r.scene.code == scene_class), default=0.0
        )

    def update(
        self,
        det: sv.Detections,
        t: float,
        wall: datetime,
        frame_seq: int,
        where: FrameZones | None = None,
    ) -> RuleStep:
        """One object is one violation per scene class, however the zones it stands in overlap:
        the first zone (in the camera's order) that confirms it holds it. `where`: the frame's
        zones, when the caller has them (self.zones.frame(det)) for verification too."""
        out: list[Violation] = []
        started = self.book.update(det, t, frame_seq)
        where = where or self.zones.frame(det)
        weekday, clock = wall.isoweekday(), wall.timetz().replace(tzinfo=None)
        allowed = self._allowed_now(weekday, clock)
        seen_by: dict[str, tuple[sv.Detections, FrameZones]] = {}
        for rule in self.rules:
            schedule = rule.zone.schedule
            if schedule is not None and not schedule.is_active(weekday, clock):
                rule.reset()
                continue
            code = rule.scene.code
            if code in allowed and len(det):
                if code not in seen_by:
                    seen_by[code] = where.select(~where.inside_any(allowed[code], rule.scene))
                kept, kept_where = seen_by[code]
                step = rule.update(kept, t, frame_seq, self.book, kept_where)
            else:
                step = rule.update(det, t, frame_seq, self.book, where)
            out.extend(step.violations)
            started = started or step.episode_started
        held: set[tuple[str, int]] = set()
        one_each = []
        for v in out:
            track = v.objects[0].track_id if len(v.objects) == 1 else None
            if track is not None:
                if (v.scene_class, track) in held:
                    continue
                held.add((v.scene_class, track))
            one_each.append(v)
        return RuleStep(one_each, started)

    def _allowed_now(self, weekday: int, clock: time) -> dict[str, list[str]]:
        """Scene class -> the ids of the zones allowing it at this local time."""
        out: dict[str, list[str]] = {}
        for zone, allow in self.allowances:
            if allow.schedule is None or allow.schedule.is_active(weekday, clock):
                for code in allow.classes:
                    out.setdefault(code, []).append(zone.id)
        return out
