"""streams.yaml: the fleet of cameras, their zones and rule overrides, validated in one place.

Every error names the file, the camera (by id when it has one), the field path and the reason,
so an operator can fix a 300-camera file without reading a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from ..secrets import redact_url, remember
from .catalogue import (
    CATALOGUE,
    DEFAULT_OFFENDER,
    DEFAULT_PLATFORM_CODES,
    DEFAULT_RECTIFY_S,
    GRADE_TIME_FACTOR,
    Grade,
    PlatformCode,
    ZoneKind,
    duplicate_platform_codes,
)
from .duty import Responsibility
from .rules.registry import kind_for, resolve_params


class ConfigError(ValueError):
    """A streams.yaml problem, already phrased for the operator."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{self.path}: invalid configuration\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _self_intersection(points: list[tuple[float, float]]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that cross or touch (a bow-tie), as edge indices."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]

    def orient(a, b, c) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    def on_segment(a, b, c) -> bool:  # c on segment ab, given the three are collinear
        return min(a[0], b[0]) <= c[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])

    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # the closing edge shares point 0 with the first
            (p1, p2), (q1, q2) = edges[i], edges[j]
            d1, d2, d3, d4 = orient(q1, q2, p1), orient(q1, q2, p2), orient(p1, p2, q1), orient(p1, p2, q2)
            if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0) and ((d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
                return i, j
            if (
                (d1 == 0 and on_segment(q1, q2, p1))
                or (d2 == 0 and on_segment(q1, q2, p2))
                or (d3 == 0 and on_segment(p1, p2, q1))
                or (d4 == 0 and on_segment(p1, p2, q2))
            ):
                if _area(points) >= 1.0:  # a degenerate (zero-area) outline is reported as such below
                    return i, j
    return None


def _area(points: list[tuple[float, float]]) -> float:
    return 0.5 * abs(
        sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=False))
    )


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


class TimeRange(_Model):
    start: time
    end: time  # may be earlier than start: the range wraps midnight

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Schedule(_Model):
    """When a zone's rules are active, in the camera's local time. Outside these hours nothing is
    reported (e.g. a storefront zone inactive during night-market hours, when trading is allowed)."""

    active: list[TimeRange] = Field(min_length=1)
    days: list[Annotated[int, Field(ge=1, le=7)]] = Field(default=[1, 2, 3, 4, 5, 6, 7])  # ISO weekdays

    @field_validator("active", mode="before")
    @classmethod
    def _parse_ranges(cls, v: Any) -> Any:
        if not isinstance(v, list):
            return v
        out = []
        for item in v:
            if isinstance(item, str):
                m = _HHMM.match(item.strip())
                if not m:
                    raise ValueError(f"time range {item!r} is not HH:MM-HH:MM")
                h1, m1, h2, m2 = (int(g) for g in m.groups())
                end = time(23, 59, 59, 999999) if h2 == 24 else time(h2, m2)
                out.append({"start": time(h1, m1), "end": end})
            else:
                out.append(item)
        return out

    def is_active(self, local_weekday: int, local_time: time) -> bool:
        return local_weekday in self.days and any(r.contains(local_time) for r in self.active)


def _known_classes(v: list[str] | None) -> list[str] | None:
    for code in v or []:
        if code not in CATALOGUE:
            raise ValueError(f"unknown scene class {code!r}; known: {', '.join(CATALOGUE)}")
    return v


class Allowance(_Model):
    """Scene classes a zone allows: a marked 外摆 area in front of shops, a night market. Objects
    inside the zone do not count for these classes, in any of the camera's zones, while the
    allowance is active."""

    classes: list[str] = Field(min_length=1, title="Allowed scene classes")
    schedule: Schedule | None = Field(default=None, title="When allowed", description="Default: always.")

    _classes = field_validator("classes")(classmethod(lambda cls, v: _known_classes(v)))


