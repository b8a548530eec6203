"""Presence rules: CountRule (at least min_count objects in a zone for hold_s: crowds) and
PersistenceRule (an object class present in a zone for persist_s, track-agnostic: garbage, water, ads)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field, field_validator

from .base import Episode, RuleParams, RuleStep, ZoneRule, observed

if TYPE_CHECKING:
    import supervision as sv

    from ..track import TrackBook
    from ..zones import FrameZones


class CountParams(RuleParams):
    min_count: int = Field(default=1, ge=1, strict=False)  # 20.0 in YAML is 20; 20.5 is an error

    @field_validator("min_count", mode="before")
    @classmethod
    def _not_a_flag(cls, v: object) -> object:
        if isinstance(v, bool):
            raise ValueError("must be a whole number, not true/false")
        return v

    hold_s: float = Field(ge=0)


class CountRule(ZoneRule):
    """At least min_count objects are inside the zone for hold_s (crowds)."""

    kind = "count"
    Params: ClassVar[type[RuleParams]] = CountParams
    time_key = "hold_s"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.min_count, self.hold_s = self._count_and_hold()
        self.episode: Episode | None = None

    def _count_and_hold(self) -> tuple[int, float]:
        assert isinstance(self.params, CountParams)
        return self.params.min_count, self.params.hold_s

    def reset(self) -> None:
        self.episode = None

    def update(self, det: sv.Detections, t: float, frame_seq: int, book: TrackBook, where: FrameZones) -> RuleStep:
        inside, _ = self.candidates(det, book, where)
        ep = self.episode
        started = False
        if len(inside) >= self.min_count:
            if ep is None:
                ep = self.episode = Episode(key="zone", start_s=t, last_s=t, first_frame=frame_seq)
                started = True
            ep.last_s, ep.objects = t, observed(det, inside)
            if t - ep.start_s >= self.hold_s:
                ep.confirmed_s = ep.confirmed_s or t
                return RuleStep([ep.violation(self)], started)
        elif ep is not None and t - ep.last_s > self._gap(ep):
            self.episode = None
        return RuleStep([], started)


class PersistenceParams(RuleParams):
    persist_s: float = Field(ge=0)


class PersistenceRule(CountRule):
    """An object of the class is present in the zone for persist_s, track-agnostic: garbage, water
    and adverts flicker in and out of detection, so presence is what counts."""

    kind = "persistence"
    Params = PersistenceParams
    time_key = "persist_s"

    def _count_and_hold(self) -> tuple[int, float]:
        assert isinstance(self.params, PersistenceParams)
        return 1, self.params.persist_s
