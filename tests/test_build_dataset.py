"""scripts/build_dataset.py and streetscan.dataset on small fixture sources, one per label format
(YOLO boxes and polygons, COCO JSON, VOC XML), read from a staged folder and from a real git
repository at a pinned commit, with a duplicate image, a class mapped to drop, a missing source, a
source at another commit and a malformed label file."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv
import yaml
from conftest import REPO, encode_clip

from streetscan.dataset.builder import DatasetBuilder
from streetscan.dataset.manifest import ManifestError, load_manifest
from streetscan.pipeline.models import PACKAGED_MODELS_DIR, vocabulary

VOCAB = list(vocabulary())


def load_cli():
    spec = importlib.util.spec_from_file_location("build_dataset", REPO / "scripts" / "build_dataset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def photo(path: Path, seed: int, size=(480, 720)) -> np.ndarray:
    """A distinct picture per seed (blocky noise, so perceptual hashes differ)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (12, 18, 3), dtype=np.uint8)
    image = cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return image


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def rows(path: Path) -> list[tuple[str, list[float]]]:
    return [
        (VOCAB[int(p[0])], [float(v) for v in p[1:]]) for p in (line.split() for line in path.read_text().splitlines())
    ]


@pytest.fixture
def assets(tmp_path) -> Path:
    """A staged Roboflow-style YOLO set: boxes, a polygon, a dropped class, an augmented copy,
    frames of one clip in both source splits, and one malformed label file."""
    root = tmp_path / "assets" / "datasets" / "bins"
    (root / "data.yaml").parent.mkdir(parents=True)
    (root / "data.yaml").write_text(yaml.safe_dump({"names": ["garbage", "window", "overflow"], "nc": 3}))
    labels = {
        ("train", "street1_jpg.rf.aaa"): "0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.05 0.05\n2 0.2 0.2 0.3 0.4 0.4 0.4 0.4 0.2\n",
        ("train", "street1_jpg.rf.bbb"): "0 0.5 0.5 0.2 0.2\n",  # augmented copy of street1
        ("train", "street2_jpg.rf.ccc"): "2 0.3 0.3 0.1 0.1\n",
        ("train", "broken_jpg.rf.ddd"): "0 0.5 0.5 0.2\n",  # malformed: 3 coordinates
        ("train", "clipA_f001_jpg.rf.eee"): "0 0.4 0.4 0.1 0.1\n",  # clipA also has a val frame
        ("valid", "clipA_f009_jpg.rf.fff"): "0 0.4 0.4 0.1 0.1\n",
        ("valid", "street3_jpg.rf.ggg"): "0 0.6 0.6 0.1 0.1\n",
        ("train", "street3copy_jpg.rf.hhh"): "0 0.6 0.6 0.1 0.1\n",  # same picture as a val image
    }
    seeds = {"street1": 1, "street2": 2, "broken": 3, "clipA_f001": 4, "clipA_f009": 5, "street3": 6, "street3copy": 6}
    for (split, stem), text in labels.items():
        original = stem.split("_jpg")[0]
        image = photo(root / split / "images" / f"{stem}.jpg", seeds[original])
        if stem.endswith("bbb"):  # the export's brighter copy of the same photo
            cv2.imwrite(str(root / split / "images" / f"{stem}.jpg"), cv2.convertScaleAbs(image, alpha=1.0, beta=25))
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        (root / split / "labels" / f"{stem}.txt").write_text(text)
    return tmp_path / "assets"


