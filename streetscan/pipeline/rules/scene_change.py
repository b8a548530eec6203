"""SceneChangeRule: something new stands in the zone for dwell_s, whatever it is.

For the scene classes no model detects (stacked materials, laundry on a railing, goods outside a
shop, debris on water), a zone's rule may say `detector: scene_change`. The camera's scene model
(pipeline/scene.py) reports static foreground: parts of the picture that changed from the empty
scene and then stood still, less what stands under a known object (a person standing still
belongs to the person rules, a parked car to parking) and less departures (where something was
taken away). A region inside the zone that stays `dwell_s` is a violation of the zone's class.
It tells *that* something is there, not *what*.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ..scene import SceneSettings
from ..track import covered, same_place
from .base import Box, Episode, ObservedObject, RuleParams, RuleStep, ZoneRule

if TYPE_CHECKING:
    import supervision as sv

    from ..scene import StaticRegion
    from ..track import TrackBook
    from ..zones import FrameZones

# Two static regions on consecutive frames are one thing when one covers this much of the other: a
# region grows as its cells settle and shrinks while a passer-by stands in front of it.
COVER = 0.5
SETTLE_S = SceneSettings().settle_s  # how long a change must stand before the scene model counts it


class SceneChangeParams(RuleParams):
    detector: Literal["model", "scene_change"] = "scene_change"
    dwell_s: float = Field(ge=0)
    min_cells: int = Field(default=2, ge=1, strict=False)  # smaller static regions are noise


class SceneChangeRule(ZoneRule):
    kind = "scene_change"
    Params = SceneChangeParams
    time_key = "dwell_s"
    first_frame_evidence = True  # the empty scene beside the picture that confirms it
    needs_scene = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.params, SceneChangeParams)
        self.dwell_s = self.params.dwell_s
        self.min_cells = self.params.min_cells
        self.episodes: list[_Region] = []
        self._next = 0

    def reset(self) -> None:
        self.episodes.clear()

    def update(self, det: sv.Detections, t: float, frame_seq: int, book: TrackBook, where: FrameZones) -> RuleStep:
        started = False
        seen: set[int] = set()
        before = {id(e): e.box for e in self.episodes}  # where each was on the last frame: what pieces are matched to
        for region in where.static_in(self.zone.id):
            if region.cells < self.min_cells:
                continue
            # The same thing if the boxes overlap mostly (a region grows as cells settle, shrinks under a
            # passer-by). Pieces of one thing (a passer-by's legs cut it in two) are one thing, not a
            # new case each: on i-LIDS's platform a suitcase's second piece opened a second case.
            matches = [e for e in self.episodes if same_thing(before.get(id(e), e.box), region.box)]
            ep = next((e for e in matches if id(e) not in seen), None)
            if ep is None and matches:
                matches[0].grow(region)
                continue
            if ep is None:
                self._next += 1
                ep = _Region(f"scene-{self._next}", region.since_s, t, frame_seq, region.box)
                self.episodes.append(ep)
                started = True
            seen.add(id(ep))
            ep.see(region, t)
        self.episodes = [e for e in self.episodes if id(e) in seen or t - e.last_s <= self._gap(e)]
        out = []
        for ep in self.episodes:
            if id(ep) not in seen:
                continue
            # Arrived dwell_s ago, and watched by this rule for a settle time at least (a region that
            # only now came out from under a parked car's box is not due at once).
            if ep.confirmed_s is None and t - ep.start_s >= self.dwell_s and t - ep.watched_s >= SETTLE_S:
                ep.confirmed_s = t
            if ep.confirmed_s is not None:
                out.append(ep.violation(self))
        return RuleStep(out, started)


class _Region(Episode):
    """A static region's episode: where it is now, since when this rule has watched it."""

    def __init__(self, key: str, start_s: float, t: float, frame_seq: int, box: Box):
        super().__init__(key=key, start_s=start_s, last_s=t, first_frame=frame_seq)
        self.box = box
        self.watched_s = t

    def see(self, region: StaticRegion, t: float) -> None:
        self.box, self.last_s = region.box, t
        # The class is unknown and there is no score: the scene model is sure of a change.
        self.objects = (ObservedObject("unknown", region.box, 1.0, None),)

    def grow(self, region: StaticRegion) -> None:
        """Another piece of the same thing on this frame: the box takes it in."""
        a, b = self.box, region.box
        self.box = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
        self.objects = (ObservedObject("unknown", self.box, 1.0, None),)


def same_thing(a: Box, b: Box) -> bool:
    """Two static regions of one thing: the same place, or one mostly covering the other."""
    return same_place(a, b) or max(covered(a, b), covered(b, a)) >= COVER