def _check_rule_overrides(v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each class's overrides, checked by its rule kind's Params model (over the class's defaults)."""
    for code, params in v.items():
        if code not in CATALOGUE:
            raise ValueError(f"unknown scene class {code!r}; known: {', '.join(CATALOGUE)}")
        if not isinstance(params, dict):
            raise ValueError(f"{code}: expected a mapping of parameters, got {type(params).__name__}")
        scene = CATALOGUE[code]
        try:
            kind = kind_for(scene, params)
        except ValueError as exc:
            raise ValueError(f"{code}.{exc}") from None
        try:
            resolve_params(scene, Grade.ARTERIAL, params)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(kind.Params.model_fields))
                raise ValueError(
                    f"{code}: unknown parameter {key!r} for a {kind.kind} rule; allowed: {allowed}"
                ) from None
            raise ValueError(f"{code}.{key}: {err['msg']}, got {err['input']!r}") from None
    return v


RuleOverrides = Annotated[dict[str, dict[str, Any]], AfterValidator(_check_rule_overrides)]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(v: Any) -> Any:
    """90, "90s", "15m", "2h", "1d" -> seconds."""
    if isinstance(v, str):
        m = _DURATION.match(v)
        if m is None:
            raise ValueError(f"expected seconds or a duration like 90s, 15m, 2h, 1d, got {v!r}")
        return float(m.group(1)) * _UNIT_S[m.group(2)]
    return v


Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


def _check_deadlines(v: dict[str, float]) -> dict[str, float]:
    for code in v:
        if code not in CATALOGUE:
            raise ValueError(f"unknown scene class {code!r}; known: {', '.join(CATALOGUE)}")
    return v


Deadlines = Annotated[dict[str, Duration], AfterValidator(_check_deadlines)]


class Responsible(_Model):
    """Who must act on a case here (责任单位) and how to reach them; unset fields are taken from
    the road section, then the camera, then the file's defaults."""

    unit: str | None = Field(
        default=None, min_length=1, title="Responsible unit", description="e.g. 新成路街道城管中队"
    )
    contact: str | None = Field(default=None, min_length=1, title="Contact", description="A person, a phone.")
    shop: str | None = Field(
        default=None, min_length=1, title="Shop (门前三包)", description="The shop that answers for this frontage."
    )


class RoadSection(_Model):
    """A named stretch of road under one road chief (路长制); zones join it with `section:`."""

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    road_chief: str | None = Field(default=None, min_length=1, title="Road chief (路长)")
    unit: str | None = Field(default=None, min_length=1, title="Responsible unit")
    contact: str | None = Field(default=None, min_length=1)


class DeadlineChecks(_Model):
    """The camera's own check of a case at its rectification deadline (自动核查), and after it."""

    enabled: bool = True
    recheck_s: Duration = Field(default=1800.0, title="Again every", description="While overdue, check this often.")
    give_up_s: Duration = Field(
        default=7 * 86400.0, title="Stop after", description="No more checks this long after the deadline."
    )


class ZoneConfig(_Model):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: ZoneKind
    grade: Grade = Grade.ARTERIAL
    # Pixel coordinates in the camera's native resolution. Omitted: the whole frame.
    polygon: list[tuple[float, float]] | None = None
    classes: list[str] | None = None  # restrict to these scene classes (default: all that apply)
    schedule: Schedule | None = None
    rules: RuleOverrides = Field(
        default_factory=dict,
        title="Rules here",
        description="This zone's rule parameters per scene class, over the camera's (e.g. detector: scene_change).",
    )
    allows: list[Allowance] = Field(
        default_factory=list,
        title="Allowed here",
        description="Scene classes not reported for objects inside this zone.",
    )
    section: str | None = Field(default=None, title="Road section", description="The id of a `sections:` entry.")
    responsible: Responsible | None = None

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: list | None) -> list | None:
        if v is None:
            return v
        if len(v) < 3:
            raise ValueError(f"polygon needs at least 3 points, got {len(v)}")
        if any(x < 0 or y < 0 for x, y in v):
            raise ValueError("polygon coordinates must be non-negative pixels")
        crossing = _self_intersection(v)
        if crossing is not None:
            i, j = crossing
            raise ValueError(
                f"polygon crosses itself: edge {i + 1} (points {i + 1}-{i + 2}) crosses edge {j + 1} "
                f"(points {j + 1}-{(j + 1) % len(v) + 1}); list the corners in order around the zone"
            )
        if _area(v) < 1.0:
            raise ValueError("polygon has no area (points are collinear or repeated)")
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | None) -> list[str] | None:
        return _known_classes(v)


class Location(_Model):
    address: str = Field(min_length=1)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)


