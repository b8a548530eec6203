"""A camera's scene model: where the picture moves, and what arrived and stayed.

Two backgrounds of the camera's picture, reduced to `SceneSettings.width` pixels wide and grey
(Porikli's dual-background idea): a short-term one that follows the scene within seconds and a
long-term one that holds the empty scene. A part of the picture that differs from the long-term
background but no longer from the short-term one is **static foreground**: something arrived and
stayed (a pile of boxes, a stall, an abandoned cart). Parts that differ from the short-term
background move.

Street cameras are hard on this, so the comparison is made on cells (`cell` x `cell` pixels of the
reduced picture), not pixels, and what counts as a change is chosen to survive them:
- global light (clouds, dusk, auto-exposure): the frame is divided by its median brightness ratio
  to the long-term background over the cells that are background, before any comparison;
- shadows and soft light: a textured cell is compared by its pattern (normalised cross-
  correlation), which a shadow darkens but does not change; a flat cell by its brightness ratio,
  with a shadow's range (down to `flat_ratio[0]`) allowed;
- noise and rain: a cell must also differ by `min_diff` grey levels on average;
- passers-by in front of a left object: a cell's arrival time survives `gap_s` without change;
- the long-term background is not taught what stands in it (selective update), so when an object
  is taken away the cell matches the empty scene again and no ghost is left. A change that stays
  `absorb_s` becomes the scene; a region that is a departure, not an arrival (something that was
  there when the model started has gone), is absorbed at once (`absorb`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SceneSettings:
    width: int = 320  # reduced picture width (px); its height keeps the camera's aspect
    cell: int = 8  # cells of cell x cell reduced pixels are what is compared
    short_s: float = 4.0  # time constant of the short-term background
    long_s: float = 120.0  # time constant of the long-term background, where it is background
    settle_s: float = 6.0  # a change must have stood this long, and stand still now, to be static
    gap_s: float = 3.0  # a cell's change may be unseen this long (a passer-by) and keep its arrival time
    absorb_s: float = 3600.0  # a static change this old becomes part of the scene
    ncc_changed: float = 0.5  # a textured cell whose pattern correlates less than this changed
    flat_std: float = 5.0  # grey levels: a cell this flat in both pictures is judged by brightness
    flat_ratio: tuple[float, float] = (0.55, 1.6)  # brightness ratios a flat cell may have (shadow ... light)
    min_diff: float = 8.0  # grey levels of mean absolute difference below which a cell is unchanged
    known_hold_s: float = 5.0  # a cell a known object covered this recently is that object's
    reference_width: int = 640  # the colour picture of the empty scene kept for evidence
    reference_every_s: float = 2.0  # how often it takes in what is background now
    warmup_s: float = 8.0  # from the first frame: the empty scene is learnt wherever nothing moves


@dataclass(frozen=True)
class StaticRegion:
    """Connected static-foreground cells: where, in camera pixels, and since when (stream s)."""

    box: Box
    since_s: float
    cells: int
    departure: bool  # the change is something gone (its outline is in the background, not in the picture)


@dataclass
class SceneFrame:
    """What the scene model saw on one frame."""

    t: float
    motion: np.ndarray  # bool per cell: differs from the short-term background
    static: list[StaticRegion] = field(default_factory=list)
    scale: tuple[float, float] = (1.0, 1.0)  # camera pixels per cell (x, y)


class SceneModel:
    """One camera's scene model. `update` once per analysed frame, in stream order."""

    def __init__(self, settings: SceneSettings | None = None):
        self.settings = settings or SceneSettings()
        self._long: np.ndarray | None = None
        self._short: np.ndarray | None = None
        self._since: np.ndarray | None = None  # per cell: when its change arrived (nan: none)
        self._seen: np.ndarray | None = None  # per cell: when its change was last seen
        self._t: float | None = None
        self._t0: float | None = None
        self._absorb: list[Box] = []
        self._reference: np.ndarray | None = None
        self._reference_t = -np.inf
        self._known: np.ndarray | None = None  # per cell: when a known object last covered it
        self._with_known: np.ndarray | None = None  # per cell: a known object stood there as its change came
        self._known_from: np.ndarray | None = None  # per cell: since when a known object has covered it

    @property
    def memory_bytes(self) -> int:
        arrays = [self._long, self._short, self._since, self._seen, self._known, self._known_from, self._with_known]
        arrays.append(self._reference)
        return sum(a.nbytes for a in arrays if a is not None)

    def absorb(self, box: Box) -> None:
        """Make what is in `box` (camera pixels) part of the scene on the next frame: a departure,
        or a change the operator has accepted."""
        self._absorb.append(box)

    def update(
        self,
        image: np.ndarray,
        t: float,
        source_size: tuple[int, int] | None = None,
        known: np.ndarray | None = None,
        held: np.ndarray | None = None,
    ) -> SceneFrame:
        """`image`: the frame (BGR); `source_size`: the camera's (w, h) when `image` is scaled down;
        `known`: boxes (N x 4, camera pixels) of the objects the detector found on this frame. What
        stands under a known object is that object's (a parked car, a person standing still), not
        static foreground; a change that appeared as a known object left is a departure. `held`:
        boxes of changes that are open cases (a pile waiting for its rectification deadline): never
        absorbed after `absorb_s`, so that a check hours later still tells it from the empty scene."""
        s = self.settings
        grey = self._reduce(image)
        h, w = grey.shape
        ch, cw = h // s.cell, w // s.cell
        src_w, src_h = source_size or (image.shape[1], image.shape[0])
        scale = (src_w / w * s.cell, src_h / h * s.cell)
        if self._long is None or self._long.shape != grey.shape:
            self._long, self._short = grey.copy(), grey.copy()
            self._since = np.full((ch, cw), np.nan)
            self._seen = np.full((ch, cw), np.nan)
            self._known = np.full((ch, cw), -np.inf)
            self._known_from = np.full((ch, cw), -np.inf)
            self._with_known = np.zeros((ch, cw), dtype=bool)
            self._t = self._t0 = t
            self._keep_reference(image, np.zeros((ch, cw), dtype=bool))
            return SceneFrame(t, np.zeros((ch, cw), dtype=bool), [], scale)
        assert self._short is not None and self._since is not None and self._seen is not None
        assert self._known is not None and self._with_known is not None and self._known_from is not None
        dt = max(0.0, t - (self._t or t))
        self._t = t
        # Global light: divide by the median ratio to the empty scene where it is background.
        background = np.isnan(self._since)
        ratio = self._cell_mean(grey) / np.maximum(self._cell_mean(self._long), 1.0)
        gain = float(np.median(ratio[background])) if background.any() else 1.0
        grey = grey / float(np.clip(gain, 0.2, 5.0))
        for box in self._absorb:
            self._absorb_box(box, scale, grey)
        self._absorb.clear()
        changed_long = self._changed(grey, self._long)
        moving = self._changed(grey, self._short)
        if t - (self._t0 if self._t0 is not None else t) < s.warmup_s:
            # The first frame is not the empty scene: whoever stood in it would leave a change behind
            # as they walked off (a plaza's first frame held a man whose spot then opened a case). Until
            # the warm-up ends, what stands still is the empty scene and nothing has arrived yet.
            self._short += (1.0 - np.exp(-dt / s.short_s)) * (grey - self._short)
            self._take(~moving, grey)
            self._keep_reference(image, moving)
            self._reference_t = t
            return SceneFrame(t, moving, [], scale)
        # Arrival times: a change keeps its arrival while it is seen at least every gap_s.
        self._seen[changed_long] = t
        lost = ~changed_long & (t - np.nan_to_num(self._seen, nan=-np.inf) > s.gap_s)
        self._since[lost] = np.nan
        self._seen[lost] = np.nan
        under = self._cells_of(known, scale, (ch, cw))
        self._known_from[under & (t - self._known > s.known_hold_s)] = t  # newly covered
        self._known[under] = t
        arriving = changed_long & np.isnan(self._since)
        self._since[arriving] = t
        # Whether a known object had stood there a while as the change appeared: a car driving off
        # leaves one. A person who puts a bag down covered the spot only as the change itself came.
        with np.errstate(invalid="ignore"):  # never covered: -inf - -inf, which is no stay
            stood = (t - self._known <= s.known_hold_s) & (self._known - self._known_from >= s.settle_s)
        self._with_known[arriving] = stood[arriving]
        # The short-term background follows everything; the long-term one only the background.
        a_short = 1.0 - np.exp(-dt / s.short_s)
        self._short += a_short * (grey - self._short)
        a_long = 1.0 - np.exp(-dt / s.long_s)
        learn = _pixels(np.isnan(self._since), s.cell).astype(np.float32)
        h_c, w_c = learn.shape
        self._long[:h_c, :w_c] += (a_long * learn) * (grey[:h_c, :w_c] - self._long[:h_c, :w_c])
        old = ~np.isnan(self._since) & (t - np.nan_to_num(self._since, nan=t) >= s.absorb_s)
        if held is not None and len(held) and old.any():
            old &= ~self._cells_of(held, scale, (ch, cw))
        if old.any():
            self._take(old, grey)
        # Under a known object now, or a moment ago (a box the detector missed for a frame or two).
        static = ~np.isnan(self._since) & ~moving & (t - np.nan_to_num(self._since, nan=t) >= s.settle_s)
        static &= t - self._known > s.known_hold_s
        regions = self._regions(static, grey, scale)
        for gone in (r for r in regions if r.departure):
            self.absorb(gone.box)  # what is left where something was is the scene now, not a new object
        if t - self._reference_t >= s.reference_every_s:
            self._keep_reference(image, ~np.isnan(self._since))  # cells with a change under way, gaps included
            self._reference_t = t
        return SceneFrame(t, moving, [r for r in regions if not r.departure], scale)

    def reference(self) -> np.ndarray | None:
        """The empty scene in colour (BGR, `reference_width` wide): each cell as last seen unchanged."""
        return self._reference

    def _keep_reference(self, image: np.ndarray, changed: np.ndarray) -> None:
        s = self.settings
        h, w = image.shape[:2]
        size = (s.reference_width, round(h * s.reference_width / w))
        # Evidence, not measurement: a linear resize is a third of an area one's cost at 1080p.
        small = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if self._reference is None or self._reference.shape != small.shape:
            self._reference = small
            return
        # A changed cell and its neighbours stay as they were: an object seldom fills its cells, and
        # the cells it only touches would carry it in. The mask is laid on the reduced picture's
        # pixels first (its cells leave a few rows and columns over), then scaled to the reference.
        busy = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))
        assert self._long is not None
        h_red, w_red = self._long.shape
        px = _pixels(busy, s.cell)
        px = np.pad(px, ((0, h_red - px.shape[0]), (0, w_red - px.shape[1])), mode="edge")
        keep = cv2.resize(1 - px, size, interpolation=cv2.INTER_NEAREST)
        np.copyto(self._reference, small, where=keep[..., None].astype(bool))

    # -- internals ------------------------------------------------------------------------------
    def _reduce(self, image: np.ndarray) -> np.ndarray:
        s = self.settings
        h, w = image.shape[:2]
        size = (s.width, max(s.cell, round(h * s.width / w)))
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)

    def _changed(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per cell: does picture `a` differ from background `b` by more than light and shadow?"""
        s = self.settings
        mean = self._cell_mean
        ma, mb = mean(a), mean(b)
        va = np.maximum(mean(a * a) - ma * ma, 0.0)
        vb = np.maximum(mean(b * b) - mb * mb, 0.0)
        sa, sb = np.sqrt(va), np.sqrt(vb)
        ncc = (mean(a * b) - ma * mb) / np.maximum(sa * sb, 1e-6)
        textured = (sa > s.flat_std) | (sb > s.flat_std)
        ratio = ma / np.maximum(mb, 1.0)
        brightness = (ratio < s.flat_ratio[0]) | (ratio > s.flat_ratio[1])
        different = mean(np.abs(a - b)) > s.min_diff
        return different & np.where(textured, ncc < s.ncc_changed, brightness)

    def _cell_mean(self, img: np.ndarray) -> np.ndarray:
        """Each whole cell's mean: an area resize by a whole factor averages exactly (and fast)."""
        c = self.settings.cell
        ch, cw = img.shape[0] // c, img.shape[1] // c
        return cv2.resize(img[: ch * c, : cw * c], (cw, ch), interpolation=cv2.INTER_AREA)

    def _take(self, cells: np.ndarray, grey: np.ndarray) -> None:
        """Make these cells' current picture the empty scene."""
        assert self._long is not None and self._since is not None and self._seen is not None
        c = self.settings.cell
        mask = _pixels(cells, c)
        h, w = mask.shape
        self._long[:h, :w][mask] = grey[:h, :w][mask]
        self._since[cells] = np.nan
        self._seen[cells] = np.nan

    def _absorb_box(self, box: Box, scale: tuple[float, float], grey: np.ndarray) -> None:
        assert self._since is not None
        sx, sy = scale
        cells = np.zeros(self._since.shape, dtype=bool)
        cells[int(box[1] // sy) : int(np.ceil(box[3] / sy)), int(box[0] // sx) : int(np.ceil(box[2] / sx))] = True
        self._take(cells, grey)

    @staticmethod
    def _cells_of(boxes: np.ndarray | None, scale: tuple[float, float], shape: tuple[int, int]) -> np.ndarray:
        """Cells that any of `boxes` (camera pixels) touches: an object's box is loose, its edges
        and shadow spill into the cells around it."""
        cells = np.zeros(shape, dtype=bool)
        if boxes is None or len(boxes) == 0:
            return cells
        sx, sy = scale
        for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float32):
            cells[max(0, int(y1 // sy)) : int(np.ceil(y2 / sy)), max(0, int(x1 // sx)) : int(np.ceil(x2 / sx))] = True
        return cells

    def _regions(self, static: np.ndarray, grey: np.ndarray, scale: tuple[float, float]) -> list[StaticRegion]:
        assert self._since is not None and self._long is not None and self._with_known is not None
        if not static.any():
            return []
        count, labels, stats, _ = cv2.connectedComponentsWithStats(static.astype(np.uint8), connectivity=8)
        # Edge strength of the picture and of the empty scene, once per frame for every region.
        edges_now, edges_then = _edges(grey), _edges(self._long)
        sx, sy = scale
        c = self.settings.cell
        out = []
        for k in range(1, count):
            x, y, w, h, n = (int(v) for v in stats[k])
            cells = labels[y : y + h, x : x + w] == k
            box = (x * sx, y * sy, (x + w) * sx, (y + h) * sy)
            # Gone rather than come: the outline is the empty scene's, not the picture's; where a known
            # object stood as the change appeared (a car that drove off), the outline need only be
            # no stronger in the picture (an object a person put down has its own outline).
            after_known = self._with_known[y : y + h, x : x + w][cells].mean() > 0.5
            window = (slice(y * c, (y + h) * c), slice(x * c, (x + w) * c))
            departure = _departure(cells, c, edges_now[window], edges_then[window], 1.0 if after_known else 1.5)
            since = float(np.nanmin(self._since[y : y + h, x : x + w][cells]))
            out.append(StaticRegion(box, since, n, departure))
        return out


def _edges(img: np.ndarray) -> np.ndarray:
    return np.hypot(cv2.Sobel(img, cv2.CV_32F, 1, 0), cv2.Sobel(img, cv2.CV_32F, 0, 1))


def _departure(cells: np.ndarray, c: int, edges_now: np.ndarray, edges_then: np.ndarray, factor: float) -> bool:
    """Something gone rather than something come: the region's outline is an edge in the empty scene
    but not in the picture (an object's own outline is in the picture). `cells`: the region in its
    bounding box; the edge maps cover that box."""
    mask = _pixels(cells, c).astype(np.uint8)
    # The region's own border pixels (outside the box counts as outside the region).
    inner = cv2.erode(mask, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    outline = mask.astype(bool) & ~inner.astype(bool)
    h, w = min(mask.shape[0], edges_now.shape[0]), min(mask.shape[1], edges_now.shape[1])
    outline = outline[:h, :w]
    if not outline.any():
        return False
    return float(edges_then[:h, :w][outline].mean()) > factor * float(edges_now[:h, :w][outline].mean())


def _pixels(cells: np.ndarray, c: int) -> np.ndarray:
    """A per-cell mask blown up to the reduced picture's pixels (c x c each)."""
    return np.repeat(np.repeat(cells, c, axis=0), c, axis=1)
