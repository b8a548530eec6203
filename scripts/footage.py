#!/usr/bin/env python3
"""Rebuild the truth set's footage folder from public repository snapshots (benchmarks/footage.yaml).

No clip is committed: the manifest records where each one comes from (repository, commit, path,
licence as stated, sha256 of the original and of the clip) and how it was made from the original
(ffmpeg arguments, stream copy). This script puts every clip it can into OUT:

  - already in OUT with the recorded sha256: kept;
  - staged in $STREETSCAN_ASSETS/footage (or --assets) with the recorded sha256: linked;
  - its repository's snapshot is under --mirror (a folder of `owner+name/` git directories, as the
    tool library's `fetch` leaves them): the file is taken from the recorded commit (or the
    snapshot's HEAD, said so), checked against source_sha256, and processed with ffmpeg;
  - otherwise it is named as missing, with the repository to fetch.

    python scripts/footage.py --mirror /path/to/mirror --out build/footage
    .venv/bin/streetscan evaluate --footage build/footage

Exit status: 0 when every clip is there (or, without --require-all, when at least one is), 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("file", "repository", "commit", "path", "licence", "sha256", "processing", "shows")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_manifest(path: Path) -> list[dict]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    clips = raw.get("clips") if isinstance(raw, dict) else None
    if not isinstance(clips, list):
        raise SystemExit(f"{path}: expected a mapping with a `clips` list")
    for i, clip in enumerate(clips):
        missing = [f for f in FIELDS if f not in clip]
        if missing:
            raise SystemExit(f"{path}: clips[{i}] ({clip.get('file', '?')}): missing {', '.join(missing)}")
    return clips


def git_dir(mirror: Path, repository: str) -> Path | None:
    base = mirror / repository.replace("/", "+")
    for d in (base / "repo", base / "repo" / ".git", base):
        if (d / "HEAD").is_file() and (d / "objects").is_dir():
            return d
    return None


def extract(gd: Path, commit: str, path: str, dest: Path) -> str:
    """The file at `commit` (or HEAD when the snapshot lacks that commit) into dest; the commit used."""
    for rev in (commit, "HEAD"):
        probe = subprocess.run(["git", "--git-dir", str(gd), "cat-file", "-e", f"{rev}:{path}"], capture_output=True)
        if probe.returncode == 0:
            with dest.open("wb") as fh:
                subprocess.run(
                    ["git", "--git-dir", str(gd), "cat-file", "blob", f"{rev}:{path}"], stdout=fh, check=True
                )
            return subprocess.run(
                ["git", "--git-dir", str(gd), "rev-parse", rev], capture_output=True, text=True, check=True
            ).stdout.strip()
    raise FileNotFoundError(f"{path} is not in the snapshot")


def rebuild(clip: dict, gd: Path, out: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        original = Path(tmp) / Path(clip["path"]).name
        used = extract(gd, clip["commit"], clip["path"], original)
        note = "" if used == clip["commit"] else f" (from the snapshot's HEAD {used[:10]}, not {clip['commit'][:10]})"
        got = sha256(original)
        if clip.get("source_sha256") and got != clip["source_sha256"]:
            want = clip["source_sha256"][:12]
            return f"skipped: the snapshot's {clip['path']} has sha256 {got[:12]}, the manifest {want}"
        args = shlex.split(clip["processing"])
        pre = []
        if "-ss" in args:  # a cut seeks on the input, where it lands on a keyframe with stream copy
            k = args.index("-ss")
            pre, args = args[k : k + 2], args[:k] + args[k + 2 :]
        target = out / clip["file"]
        subprocess.run(["ffmpeg", "-v", "error", "-y", *pre, "-i", str(original), *args, str(target)], check=True)
    made = sha256(target)
    if made != clip["sha256"]:
        return (
            f"rebuilt{note}; its sha256 {made[:12]} differs from the manifest's {clip['sha256'][:12]} "
            "(another ffmpeg muxes other bytes; the packets are the original's)"
        )
    return f"rebuilt{note}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=REPO / "benchmarks" / "footage.yaml")
    ap.add_argument("--mirror", type=Path, help="folder of repository snapshots (owner+name/ git directories)")
    ap.add_argument(
        "--assets",
        type=Path,
        default=Path(os.environ.get("STREETSCAN_ASSETS", REPO.parent / "shared")),
        help="folder holding footage/ with staged clips (default: $STREETSCAN_ASSETS, else ../shared)",
    )
    ap.add_argument("--out", type=Path, default=REPO / "build" / "footage")
    ap.add_argument("--require-all", action="store_true", help="exit 1 unless every clip is there")
    a = ap.parse_args(argv)
    clips = load_manifest(a.manifest)
    a.out.mkdir(parents=True, exist_ok=True)
    missing = []
    for clip in clips:
        name, target = clip["file"], a.out / clip["file"]
        staged = a.assets / "footage" / name
        if target.is_file() and sha256(target) == clip["sha256"]:
            status = "ok"
        elif staged.is_file() and sha256(staged) == clip["sha256"]:
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to(staged.resolve())
            status = f"linked from {staged.parent}"
        elif a.mirror and (gd := git_dir(a.mirror, clip["repository"])) is not None:
            try:
                status = rebuild(clip, gd, a.out)
            except (FileNotFoundError, subprocess.CalledProcessError) as exc:
                status = f"missing: {exc}"
        else:
            status = f"missing: fetch github:{clip['repository']} (commit {clip['commit'][:10]}, {clip['path']})"
        if status.startswith(("missing", "skipped")):
            missing.append(name)
        print(f"{name}: {status}")
    there = len(clips) - len(missing)
    print(f"{there} of {len(clips)} clips in {a.out}" + (f"; missing: {', '.join(missing)}" if missing else ""))
    return 0 if not missing or (there and not a.require_all) else 1


if __name__ == "__main__":
    sys.exit(main())