class EventPolicy(_Model):
    update_interval_s: float = Field(default=600.0, gt=0)  # at most one `updated` per event per interval
    resolve_grace_s: float = Field(default=120.0, gt=0)  # absent this long -> `resolved`


class ReaderPolicy(_Model):
    """How the daemon treats a camera connection (live streams only; replay ignores it)."""

    open_timeout_s: float = Field(default=10.0, gt=0)  # RTSP handshake
    read_timeout_s: float = Field(default=10.0, gt=0)  # a blocking read with no data at all
    stall_timeout_s: float = Field(default=15.0, gt=0)  # data but no decodable frame -> reconnect
    max_lag_s: float = Field(default=5.0, gt=0)  # decode fell this far behind the camera -> reconnect
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    backoff_jitter: float = Field(default=0.2, ge=0, le=1)  # +-fraction, so a fleet does not redial in step

    @model_validator(mode="after")
    def _backoff_order(self) -> ReaderPolicy:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must be at least backoff_initial_s")
        return self


class DetectionPolicy(_Model):
    """When a camera's frames go to the detector (pipeline/motion.py). Unset fields take the file's."""

    motion_gating: bool | None = Field(
        default=None,
        title="Motion-gated detection",
        description="Detect a frame only when something moves in or near a zone with rules, when a "
        "re-check is due, or when a verification asks; other frames keep the last detections. Default: off.",
    )
    recheck_s: float | None = Field(
        default=None, gt=0, title="Re-check (s)", description="With gating: detect at least this often. Default: 10."
    )


class TrackingPolicy(_Model):
    """Per-camera overrides of the model card's tracking thresholds (its calibrated confidence
    scale); unset fields take the card's values. See models.Thresholds for what each one does."""

    high: float | None = Field(
        default=None,
        ge=0,
        le=1,
        title="First-stage confidence",
        description="Detections from this confidence are matched first and may start tracks.",
    )
    activate: float | None = Field(
        default=None,
        ge=0,
        le=1,
        title="Activation confidence",
        description="The least confidence that starts a new track.",
    )
    min_frames: int | None = Field(
        default=None,
        ge=1,
        le=30,
        title="Frames to activate",
        description="Consecutive analysed frames a new track must be matched on to get an id.",
    )
    lost_s: float | None = Field(
        default=None,
        gt=0,
        title="Lost-track memory (s)",
        description="How long a track that is not seen (hidden by traffic) keeps its id; "
        "default: the event resolve grace.",
    )

    @model_validator(mode="after")
    def _order(self) -> TrackingPolicy:
        if self.high is not None and self.activate is not None and self.activate > self.high:
            raise ValueError(f"activate ({self.activate}) must not exceed high ({self.high})")
        return self


def _check_tz(v: str) -> str:
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
    return v


