"""The data manifest (models/datasets.yaml): where each labelled source comes from and how its
classes map onto the vocabulary.

A source is either *staged* (a folder under `$STREETSCAN_ASSETS/datasets/`) or a folder of a public
repository pinned to one commit. Nothing from a repository is committed here; the manifest is how a
maintainer with internet access gets the same bytes back (clone, check out `commit`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from streetscan.pipeline.models import PACKAGED_MODELS_DIR, vocabulary

MANIFEST_PATH = PACKAGED_MODELS_DIR / "datasets.yaml"

SPLITS = ("train", "val")
FORMATS = ("yolo", "coco", "voc", "dota")

# Where each format keeps images and labels inside a source folder, by default. `{split}` is the
# source's own split folder name (Roboflow exports: train/valid/test).
DEFAULT_LAYOUT = {
    "yolo": {"images": "{split}/images", "labels": "{split}/labels"},
    "coco": {"images": "{split}", "labels": "{split}/_annotations.coco.json"},
    "voc": {"images": "{split}", "labels": "{split}"},
    "dota": {"images": "{split}/images", "labels": "{split}/labelTxt"},
}


def _regex(text: str) -> re.Pattern:
    try:
        return re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


class ManifestError(ValueError):
    """The manifest itself is wrong: names the file, the source and the field."""


class SourceSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(
        title="Name",
        description="Short id; prefixes every image the source contributes.",
        pattern=r"^[a-z0-9][a-z0-9_]*$",
    )
    title: str = Field("", title="Title", description="What the set is, as its authors call it.")
    staged: str | None = Field(
        None, title="Staged folder", description="Folder under $STREETSCAN_ASSETS/datasets/ (shared assets)."
    )
    repository: str | None = Field(
        None,
        title="Repository",
        description="owner/name of the public repository.",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$",
    )
    commit: str | None = Field(
        None, title="Commit", description="The exact commit the set is read from.", pattern=r"^[0-9a-f]{40}$"
    )
    folder: str = Field(".", title="Folder", description="Folder inside the repository or staged set.")
    format: Literal["yolo", "coco", "voc", "dota"] = Field(
        title="Label format",
        description="yolo (boxes or polygons), coco (JSON), voc (XML) or dota (oriented "
        "boxes: four pixel corners and a class name per line).",
    )
    images: str | None = Field(None, title="Images path", description="Image folder per split; `{split}` is replaced.")
    labels: str | None = Field(
        None, title="Labels path", description="Label folder (yolo, voc, dota) or JSON file (coco) per split."
    )
    splits: dict[str, Literal["train", "val", "drop"]] = Field(
        title="Splits",
        description="The source's split folders and where each goes; `val` keeps the "
        "source's own held-out images for evaluation.",
    )
    scene: str | None = Field(
        None,
        title="Scene pattern",
        description="Regex on the original file stem whose first group names the clip or "
        "scene; images of one scene never land on both sides of the split.",
    )
    include: str | None = Field(
        None,
        title="Included images",
        description="Regex searched in each image's original file stem; only matching "
        "images are read, so one folder can feed two sources with different "
        "class maps (fully labelled frames beside clips where one class is "
        "boxed and the teacher must label the rest).",
    )
    classes: dict[str, str | None] = Field(
        title="Class map", description="Every source class name -> vocabulary object, or null to drop it."
    )
    names: list[str] | None = Field(
        None,
        title="Class names",
        description="YOLO class names in id order when the folder has no data.yaml or classes.txt.",
    )
    dedup: bool = Field(
        True,
        title="Drop near-duplicates",
        description="Leave out images that look like one already kept (a public set's augmented copies). Off "
        "for frames operators labelled on a fixed camera: they look alike by nature, and each was chosen for "
        "what is on it.",
    )
    licence: str = Field(title="Licence", description="As stated by the source.")
    attribution: str = Field(title="Attribution", description="Text to carry with models trained on it.")
    url: str = Field("", title="Upstream", description="Where the set was published (dataset page).")
    viewpoint: str = Field(title="Viewpoint", description="Camera height and kind: CCTV, drone, handheld...")
    image_count: int = Field(title="Images", description="Images in the folder at that commit (all splits).", ge=0)
    max_images: int | None = Field(
        None,
        title="Image cap",
        ge=1,
        description="Keep at most this many train images (whole scenes, seeded), "
        "so one huge set does not drown the rest.",
    )

    @model_validator(mode="after")
    def _one_origin(self):
        if (self.staged is None) == (self.repository is None):
            raise ValueError("give exactly one of `staged` (shared assets) or `repository` + `commit`")
        if self.repository is not None and self.commit is None:
            raise ValueError("a repository source needs the `commit` it is read from")
        if not any(v != "drop" for v in self.splits.values()):
            raise ValueError("`splits` sends nothing to train or val")
        return self

    @field_validator("classes")
    @classmethod
    def _known_objects(cls, v: dict[str, str | None]) -> dict[str, str | None]:
        vocab = set(vocabulary())
        unknown = sorted({o for o in v.values() if o is not None and o not in vocab})
        if unknown:
            raise ValueError(f"{unknown} are not objects in models/vocabulary.yaml")
        return v

    @field_validator("scene")
    @classmethod
    def _scene_regex(cls, v: str | None) -> str | None:
        if v is not None and _regex(v).groups < 1:
            raise ValueError("the scene pattern needs one capture group")
        return v

    @field_validator("include")
    @classmethod
    def _include_regex(cls, v: str | None) -> str | None:
        if v is not None:
            _regex(v)
        return v

    def includes(self, original_stem: str) -> bool:
        return self.include is None or re.search(self.include, original_stem) is not None

    def layout(self) -> dict[str, str]:
        base = dict(DEFAULT_LAYOUT[self.format])
        if self.images:
            base["images"] = self.images
        if self.labels:
            base["labels"] = self.labels
        return base

    @property
    def labelled_objects(self) -> frozenset[str]:
        """The vocabulary objects this source labels by hand (the teacher adds none of these)."""
        return frozenset(o for o in self.classes.values() if o is not None)

    @property
    def origin(self) -> str:
        if self.repository:
            assert self.commit is not None  # _one_origin: a repository source always has its commit
            return f"{self.repository}@{self.commit[:12]}"
        return f"shared/datasets/{self.staged}"


class FootageClip(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    origin: str = Field(title="Origin", description="Repository @ commit (and file) the clip was taken from.")
    licence: str | None = Field(
        title="Licence",
        description="As stated by the source; null when none is stated, and then the "
        "clip never goes to train (it may still be scored on in val).",
    )
    viewpoint: str = Field(title="Viewpoint", description="Camera height and kind.")


class FootageSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    val: list[str] = Field(
        default_factory=list,
        title="Validation clips",
        description="Whole clips that go to val; every other clip goes to train.",
    )
    clips: dict[str, FootageClip] = Field(
        default_factory=dict,
        title="Clips",
        description="Every clip file name -> where it is from and its licence. "
        "A clip missing here is treated as unlicensed.",
    )


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1] = 1
    long_side: int = Field(640, ge=64, title="Long side", description="Images are resized so the long side is this.")
    val_fraction: float = Field(
        0.15,
        gt=0,
        lt=1,
        title="Val fraction",
        description="Share of scenes held out for a source that has no val split.",
    )
    sources: list[SourceSpec]
    footage: FootageSpec = Field(default_factory=FootageSpec)

    @model_validator(mode="after")
    def _unique(self):
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names {dup} appear twice")
        return self

    def source(self, name: str) -> SourceSpec:
        return next(s for s in self.sources if s.name == name)


def load_manifest(path: Path = MANIFEST_PATH) -> Manifest:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        sources = (data or {}).get("sources") or []
        lines = []
        for err in exc.errors():
            loc = list(err["loc"])
            where = ".".join(str(p) for p in loc)
            if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int) and loc[1] < len(sources):
                name = (sources[loc[1]] or {}).get("name", f"#{loc[1]}")
                where = f"source {name}: " + ".".join(str(p) for p in loc[2:]) if loc[2:] else f"source {name}"
            lines.append(f"{path}: {where}: {err['msg']}")
        raise ManifestError("\n".join(lines)) from None