@pytest.fixture
def mirrors(tmp_path) -> tuple[Path, str, str]:
    """A real git repository (owner+name layout) with COCO, VOC and DOTA sets; returns the mirror
    folder, the commit that holds them and a later commit that removed the VOC set."""
    repo = tmp_path / "mirrors" / "someone+street-sets" / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.org")
    git(repo, "config", "user.name", "t")
    coco = repo / "sets" / "vendors"
    images, annotations = [], []
    for i in range(4):
        photo(coco / "train" / f"cart{i}.jpg", 20 + i, size=(400, 800))
        images.append({"id": i, "file_name": f"cart{i}.jpg", "width": 800, "height": 400})
        annotations.append({"id": 10 + i, "image_id": i, "category_id": 1, "bbox": [100, 50, 200, 100]})
        annotations.append(
            {
                "id": 20 + i,
                "image_id": i,
                "category_id": 2,
                "bbox": [],
                "segmentation": [[400, 200, 600, 200, 600, 300, 400, 300]],
            }
        )
    (coco / "train" / "_annotations.coco.json").write_text(
        json.dumps(
            {
                "images": images,
                "annotations": annotations,
                "categories": [{"id": 0, "name": "vendors"}, {"id": 1, "name": "cart"}, {"id": 2, "name": "sign"}],
            }
        )
    )
    voc = repo / "sets" / "laundry"
    for i in range(3):
        photo(voc / "train" / f"yard{i}.jpg", 40 + i)
        (voc / "train" / f"yard{i}.xml").write_text(
            f"<annotation><filename>yard{i}.jpg</filename><size><width>720</width><height>480</height></size>"
            "<object><name>clothes</name><bndbox><xmin>72</xmin><ymin>48</ymin><xmax>216</xmax><ymax>144</ymax>"
            "</bndbox></object></annotation>"
        )
    dota = repo / "sets" / "litter"
    for i in range(2):
        photo(dota / "train" / "images" / f"lawn{i}.jpg", 60 + i, size=(400, 800))
        # a header line, an upright box and a box turned 45 degrees reaching past the left edge
        (dota / "train" / "labelTxt").mkdir(parents=True, exist_ok=True)
        (dota / "train" / "labelTxt" / f"lawn{i}.txt").write_text(
            "imagesource:phone\n400 100 480 100 480 140 400 140 can 0\n-20 200 20 160 60 200 20 240 bottle 1\n"
        )
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "sets")
    pinned = git(repo, "rev-parse", "HEAD")
    git(repo, "rm", "-rq", "sets/laundry")
    git(repo, "commit", "-qm", "drop laundry")
    return tmp_path / "mirrors", pinned, git(repo, "rev-parse", "HEAD")


def manifest_file(tmp_path: Path, pinned: str, extra: list[dict] = ()) -> Path:
    common = {"licence": "CC BY 4.0", "attribution": "test", "viewpoint": "test", "image_count": 0}
    sources = [
        {
            "name": "bins",
            "staged": "bins",
            "format": "yolo",
            "splits": {"train": "train", "valid": "val"},
            "scene": r"^(clip[A-Z])_",
            "classes": {"garbage": "garbage", "window": None, "overflow": "overflowing_bin"},
        },
        {
            "name": "vendors",
            "repository": "someone/street-sets",
            "commit": pinned,
            "folder": "sets/vendors",
            "format": "coco",
            "splits": {"train": "train"},
            "classes": {"vendors": None, "cart": "stall", "sign": "advertisement"},
        },
        {
            "name": "laundry",
            "repository": "someone/street-sets",
            "commit": pinned,
            "folder": "sets/laundry",
            "format": "voc",
            "splits": {"train": "train"},
            "classes": {"clothes": "laundry"},
        },
        {
            "name": "litter",
            "repository": "someone/street-sets",
            "commit": pinned,
            "folder": "sets/litter",
            "format": "dota",
            "splits": {"train": "train"},
            "classes": {"can": "litter", "bottle": "litter"},
        },
        {
            "name": "gone",
            "repository": "nobody/not-fetched",
            "commit": "0" * 40,
            "format": "yolo",
            "splits": {"train": "train"},
            "classes": {},
        },
        *extra,
    ]
    path = tmp_path / "datasets.yaml"
    path.write_text(
        yaml.safe_dump(
            {"version": 1, "long_side": 320, "val_fraction": 0.5, "sources": [{**common, **s} for s in sources]}
        )
    )
    return path


