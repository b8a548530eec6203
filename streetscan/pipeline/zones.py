"""Which of a camera's zones each object is in, worked out once per frame.

Rules, allowances and verification all ask "is this object in that zone?"; the answer depends on
the zone and on where an object of the class touches the scene (its anchor), never on who asks.
Frigate works an object's zones out once per tracked object for the same reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np
import supervision as sv

if TYPE_CHECKING:
    from .catalogue import SceneClass
    from .config import ZoneConfig
    from .scene import SceneFrame, StaticRegion

# Objects on walls or water are judged by their centre; everything standing on the ground by the
# bottom centre of its box (where a car's wheels touch the kerb).
CENTRE_ANCHORED = {"advertisement", "laundry", "floating_debris"}


def anchor_for(scene: SceneClass) -> sv.Position:
    return sv.Position.CENTER if set(scene.objects) & CENTRE_ANCHORED else sv.Position.BOTTOM_CENTER


class ZoneIndex:
    """One camera's zones. Each (zone, anchor) gets its own supervision zone, rasterised once when
    first asked for: PolygonZone keeps per-call counts in `trigger()`, so zones are not shared
    between cameras, and its mask is as large as the polygon's bounding corner (2 MB for a zone
    reaching a 1080p frame's corner), so one per anchor, not one per rule."""

    def __init__(self, zones: Sequence[ZoneConfig]):
        self.zones = {z.id: z for z in zones}
        self._polygons: dict[tuple[str, sv.Position], sv.PolygonZone] = {}

    def polygon(self, zone_id: str, anchor: sv.Position) -> sv.PolygonZone | None:
        """None: the zone is the whole picture, and every detection is in it."""
        zone = self.zones[zone_id]
        if zone.polygon is None:
            return None
        key = (zone_id, anchor)
        if key not in self._polygons:
            self._polygons[key] = sv.PolygonZone(np.array(zone.polygon, dtype=np.int64), triggering_anchors=(anchor,))
        return self._polygons[key]

    @property
    def rasterised(self) -> int:
        return len(self._polygons)

    def frame(self, det: sv.Detections, scene: SceneFrame | None = None) -> FrameZones:
        """`scene`: what the camera's scene model saw on the frame, when it keeps one."""
        return FrameZones(self, det, scene=scene)


class FrameZones:
    """One frame's detections against the camera's zones; each (zone, anchor) is tested once."""

    def __init__(
        self,
        index: ZoneIndex,
        det: sv.Detections,
        *,
        parent: FrameZones | None = None,
        keep: np.ndarray | None = None,
        scene: SceneFrame | None = None,
    ):
        self._index = index
        self._det = det
        self._parent, self._keep = parent, keep
        self._inside: dict[tuple[str, sv.Position], np.ndarray] = {}
        self.scene: SceneFrame | None = scene if parent is None else parent.scene
        self._static: dict[str, list[StaticRegion]] = {}

    def static_in(self, zone_id: str) -> list[StaticRegion]:
        """The scene model's static regions whose centre is inside the zone (none without a scene model)."""
        if self.scene is None or not self.scene.static:
            return []
        if zone_id not in self._static:
            regions = self.scene.static
            zone = self._index.polygon(zone_id, sv.Position.CENTER)
            if zone is None:
                self._static[zone_id] = list(regions)
            else:
                boxes = sv.Detections(xyxy=np.array([r.box for r in regions], dtype=np.float32))
                self._static[zone_id] = [r for r, inside in zip(regions, zone.trigger(boxes), strict=True) if inside]
        return self._static[zone_id]

    def inside(self, zone_id: str, scene: SceneClass) -> np.ndarray:
        """Which detections are inside the zone, anchored as the scene class's objects are."""
        return self._inside_at(zone_id, anchor_for(scene))

    def _inside_at(self, zone_id: str, anchor: sv.Position) -> np.ndarray:
        key = (zone_id, anchor)
        if key not in self._inside:
            if self._parent is not None and self._keep is not None:
                self._inside[key] = self._parent._inside_at(zone_id, anchor)[self._keep]
            else:
                zone = self._index.polygon(zone_id, anchor)
                n = len(self._det)
                self._inside[key] = np.ones(n, dtype=bool) if zone is None or n == 0 else zone.trigger(self._det)
        return self._inside[key]

    def inside_any(self, zone_ids: Iterable[str], scene: SceneClass) -> np.ndarray:
        mask = np.zeros(len(self._det), dtype=bool)
        for zone_id in zone_ids:
            mask |= self.inside(zone_id, scene)
        return mask

    def select(self, keep: np.ndarray) -> tuple[sv.Detections, FrameZones]:
        """The detections `keep` marks, with their zones (read from this frame's, not tested again)."""
        kept = cast(sv.Detections, self._det[keep])
        return kept, FrameZones(self._index, kept, parent=self, keep=keep)
