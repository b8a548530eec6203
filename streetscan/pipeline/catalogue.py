"""The 14 scene classes StreetScan reports, with their default rule parameters.

This module is the one place where scene-class defaults live. A camera's `rules:` block in
streams.yaml overrides them per class; a zone's road `grade` scales the default time thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Category(StrEnum):
    """Digital city-management event categories (数字化城市管理 部件/事件 大类)."""

    CITY_APPEARANCE = "市容环境"
    STREET_ORDER = "街面秩序"
    ADVERTISING = "宣传广告"
    EMERGENCY = "突发事件"


class ZoneKind(StrEnum):
    NO_PARKING = "no_parking"
    STOREFRONT = "storefront"
    ROADWAY = "roadway"
    SIDEWALK = "sidewalk"
    WATER = "water"
    ANY = "any"


class Grade(StrEnum):
    """Road grade: how strictly a street is managed. Demonstration roads (示范路) are strictest,
    back alleys (背街小巷) the most lenient."""

    DEMONSTRATION = "demonstration"
    ARTERIAL = "arterial"
    ALLEY = "alley"


# Multiplier on a scene class's default time threshold (dwell/persist/hold seconds) per grade.
# Explicit per-class overrides in streams.yaml are absolute and are not scaled.
GRADE_TIME_FACTOR: dict[Grade, float] = {
    Grade.DEMONSTRATION: 0.5,
    Grade.ARTERIAL: 1.0,
    Grade.ALLEY: 2.0,
}

# Each scene class names its rule kind (rules.registry.RULE_KINDS) and that kind's defaults for the
# class; what a kind's parameters mean, and their own defaults, are its Params model's.


@dataclass(frozen=True)
class SceneClass:
    code: str
    name_zh: str
    name_en: str
    category: Category
    objects: tuple[str, ...]  # vocabulary objects; any one of them triggers the rule
    rule: str  # its rule kind (rules.registry.RULE_KINDS)
    zone_kinds: tuple[ZoneKind, ...]  # zone kinds the class applies to (ANY always applies)
    # The kind's parameters for this class at an arterial grade (rules.registry.resolve_params scales
    # the time threshold to other grades).
    defaults: dict[str, float | int | bool] = field(default_factory=dict)

    def applies_to(self, kind: ZoneKind) -> bool:
        return kind is ZoneKind.ANY or kind in self.zone_kinds


_STREET = (ZoneKind.ROADWAY, ZoneKind.SIDEWALK, ZoneKind.STOREFRONT)

SCENE_CLASSES: tuple[SceneClass, ...] = (
    SceneClass(
        "exposed_garbage",
        "暴露垃圾",
        "Exposed garbage",
        Category.CITY_APPEARANCE,
        ("garbage",),
        "persistence",
        _STREET,
        {"persist_s": 120},
    ),
    SceneClass(
        "overflowing_bin",
        "垃圾满溢",
        "Overflowing bin",
        Category.CITY_APPEARANCE,
        ("overflowing_bin",),
        "persistence",
        _STREET,
        {"persist_s": 120},
    ),
    SceneClass(
        "littered_road",
        "路面不洁",
        "Littered road",
        Category.CITY_APPEARANCE,
        ("litter",),
        "persistence",
        (ZoneKind.ROADWAY, ZoneKind.SIDEWALK),
        {"persist_s": 300},
    ),
    SceneClass(
        "floating_debris",
        "河道漂浮物",
        "Floating debris",
        Category.CITY_APPEARANCE,
        ("floating_debris",),
        "persistence",
        (ZoneKind.WATER,),
        {"persist_s": 120},
    ),
    SceneClass(
        "stacked_materials",
        "乱堆物料",
        "Stacked materials",
        Category.CITY_APPEARANCE,
        ("materials",),
        "dwell",
        _STREET,
        {"dwell_s": 1800, "max_move_ratio": 0.2},
    ),
    SceneClass(
        "street_laundry",
        "沿街晾晒",
        "Street laundry",
        Category.STREET_ORDER,
        ("laundry",),
        "persistence",
        _STREET,
        {"persist_s": 300},
    ),
    SceneClass(
        "out_of_store_trading",
        "出店经营",
        "Out-of-store trading",
        Category.STREET_ORDER,
        ("goods", "stall", "furniture", "umbrella"),
        "dwell",
        (ZoneKind.STOREFRONT, ZoneKind.SIDEWALK),
        {"dwell_s": 600, "max_move_ratio": 0.2},
    ),
    SceneClass(
        "mobile_vendor",
        "游商小贩",
        "Mobile vendor",
        Category.STREET_ORDER,
        ("stall", "tricycle"),
        "dwell",
        (ZoneKind.SIDEWALK, ZoneKind.ROADWAY),
        {"dwell_s": 300, "max_move_ratio": 0.25},
    ),
    SceneClass(
        "illegal_parking",
        "机动车违停",
        "Illegal parking",
        Category.STREET_ORDER,
        ("car", "bus", "truck"),
        "dwell",
        (ZoneKind.NO_PARKING, ZoneKind.ROADWAY, ZoneKind.SIDEWALK),
        {"dwell_s": 300, "max_move_ratio": 0.15, "queue_aware": True},
    ),
    SceneClass(
        "bike_misparking",
        "非机动车乱停放",
        "Bike misparking",
        Category.STREET_ORDER,
        ("bicycle", "motorcycle"),
        "dwell",
        (ZoneKind.NO_PARKING, ZoneKind.SIDEWALK),
        {"dwell_s": 600, "max_move_ratio": 0.2, "queue_aware": True},
    ),
    SceneClass(
        "crowd_gathering",
        "人群聚集",
        "Crowd gathering",
        Category.EMERGENCY,
        ("person",),
        "count",
        (ZoneKind.ROADWAY, ZoneKind.SIDEWALK, ZoneKind.STOREFRONT),
        {"min_count": 20, "hold_s": 60, "gap_s": 5.0},
    ),
    SceneClass(
        "waterlogging",
        "积水",
        "Waterlogging",
        Category.EMERGENCY,
        ("water",),
        "persistence",
        (ZoneKind.ROADWAY, ZoneKind.SIDEWALK),
        {"persist_s": 300},
    ),
    SceneClass(
        "illegal_advertising",
        "违规广告",
        "Illegal advertising",
        Category.ADVERTISING,
        ("advertisement",),
        "persistence",
        _STREET,
        {"persist_s": 600},
    ),
    SceneClass(
        "uncovered_muck_truck",
        "渣土车未密闭",
        "Uncovered muck truck",
        Category.CITY_APPEARANCE,
        ("muck_truck",),
        "persistence",
        (ZoneKind.ROADWAY,),
        # Trucks drive through: a few seconds of sightings is the whole evidence.
        {"persist_s": 2, "gap_s": 2.0},
    ),
)

CATALOGUE: dict[str, SceneClass] = {c.code: c for c in SCENE_CLASSES}


@dataclass(frozen=True)
class PlatformCode:
    """How a city's 数字化城市管理 case platform files a scene class: its event 大类 (category, with
    code) and 小类 (code, name), GB/T 30428.2-style. Local code tables differ by city, so a
    deployment overrides this table in streams.yaml (`platform_codes:`)."""

    category_code: str
    category: str
    code: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"category_code": self.category_code, "category": self.category, "code": self.code, "name": self.name}


# The default table (README "Case-platform codes" gives its sources). Event 大类 codes: 01 市容环境,
# 02 宣传广告, 03 施工管理, 04 突发事件, 05 街面秩序. 小类 codes present in a published city table
# are used as such; the 9x codes are StreetScan's provisional ones for 小类 that table lacks.
DEFAULT_PLATFORM_CODES: dict[str, PlatformCode] = {
    "exposed_garbage": PlatformCode("01", "市容环境", "0102", "暴露垃圾"),
    "overflowing_bin": PlatformCode("01", "市容环境", "0190", "垃圾满溢"),
    "littered_road": PlatformCode("01", "市容环境", "0104", "道路不洁"),
    "floating_debris": PlatformCode("01", "市容环境", "0105", "水域不洁"),
    "stacked_materials": PlatformCode("05", "街面秩序", "0507", "乱堆物料"),
    "street_laundry": PlatformCode("05", "街面秩序", "0590", "沿街晾挂"),
    "out_of_store_trading": PlatformCode("05", "街面秩序", "0504", "店外经营"),
    "mobile_vendor": PlatformCode("05", "街面秩序", "0501", "无照经营游商"),
    "illegal_parking": PlatformCode("05", "街面秩序", "0505", "机动车乱停放"),
    "bike_misparking": PlatformCode("05", "街面秩序", "0506", "非机动车乱停放"),
    "crowd_gathering": PlatformCode("04", "突发事件", "0490", "人员聚集"),
    "waterlogging": PlatformCode("04", "突发事件", "0491", "道路积水"),
    "illegal_advertising": PlatformCode("02", "宣传广告", "0201", "非法小广告"),
    "uncovered_muck_truck": PlatformCode("03", "施工管理", "0312", "渣土运输车辆未密闭"),
}
assert set(DEFAULT_PLATFORM_CODES) == set(CATALOGUE), "every scene class needs a default platform code"


# How long the responsible unit has to rectify a case (整改期限) once it is opened, at an arterial
# grade (GRADE_TIME_FACTOR scales it: a demonstration road gets half, an alley twice). What moves
# or blocks traffic is minutes, what must be fetched and carted away is hours; a city's own table
# goes in streams.yaml (`deadlines:`), and its values are taken as they are, not scaled.
DEFAULT_RECTIFY_S: dict[str, float] = {
    "exposed_garbage": 2 * 3600,
    "overflowing_bin": 2 * 3600,
    "littered_road": 3600,
    "floating_debris": 4 * 3600,
    "stacked_materials": 24 * 3600,
    "street_laundry": 2 * 3600,
    "out_of_store_trading": 30 * 60,
    "mobile_vendor": 30 * 60,
    "illegal_parking": 15 * 60,
    "bike_misparking": 3600,
    "crowd_gathering": 30 * 60,
    "waterlogging": 2 * 3600,
    "illegal_advertising": 24 * 3600,
    "uncovered_muck_truck": 30 * 60,
}
assert set(DEFAULT_RECTIFY_S) == set(CATALOGUE), "every scene class needs a default rectification deadline"


# Who repeats an offence, as far as a camera can know (tiered enforcement counts by it): "place"
# where someone answers for the spot (the shop whose goods are on the pavement, the site with its
# materials, the household's laundry, the frontage's garbage and bin), "none" where the offender
# moves on and the camera cannot tell one from the next (cars, bikes, vendors' carts, people, trucks,
# anonymous small ads): each of those cases is a first offence.
DEFAULT_OFFENDER: dict[str, str] = {
    "exposed_garbage": "place",
    "overflowing_bin": "place",
    "littered_road": "none",
    "floating_debris": "none",
    "stacked_materials": "place",
    "street_laundry": "place",
    "out_of_store_trading": "place",
    "mobile_vendor": "none",
    "illegal_parking": "none",
    "bike_misparking": "none",
    "crowd_gathering": "none",
    "waterlogging": "none",
    "illegal_advertising": "none",
    "uncovered_muck_truck": "none",
}
assert set(DEFAULT_OFFENDER) == set(CATALOGUE), "every scene class needs its offender rule"


def duplicate_platform_codes(table: dict[str, PlatformCode]) -> list[tuple[str, str, str]]:
    """(code, first class, second class) for each 小类 code given to two scene classes: a case
    platform could not tell their cases apart."""
    owner: dict[str, str] = {}
    clashes = []
    for scene, pc in table.items():
        if pc.code in owner:
            clashes.append((pc.code, owner[pc.code], scene))
        else:
            owner[pc.code] = scene
    return clashes


def served_by(vocabulary: set[str]) -> tuple[list[SceneClass], list[SceneClass]]:
    """Split the catalogue into scene classes a model with these output objects can and cannot serve."""
    served = [c for c in CATALOGUE.values() if vocabulary.intersection(c.objects)]
    missing = [c for c in CATALOGUE.values() if not vocabulary.intersection(c.objects)]
    return served, missing