def _require_unique(what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{what} id {i!r} is used twice")
        seen.add(i)


TimeZoneName = Annotated[str, AfterValidator(_check_tz)]


ZoneCrops = Literal["auto", "on", "off"]
ZONE_CROPS_HELP = (
    "Also detect each drawn zone cut out at native resolution: auto (zones where objects come out "
    "at least 2x larger than in the letterboxed frame), on (every drawn zone that gains), off."
)


class Defaults(_Model):
    analysis_fps: float = Field(default=2.0, gt=0, le=30)
    zone_crops: ZoneCrops = Field(default="auto", title="Zone-crop inference", description=ZONE_CROPS_HELP)
    timezone: TimeZoneName = "Asia/Shanghai"
    event: EventPolicy = EventPolicy()
    reader: ReaderPolicy = ReaderPolicy()
    tracking: TrackingPolicy = TrackingPolicy()
    detection: DetectionPolicy = DetectionPolicy()
    rules: RuleOverrides = Field(default_factory=dict)
    responsible: Responsible | None = None
    deadlines: Deadlines = Field(
        default_factory=dict,
        title="Rectification deadlines",
        description="Per scene class, over StreetScan's table (catalogue.DEFAULT_RECTIFY_S), e.g. "
        "illegal_parking: 15m.",
    )
    deadline_checks: DeadlineChecks = DeadlineChecks()


class CameraConfig(_Model):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1)
    url: str = Field(min_length=1)
    detect_url: str | None = Field(
        default=None,
        min_length=1,
        title="Substream",
        description="The camera's substream (e.g. 704x576 or 640x360 beside a 1080p `url`): detection, tracking, "
        "rules and the scene model run on it; evidence pictures come from `url`, the main stream, whose pixels "
        "the zones are drawn in.",
    )
    location: Location
    analysis_fps: float | None = Field(default=None, gt=0, le=30)
    timezone: TimeZoneName | None = None
    enabled: bool = True
    zone_crops: ZoneCrops | None = Field(default=None, title="Zone-crop inference", description=ZONE_CROPS_HELP)
    zones: list[ZoneConfig] = Field(default_factory=lambda: [ZoneConfig(id="frame", kind=ZoneKind.ANY)])
    tracking: TrackingPolicy = TrackingPolicy()
    detection: DetectionPolicy = DetectionPolicy()
    rules: RuleOverrides = Field(default_factory=dict)
    responsible: Responsible | None = None
    deadlines: Deadlines = Field(default_factory=dict, title="Rectification deadlines")

    @field_validator("url", "detect_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme and scheme not in {"rtsp", "rtsps", "rtmp", "http", "https", "file"}:
            raise ValueError(
                f"unsupported URL scheme {scheme!r}: use rtsp://, rtsps://, rtmp://, http(s):// "
                "(HTTP-FLV or HLS) or a file path"
            )
        return v

    @model_validator(mode="after")
    def _unique_zones(self) -> CameraConfig:
        _require_unique("zone", [z.id for z in self.zones])
        return self

    @model_validator(mode="after")
    def _crops_need_the_main_stream(self) -> CameraConfig:
        if self.detect_url and self.zone_crops == "on":
            raise ValueError(
                "zone_crops 'on' cuts zones from the main stream's full picture on every frame; a camera with a "
                "detect_url decodes the main stream for evidence only: use zone_crops 'off' or leave it out"
            )
        return self


_CODE = r"^[0-9A-Za-z._-]{1,32}$"


class PlatformCodeConfig(_Model):
    """A deployment's code for one scene class; unset fields keep the default table's."""

    category_code: str | None = Field(default=None, pattern=_CODE, title="大类 code")
    category: str | None = Field(default=None, min_length=1, title="大类 name")
    code: str | None = Field(
        default=None,
        pattern=_CODE,
        title="小类 code",
        description="Unique across scene classes: the platform files cases by it.",
    )
    name: str | None = Field(default=None, min_length=1, title="小类 name")


def resolve_platform_codes(overrides: dict[str, PlatformCodeConfig]) -> dict[str, PlatformCode]:
    table = {}
    for scene, default in DEFAULT_PLATFORM_CODES.items():
        o = overrides.get(scene)
        table[scene] = PlatformCode(**{**default.as_dict(), **(o.model_dump(exclude_none=True) if o else {})})
    return table


class EnforcementStage(_Model):
    id: str = Field(pattern=r"^[a-z0-9_]+$", title="Stage id", description="What consumers switch on.")
    name: str = Field(min_length=1, title="Stage name", description="What the case officer reads.")


DEFAULT_STAGES = (
    EnforcementStage(id="educate", name="首次教育引导"),
    EnforcementStage(id="warn", name="二次警告"),
    EnforcementStage(id="penalise", name="三次从轻处罚"),
    EnforcementStage(id="penalise_strictly", name="三次以上从严处罚"),
)


class EnforcementPolicy(_Model):
    """Tiered enforcement (安阳's 首次教育引导 -> 二次警告 -> 三次从轻处罚 -> 三次以上从严): the n-th
    confirmed violation of a class at one place (camera + zone) within `window_days` gets stage n;
    past the last stage, the last one."""

    window_days: float = Field(
        default=30.0, gt=0, le=366, title="Window (days)", description="Violations older than this no longer count."
    )
    stages: list[EnforcementStage] = Field(
        default_factory=lambda: list(DEFAULT_STAGES),
        min_length=1,
        title="Stages",
        description="In order: first offence first.",
    )
    classes: list[str] | None = Field(
        default=None, title="Scene classes", description="Classes handled in stages (default: all)."
    )
    offender: dict[str, Literal["place", "none"]] = Field(
        default_factory=dict,
        title="Who repeats",
        description="Per scene class, over StreetScan's table (catalogue.DEFAULT_OFFENDER): place (stages count "
        "the place's violations) or none (the camera cannot tell offenders apart: every case is a first).",
    )

    _classes = field_validator("classes")(classmethod(lambda cls, v: _known_classes(v)))

    @field_validator("offender")
    @classmethod
    def _offender_classes(cls, v: dict[str, str]) -> dict[str, str]:
        _known_classes(list(v))
        return v

    def offender_of(self, scene_class: str) -> str:
        return self.offender.get(scene_class, DEFAULT_OFFENDER[scene_class])

    @model_validator(mode="after")
    def _unique_stages(self) -> EnforcementPolicy:
        _require_unique("stage", [st.id for st in self.stages])
        return self

    def applies_to(self, scene_class: str) -> bool:
        return self.classes is None or scene_class in self.classes


DEFAULT_STREAM = "streetscan:events"  # the Redis Stream cases go to, and consumers read
DEFAULT_JSONL_MAX_MB = 256.0  # a JSONL output starts a new file past this size
DEFAULT_WEBHOOK_TIMEOUT_S = 10.0  # seconds a webhook receiver has to answer one delivery

# The URL schemes an output may have; delivery.outputs.OPENERS opens each (and checks it has them all).
OUTPUT_SCHEMES = ("jsonl", "redis", "rediss", "http", "https")


def output_scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


class OutputConfig(_Model):
    """One place cases go (delivery.outputs opens it): its URL, and for a webhook its secret, CA
    and timeout."""

    url: str = Field(
        min_length=1,
        repr=False,
        title="Output URL",
        description="jsonl:[PATH], redis://HOST[:PORT][/DB][?stream=KEY] or https://... (a webhook)",
    )
    secret_file: Path | None = Field(
        default=None, description="Webhook: the shared secret (default: $STREETSCAN_WEBHOOK_SECRET)."
    )
    ca_file: Path | None = Field(default=None, description="Webhook: a CA bundle for the receiver's certificate.")
    timeout_s: float = Field(
        default=DEFAULT_WEBHOOK_TIMEOUT_S, gt=0, description="Webhook: seconds per delivery attempt."
    )
    max_mb: float = Field(
        default=DEFAULT_JSONL_MAX_MB, ge=0, description="JSONL: start a new file past this size (0: never)."
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        if output_scheme(v) not in OUTPUT_SCHEMES:
            raise ValueError(f"unknown output {redact_url(v)!r}: use {', '.join(f'{s}:' for s in OUTPUT_SCHEMES)}")
        return v


class StreamsConfig(_Model):
    version: int = 1
    enforcement: EnforcementPolicy = Field(default_factory=EnforcementPolicy, title="Tiered enforcement")
    defaults: Defaults = Defaults()
    platform_codes: dict[str, PlatformCodeConfig] = Field(
        default_factory=dict,
        title="Case-platform codes",
        description="Per scene class: the city's 大类/小类 codes and names, over StreetScan's default table.",
    )
    outputs: list[OutputConfig] = Field(
        default_factory=list,
        title="Outputs",
        description="Where `streetscan run` sends cases, besides its --output flags.",
    )
    sections: list[RoadSection] = Field(
        default_factory=list, title="Road sections", description="路长制: zones name their section with `section:`."
    )
    cameras: list[CameraConfig] = Field(min_length=1)
    _resolved: dict[str, Camera] = PrivateAttr(default_factory=dict)

    @field_validator("platform_codes")
    @classmethod
    def _platform_codes(cls, v: dict[str, PlatformCodeConfig]) -> dict[str, PlatformCodeConfig]:
        for scene in v:
            if scene not in CATALOGUE:
                raise ValueError(f"unknown scene class {scene!r}; known: {', '.join(CATALOGUE)}")
        for code, first, second in duplicate_platform_codes(resolve_platform_codes(v)):
            raise ValueError(f"code {code!r} is given to both {first} and {second}; each scene class needs its own")
        return v

    @field_validator("version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != 1:
            raise ValueError(f"unsupported streams.yaml version {v}; this StreetScan reads version 1")
        return v

    @model_validator(mode="after")
    def _unique_cameras(self) -> StreamsConfig:
        _require_unique("camera", [c.id for c in self.cameras])
        return self

    @model_validator(mode="after")
    def _known_sections(self) -> StreamsConfig:
        _require_unique("road section", [s.id for s in self.sections])
        known = {s.id for s in self.sections}
        for i, cam in enumerate(self.cameras):
            for j, zone in enumerate(cam.zones):
                if zone.section is not None and zone.section not in known:
                    raise ValueError(
                        f"camera {cam.id!r} (cameras[{i}]) field zones[{j}].section: no road section "
                        f"{zone.section!r} in `sections:`; known: {', '.join(sorted(known)) or 'none'}"
                    )
        return self

    @model_validator(mode="after")
    def _resolve(self) -> StreamsConfig:
        codes = resolve_platform_codes(self.platform_codes)
        sections = {s.id: s for s in self.sections}
        self._resolved = {
            c.id: resolve_camera(c, self.defaults, codes, self.enforcement, sections) for c in self.cameras
        }
        return self

    def camera(self, camera_id: str) -> Camera:
        """The camera with this file's defaults merged in (resolved once, at load)."""
        try:
            return self._resolved[camera_id]
        except KeyError:
            raise KeyError(f"no camera {camera_id!r}; known: {', '.join(self._resolved)}") from None

    def resolved(self) -> list[Camera]:
        return list(self._resolved.values())


@dataclass(frozen=True)
class Camera:
    """One camera as every stage sees it: its own settings with the file's defaults merged in,
    grade scaling applied and the time zone attached, so no stage works out an effective value
    again. Equal cameras behave the same, which is what a reload compares."""

    id: str
    name: str
    url: str  # the main stream: evidence pictures, and the pixels zones are drawn in
    detect_url: str | None  # the substream detection runs on, when the camera sends one
    location: Location
    enabled: bool
    analysis_fps: float
    tz: ZoneInfo
    zone_crops: ZoneCrops
    zones: tuple[ZoneConfig, ...]
    overrides: dict[str, dict[str, Any]]  # streams.yaml's rule parameters per scene class (file, then camera)
    tracking: TrackingPolicy
    detection: DetectionPolicy  # merged: file defaults, then the camera's
    event: EventPolicy
    reader: ReaderPolicy
    platform_codes: dict[str, PlatformCode]  # scene class -> the case platform's 大类/小类
    enforcement: EnforcementPolicy
    responsibility: dict[str, Responsibility]  # zone id -> who must act on its cases (merged once, here)
    deadlines: dict[str, float]  # scene class -> rectification seconds given in streams.yaml (defaults, camera)
    deadline_checks: DeadlineChecks

    def zone(self, zone_id: str) -> ZoneConfig:
        return next(z for z in self.zones if z.id == zone_id)

    def rule_overrides(self, code: str, zone: ZoneConfig | None = None) -> dict[str, Any]:
        """streams.yaml's parameters for a scene class on this camera, and in `zone` when given (the
        file's defaults, then the camera's, then the zone's; plan.CameraPlan applies them)."""
        return {**self.overrides.get(code, {}), **(zone.rules.get(code, {}) if zone else {})}

    def with_analysis_fps(self, fps: float) -> Camera:
        return replace(self, analysis_fps=fps)

    def rectify_s(self, scene_class: str, zone_id: str) -> float:
        """The rectification deadline of a case of this class in this zone, in seconds after it opened:
        streams.yaml's as given, else the catalogue's scaled by the zone's road grade (like dwell)."""
        given = self.deadlines.get(scene_class)
        if given is not None:
            return given
        return DEFAULT_RECTIFY_S[scene_class] * GRADE_TIME_FACTOR[self.zone(zone_id).grade]

    @property
    def detect_source(self) -> str:
        """What the detector's frames are read from: the substream, else the main stream."""
        return self.detect_url or self.url


def resolve_camera(
    cam: CameraConfig,
    defaults: Defaults,
    platform_codes: dict[str, PlatformCode] | None = None,
    enforcement: EnforcementPolicy | None = None,
    sections: dict[str, RoadSection] | None = None,
) -> Camera:
    tracking = {**defaults.tracking.model_dump(exclude_none=True), **cam.tracking.model_dump(exclude_none=True)}
    overrides = {
        code: {**defaults.rules.get(code, {}), **cam.rules.get(code, {})} for code in {*defaults.rules, *cam.rules}
    }
    remember(cam.url)  # its password must never leave the process (secrets.redact)
    if cam.detect_url:
        remember(cam.detect_url)
    return Camera(
        id=cam.id,
        name=cam.name,
        url=cam.url,
        detect_url=cam.detect_url,
        location=cam.location,
        enabled=cam.enabled,
        analysis_fps=cam.analysis_fps or defaults.analysis_fps,
        tz=ZoneInfo(cam.timezone or defaults.timezone),
        # Zone crops cut the main stream's full picture on every frame, which a substream camera does not decode.
        zone_crops="off" if cam.detect_url else cam.zone_crops or defaults.zone_crops,
        zones=tuple(cam.zones),
        overrides=overrides,
        tracking=TrackingPolicy.model_validate(tracking),
        detection=DetectionPolicy.model_validate(
            {**defaults.detection.model_dump(exclude_none=True), **cam.detection.model_dump(exclude_none=True)}
        ),
        event=defaults.event,
        reader=defaults.reader,
        platform_codes=platform_codes or dict(DEFAULT_PLATFORM_CODES),
        enforcement=enforcement or EnforcementPolicy(),
        responsibility={z.id: _responsibility(z, cam, defaults, sections or {}) for z in cam.zones},
        deadlines={**defaults.deadlines, **cam.deadlines},
        deadline_checks=defaults.deadline_checks,
    )


def _responsibility(
    zone: ZoneConfig, cam: CameraConfig, defaults: Defaults, sections: dict[str, RoadSection]
) -> Responsibility:
    """Field by field, the nearest that says: the zone, its road section, the camera, the file."""
    section = sections.get(zone.section) if zone.section else None
    layers: list[Any] = [zone.responsible, section, cam.responsible, defaults.responsible]

    def first(name: str) -> str | None:
        return next((v for layer in layers if layer is not None and (v := getattr(layer, name, None))), None)

    return Responsibility(
        unit=first("unit"),
        contact=first("contact"),
        shop=zone.responsible.shop if zone.responsible else None,
        section_id=section.id if section else None,
        section_name=section.name if section else None,
        road_chief=section.road_chief if section else None,
    )


def camera_for_file(path: str | Path, defaults: Defaults | None = None) -> Camera:
    """A stand-in camera for footage without a streams.yaml entry: one `any` zone over the frame."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-") or "replay"
    cam = CameraConfig(id=stem, name=Path(path).name, url=str(path), location=Location(address=f"replay of {path}"))
    return resolve_camera(cam, defaults or Defaults())


def _format_loc(loc: tuple, raw: Any) -> str:
    """('cameras', 2, 'zones', 0, 'polygon') -> "camera 'gate-3' (cameras[2]) field zones[0].polygon"."""
    prefix = ""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "cameras" and isinstance(parts[1], int):
        idx = parts[1]
        cam_id = None
        if isinstance(raw, dict) and isinstance(raw.get("cameras"), list) and idx < len(raw["cameras"]):
            entry = raw["cameras"][idx]
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                cam_id = entry["id"]
        prefix = f"camera {cam_id!r} (cameras[{idx}])" if cam_id else f"cameras[{idx}]"
        parts = parts[2:]
    path = ""
    for p in parts:
        path += f"[{p}]" if isinstance(p, int) else (f".{p}" if path else str(p))
    if prefix and path:
        return f"{prefix} field {path}"
    return prefix or (f"field {path}" if path else "top level")


def parse_config(raw: Any, path: str | Path = "<streams.yaml>") -> StreamsConfig:
    if not isinstance(raw, dict):
        raise ConfigError(path, [f"top level: expected a mapping with 'cameras:', got {type(raw).__name__}"])
    try:
        return StreamsConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            # Drop pydantic's union/validator plumbing from the location, keep the user's field names.
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field (check the spelling; see README 'streams.yaml')"
            elif err["type"] == "missing":
                msg = "required field is missing"
            # A check across the file (a zone's road section) names its camera and field itself.
            where = "" if not loc and msg.startswith("camera ") else f"{_format_loc(loc, raw)}: "
            problems.append(f"{where}{msg}")
        raise ConfigError(path, problems) from None


def load_config(path: str | Path) -> StreamsConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, [f"cannot read file: {exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(path, [f"{where}YAML syntax error: {getattr(exc, 'problem', exc)}"]) from None
    return parse_config(raw, path)