class FakeTeacher:
    """Stands in for the COCO model where the test needs known boxes (the real one sees nothing
    in noise pictures); `test_teacher_labels_footage` runs the real one."""

    class card:
        name = "fake-teacher"

    def detect(self, images):
        h, w = images[0].shape[:2]
        xyxy = np.array([[0, 0, w / 4, h / 4], [w / 2, h / 2, w, h]], dtype=np.float32)
        return [
            sv.Detections(
                xyxy=xyxy,
                confidence=np.array([0.9, 0.9]),
                class_id=np.array([0, 1]),
                data={"class_name": np.array(["car", "garbage"])},
            )
        ]


def test_builds_every_format_and_reports_what_it_skipped(tmp_path, assets, mirrors):
    mirror_dir, pinned, _ = mirrors
    out = tmp_path / "out"
    code = load_cli()(
        [
            "--assets",
            str(assets),
            "--mirror",
            str(mirror_dir),
            "--out",
            str(out),
            "--no-pseudo",
            "--footage-fps",
            "0",
            "--manifest",
            str(manifest_file(tmp_path, pinned)),
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    by_name = {s["name"]: s for s in report["sources"]}

    # the missing source is named with the reason, and the rest was built
    assert report["skipped"] == {"gone": by_name["gone"]["reason"]}
    assert "missing: no snapshot of nobody/not-fetched" in report["skipped"]["gone"]
    built = ("bins", "vendors", "laundry", "litter")
    assert {n: by_name[n]["status"] for n in built} == dict.fromkeys(built, "built")

    # YOLO: dropped class gone, polygon became its bounding box, ids are vocabulary ids
    label = rows(out / "labels" / "train" / "bins__street1_jpg.rf.aaa.txt")
    assert [c for c, _ in label] == ["garbage", "overflowing_bin"]
    assert label[1][1] == pytest.approx([0.3, 0.3, 0.2, 0.2])
    assert by_name["bins"]["dropped_boxes"] == {"window": 1}
    # malformed label: the file is named, its image left out, the source still built
    assert by_name["bins"]["bad_labels"] == 1
    assert "broken_jpg.rf.ddd.txt" in by_name["bins"]["bad_label_samples"][0]
    assert not list(out.glob("images/*/bins__broken*"))
    # the augmented copy and the copy of a val picture are dropped; the val picture stays in val
    assert by_name["bins"]["duplicates_dropped"] == 2
    assert not (out / "images" / "train" / "bins__street1_jpg.rf.bbb.jpg").exists()
    assert not (out / "images" / "train" / "bins__street3copy_jpg.rf.hhh.jpg").exists()
    assert (out / "images" / "val" / "bins__street3_jpg.rf.ggg.jpg").exists()
    # one clip never on both sides: its train frame follows its val frame
    assert (out / "images" / "val" / "bins__clipA_f001_jpg.rf.eee.jpg").exists()
    assert by_name["bins"]["images"] == {"train": 2, "val": 3}

    # COCO: boxes and polygons (no bbox) both become boxes, the supercategory is dropped
    cart = rows(next((out / "labels").glob("*/vendors__cart0.txt")))
    assert [c for c, _ in cart] == ["stall", "advertisement"]
    assert cart[0][1] == pytest.approx([0.25, 0.25, 0.25, 0.25])
    assert cart[1][1] == pytest.approx([0.625, 0.625, 0.25, 0.25])
    # VOC from the same repository at the pinned commit (HEAD no longer has it)
    yard = rows(next((out / "labels").glob("*/laundry__yard0.txt")))
    assert yard == [("laundry", pytest.approx([0.2, 0.2, 0.2, 0.2]))]
    # DOTA: pixel corners become upright boxes, clipped to the image; header lines are not boxes
    lawn = rows(next((out / "labels").glob("*/litter__lawn0.txt")))
    assert lawn == [
        ("litter", pytest.approx([0.55, 0.3, 0.1, 0.1])),
        ("litter", pytest.approx([0.0375, 0.5, 0.075, 0.2])),
    ]
    # no val split in the source: whole scenes go to val by a seeded draw
    assert sum(by_name["vendors"]["images"].values()) == 4 and by_name["vendors"]["images"].get("val", 0) >= 1

    # resized to the long side; data.yaml, per-source val lists and the report
    assert max(cv2.imread(str(next((out / "images").glob("*/vendors__cart0.jpg")))).shape[:2]) == 320
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"][VOCAB.index("laundry")] == "laundry" and data["val"] == "images/val"
    val_list = (out / "val" / "bins.txt").read_text().split()
    assert len(val_list) == 3 and all(Path(p).exists() for p in val_list)
    assert report["objects"]["laundry"]["human"] == 3 and report["objects"]["laundry"]["sources"] == ["laundry"]
    md = (out / "report.md").read_text()
    assert "## Skipped sources" in md and "**gone**" in md and "| laundry | 3 |" in md
    assert "street_laundry" not in report["scene_classes_without_data"]
    assert "waterlogging" in report["scene_classes_without_data"]
    assert {t["object"]: t["met"] for t in report["targets"]}["person"] is False


def test_source_at_another_commit_or_with_an_unmapped_class_is_skipped(tmp_path, assets, mirrors):
    mirror_dir, pinned, head = mirrors
    other = "1" * 40
    extra = [
        {
            "name": "stale",
            "repository": "someone/street-sets",
            "commit": other,
            "folder": "sets/vendors",
            "format": "coco",
            "splits": {"train": "train"},
            "classes": {},
        },
        {
            "name": "unmapped",
            "repository": "someone/street-sets",
            "commit": pinned,
            "folder": "sets/laundry",
            "format": "voc",
            "splits": {"train": "train"},
            "classes": {"shirts": "laundry"},
        },
    ]
    out = tmp_path / "out"
    code = load_cli()(
        [
            "--assets",
            str(assets),
            "--mirror",
            str(mirror_dir),
            "--out",
            str(out),
            "--no-pseudo",
            "--footage-fps",
            "0",
            "--require-all",
            "--manifest",
            str(manifest_file(tmp_path, pinned, extra)),
        ]
    )
    assert code == 2  # --require-all: skipped sources fail the build
    skipped = json.loads((out / "report.json").read_text())["skipped"]
    assert skipped["stale"] == f"at another commit: someone/street-sets snapshot lacks {other} (its HEAD is {head})"
    assert skipped["unmapped"] == "classes ['clothes'] have no entry in the manifest (map them or null)"
    assert not list(out.glob("images/*/unmapped__*")) and not list(out.glob("images/*/stale__*"))
    assert list(out.glob("images/*/laundry__*"))  # the same folder through a correct entry is fine


def test_one_folder_feeds_two_sources_by_file_name(tmp_path, assets, mirrors):
    """`include` splits a folder by original file name: the street photos go through one class map,
    the clip frames through another, and a malformed label outside the pattern is not read."""
    mirror_dir, pinned, _ = mirrors
    extra = [
        {
            "name": "bins_street",
            "staged": "bins",
            "format": "yolo",
            "include": r"^street",
            "splits": {"train": "train", "valid": "val"},
            "classes": {"garbage": "garbage", "window": None, "overflow": "overflowing_bin"},
        },
        {
            "name": "bins_clips",
            "staged": "bins",
            "format": "yolo",
            "include": r"^clip",
            "splits": {"train": "train", "valid": "val"},
            "scene": r"^(clip[A-Z])_",
            "classes": {"garbage": "litter", "window": None, "overflow": None},
        },
    ]
    manifest = load_manifest(manifest_file(tmp_path, pinned, extra))
    builder = DatasetBuilder(tmp_path / "out", manifest)
    street = builder.add(manifest.source("bins_street"), assets=assets)
    clips = builder.add(manifest.source("bins_clips"), assets=assets)
    builder.finish()
    out = tmp_path / "out"
    street_files = sorted(p.name for p in out.glob("images/*/bins_street__*"))
    clip_files = sorted(p.name for p in out.glob("images/*/bins_clips__*"))
    assert street_files and all("__street" in n for n in street_files)
    assert clip_files == ["bins_clips__clipA_f001_jpg.rf.eee.jpg", "bins_clips__clipA_f009_jpg.rf.fff.jpg"]
    assert not street.bad_labels and not clips.bad_labels  # broken_jpg matches neither pattern
    assert [c for c, _ in rows(out / "labels" / "val" / "bins_clips__clipA_f009_jpg.rf.fff.txt")] == ["litter"]


def test_include_must_be_a_regular_expression(tmp_path, mirrors):
    _, pinned, _ = mirrors
    extra = [
        {
            "name": "bad_include",
            "staged": "bins",
            "format": "yolo",
            "include": "street(",
            "splits": {"train": "train"},
            "classes": {},
        }
    ]
    with pytest.raises(ManifestError, match=r"bad_include.*include.*not a regular expression"):
        load_manifest(manifest_file(tmp_path, pinned, extra))


def test_teacher_labels_only_objects_the_source_does_not_label(tmp_path, assets, mirrors):
    mirror_dir, pinned, _ = mirrors
    manifest = load_manifest(manifest_file(tmp_path, pinned))
    builder = DatasetBuilder(tmp_path / "out", manifest, FakeTeacher())
    builder.add(manifest.source("bins"), assets=assets)
    builder.finish()
    train = rows(tmp_path / "out" / "labels" / "train" / "bins__street2_jpg.rf.ccc.txt")
    # the source labels garbage by hand, so the teacher's garbage box is not added; its car is
    assert sorted(c for c, _ in train) == ["car", "overflowing_bin"]
    val = rows(tmp_path / "out" / "labels" / "val" / "bins__street3_jpg.rf.ggg.txt")
    assert [c for c, _ in val] == ["garbage"]  # val holds human boxes only
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["objects"]["car"]["pseudo"] == 2 and report["objects"]["car"]["human"] == 0
    assert report["teacher"] == "fake-teacher"


def test_teacher_labels_footage(tmp_path):
    """The real COCO model labels street footage frames; whole clips go to one split."""
    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import resolve_model

    manifest = load_manifest(PACKAGED_MODELS_DIR / "datasets.yaml")
    teacher = load_detector(resolve_model("coco-centernet-mbv3"), conf_threshold=0.4)
    builder = DatasetBuilder(tmp_path / "out", manifest, teacher)
    clip = encode_clip(tmp_path / "motorway_overpass.mp4", seconds=2, gop=25)
    result = builder.add_footage(clip, fps=1)
    assert result.images == {"val": 2}  # listed under footage.val in the manifest
    assert len(list((tmp_path / "out" / "labels" / "val").glob("footage_motorway_overpass__*.txt"))) == 2
    assert builder.finish()["teacher"] == "coco-centernet-mbv3"


def test_footage_without_a_stated_licence_is_not_trained_on(tmp_path):
    """A train clip needs a licence in footage.clips: the plaza clip's repository states none, so it
    is skipped with the reason in the report; the MIT kerbside clip is built (first seconds only)."""
    from streetscan.dataset.builder import TEACHER_CONF
    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import resolve_model

    manifest = load_manifest(PACKAGED_MODELS_DIR / "datasets.yaml")
    assert manifest.footage.clips["plaza_pedestrians.mp4"].licence is None
    teacher = load_detector(resolve_model("coco-centernet-mbv3"), conf_threshold=TEACHER_CONF)
    builder = DatasetBuilder(tmp_path / "out", manifest, teacher)
    plaza = builder.add_footage(encode_clip(tmp_path / "plaza_pedestrians.mp4", seconds=2, gop=25), fps=1)
    unknown = builder.add_footage(encode_clip(tmp_path / "someone_elses.mp4", seconds=2, gop=25), fps=1)
    kerb = builder.add_footage(encode_clip(tmp_path / "street_parking_overhead.mp4", seconds=2, gop=25), fps=1)
    assert plaza.status == unknown.status == "skipped" and "no licence stated" in plaza.reason
    assert not list((tmp_path / "out").glob("images/*/footage_plaza_pedestrians__*"))
    assert kerb.status == "built" and kerb.images == {"train": 2}
    rows = {s["name"]: s for s in builder.finish()["sources"]}
    assert rows["footage_street_parking_overhead"]["licence"] == "MIT"
    assert rows["footage_plaza_pedestrians"]["licence"] == "not stated"


@pytest.mark.assets
def test_footage_labels_keep_the_parked_cars_the_teacher_tracks(tmp_path):
    """On the kerbside clip the teacher scores the near parked cars 0.25-0.58: its single-frame
    0.4 cut boxed 1-3 of ~7 cars per frame. Boxes on activated teacher tracks count too, so once
    the tracks are up (3 sampled frames) most frames carry at least 5 cars."""
    from conftest import assets_dir

    from streetscan.dataset.builder import TEACHER_CONF
    from streetscan.pipeline.detect import load_detector
    from streetscan.pipeline.models import resolve_model

    shared = assets_dir()
    if shared is None:
        pytest.skip("shared assets absent: set STREETSCAN_ASSETS to the folder holding footage/ and datasets/")
    manifest = load_manifest(PACKAGED_MODELS_DIR / "datasets.yaml")
    teacher = load_detector(resolve_model("coco-centernet-mbv3"), conf_threshold=TEACHER_CONF)
    builder = DatasetBuilder(tmp_path / "out", manifest, teacher)
    result = builder.add_footage(shared / "footage" / "street_parking_overhead.mp4", fps=0.5)
    labels = sorted((tmp_path / "out" / "labels" / "train").glob("footage_street_parking_overhead__*.txt"))
    assert len(labels) == result.images["train"] > 20
    cars = [sum(1 for line in f.read_text().splitlines() if VOCAB[int(line.split()[0])] == "car") for f in labels]
    single_frame = [
        int(
            (
                teacher.detect([cv2.imread(str(f.parent.parent.parent / "images" / "train" / f"{f.stem}.jpg"))])[
                    0
                ].data["class_name"]
                == "car"
            ).sum()
        )
        for f in labels
    ]
    assert max(single_frame) <= 4, single_frame
    later = cars[3:]
    assert sum(n >= 5 for n in later) >= 0.8 * len(later), cars


def test_manifest_errors_name_file_source_and_field(tmp_path):
    bad = tmp_path / "datasets.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "sources": [
                    {
                        "name": "x",
                        "repository": "a/b",
                        "format": "yolo",
                        "splits": {"train": "train"},
                        "classes": {"cat": "kitten"},
                        "licence": "?",
                        "attribution": "?",
                        "viewpoint": "?",
                        "image_count": 1,
                    }
                ]
            }
        )
    )
    with pytest.raises(ManifestError) as err:
        load_manifest(bad)
    assert (
        str(err.value) == f"{bad}: source x: classes: Value error, ['kitten'] are not objects in models/vocabulary.yaml"
    )
    doc = yaml.safe_load(bad.read_text())
    doc["sources"][0]["classes"] = {"cat": None}
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(ManifestError, match=r"source x: Value error, a repository source needs the `commit`"):
        load_manifest(bad)


def test_committed_manifest_and_report_agree():
    """Every source in the manifest is pinned and licensed, the committed report of the current
    build covers exactly those sources, and every report a model card cites is committed."""
    manifest = load_manifest(PACKAGED_MODELS_DIR / "datasets.yaml")
    for s in manifest.sources:
        assert s.licence and s.viewpoint and s.attribution, s.name
        assert s.staged or (s.repository and len(s.commit) == 40), s.name
    report = json.loads((PACKAGED_MODELS_DIR / "dataset-report.json").read_text())
    assert {s["name"] for s in report["sources"] if not s["name"].startswith("footage_")} == {
        s.name for s in manifest.sources
    }
    # a model trained on an earlier build cites that build's report, which stays committed
    for card in PACKAGED_MODELS_DIR.glob("*.yaml"):
        for cited in re.findall(r"models/(dataset-report[\w.-]*\.md)", card.read_text()):
            assert (PACKAGED_MODELS_DIR / cited).exists(), f"{card.name} cites {cited}"
            assert (PACKAGED_MODELS_DIR / cited.replace(".md", ".json")).exists(), cited
