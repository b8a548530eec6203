"""What the console knows about cameras, and how its zone editor changes streams.yaml.

The console does not own the cameras: a `Fleet` tells it their state. Served by the daemon it is
the daemon's live view (`DaemonFleet`); served on a recorded output folder it
is `RecordedFleet`: the cameras of a streams.yaml, the pictures the replay left, no live state.

`StreamsFile` is the one way the console writes streams.yaml: the camera's zones are replaced in
the file as the operator wrote it (comments, order and the other cameras kept, through ruamel's
round trip), the result is validated by the same model `streetscan run` loads, and only a valid
file replaces the old one: atomically, after a timestamped backup.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from ..pipeline.config import ConfigError, ZoneConfig, load_config, parse_config
from ..pipeline.evidence import SNAPSHOT_DIR
from ..workers.report import REPLAY_FIGURES
from ..workers.supervisor import Daemon, camera_state, decode_mode, main_stream_state

BACKUPS_KEPT = 20


@dataclass(frozen=True)
class CameraView:
    """One camera as the cameras page shows it."""

    id: str
    name: str
    address: str
    lat: float | None
    lon: float | None
    state: str  # live / connecting / backoff / disabled / recorded
    reason: str = ""
    last_frame_age_s: float | None = None
    analysed_fps: float | None = None
    frames_dropped: int | None = None
    zones: tuple[ZoneConfig, ...] = field(default_factory=tuple)
    decode: str | None = None  # full / keyframe-only / keyframe-only (shedding load); None: not live
    # A camera pair's main stream (evidence pictures): its state and why; None: one stream only.
    main_stream: tuple[str, str] | None = None

    @property
    def shedding(self) -> bool:
        return bool(self.decode and self.decode.endswith("(shedding load)"))

    @property
    def down(self) -> bool:
        return self.state == "backoff"


class Fleet(Protocol):
    out_dir: Path  # snapshots/ lives here
    streams: StreamsFile | None  # None: nothing to edit (a replay without --streams)

    def cameras(self) -> list[CameraView]: ...

    def applied(self) -> str:
        """Called after the zone editor saved streams.yaml; the console string (i18n key) saying
        what happens next."""
        ...


def snapshot_path(out_dir: Path, camera_id: str) -> Path | None:
    """The camera's current picture, if one was written; never a path outside snapshots/."""
    root = (Path(out_dir) / SNAPSHOT_DIR).resolve()
    path = (root / f"{camera_id}.jpg").resolve()
    return path if path.parent == root and path.is_file() else None


class RecordedFleet:
    """The cameras of a streams.yaml (or, without one, the camera ids the cases name) with the
    pictures a replay or an earlier daemon run left in the output folder."""

    def __init__(self, out_dir: Path, streams_path: Path | None = None, camera_ids: list[str] | None = None):
        self.out_dir = Path(out_dir)
        self.streams = StreamsFile(streams_path) if streams_path else None
        self._ids = camera_ids or []

    def cameras(self) -> list[CameraView]:
        measured = self._replayed()

        def figures(camera_id: str) -> dict:
            m = measured.get(camera_id, {})
            return {"analysed_fps": m.get("analysed_fps"), "frames_dropped": m.get("frames_dropped")}

        if self.streams is None:
            return [CameraView(i, i, "", None, None, "recorded", **figures(i)) for i in self._ids]
        config = self.streams.load()
        return [
            CameraView(
                c.id,
                c.name,
                c.location.address,
                c.location.lat,
                c.location.lon,
                "recorded" if c.enabled else "disabled",
                zones=c.zones,
                **figures(c.id),
            )
            for c in config.resolved()
        ]

    def _replayed(self) -> dict[str, dict]:
        """What the replays into this folder measured per camera (workers.report.write_replay_figures)."""
        try:
            data = json.loads((self.out_dir / REPLAY_FIGURES).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        cameras = data.get("cameras") if isinstance(data, dict) else None
        return cameras if isinstance(cameras, dict) else {}

    def applied(self) -> str:
        return "saved_file"


class StaleEdit(Exception):
    """streams.yaml changed after the editor was opened: saving would overwrite someone's change."""


class StreamsFile:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._loaded: tuple[tuple[int, int], Any] | None = None

    def load(self):
        """The file's configuration, parsed again only when the file changed: a cameras page with
        its pictures asks for it once per picture."""
        try:
            st = self.path.stat()
        except OSError:
            return load_config(self.path)  # its ConfigError names the file and why
        key = (st.st_mtime_ns, st.st_size)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = (key, load_config(self.path))
        return self._loaded[1]

    def version(self) -> str:
        """A fingerprint of the file as it is now; the editor sends back the one it started from."""
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16]

    def replace_zones(self, camera_id: str, zones: object, expected_version: str | None = None) -> Path:
        """Give `camera_id` these zones. Raises ConfigError (with the same messages `streetscan
        check-config` prints) and leaves the file alone when the result is invalid, StaleEdit
        when the file changed since `expected_version`. Returns the backup's path. `zones` is the
        editor's JSON as sent: anything but a list of zone mappings is a ConfigError."""
        if expected_version is not None and expected_version != self.version():
            raise StaleEdit(f"{self.path} changed since the editor was opened; reload the page and draw again")
        rt = YAML()
        rt.preserve_quotes = True
        rt.indent(mapping=2, sequence=4, offset=2)  # the style of the shipped examples and the README
        rt.width = 4096  # a polygon stays on its line
        doc = rt.load(self.path.read_text(encoding="utf-8"))
        cameras = doc.get("cameras") if isinstance(doc, dict) else None
        entry = next((c for c in cameras or [] if isinstance(c, dict) and c.get("id") == camera_id), None)
        if entry is None:
            raise ConfigError(self.path, [f"no camera {camera_id!r} in this file"])
        entry["zones"] = _zones_yaml(zones, entry.get("zones"))
        buf = io.StringIO()
        rt.dump(doc, buf)
        text = buf.getvalue()
        # The same model as `streetscan run`: what the editor saves, the daemon loads.
        parse_config(yaml.safe_load(text), self.path)
        return self._write(text)

    def _write(self, text: str) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[1:]
        backup = self.path.with_name(f"{self.path.name}.{stamp}.bak")
        # streams.yaml holds camera passwords: its backups and its new copy are the owner's only
        # (the file it replaces keeps its own mode, or 0600 if it was wider).
        mode = (self.path.stat().st_mode & 0o600) or 0o600
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self.path.read_bytes())
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a power cut
        finally:
            os.close(dir_fd)
        for old in sorted(self.path.parent.glob(f"{self.path.name}.*.bak"))[:-BACKUPS_KEPT]:
            old.unlink(missing_ok=True)
        return backup


_ZONE_KEYS = ("id", "kind", "grade", "polygon", "classes", "schedule")


def _zones_yaml(zones: object, old: Any) -> CommentedSeq:
    """The editor's zones as YAML the way a person writes them: one mapping per zone, polygons and
    class lists on one line. A zone that was in the file keeps its mapping (and so the comments
    written on it): only its changed keys are set. Keys the editor does not know are passed on, so
    the model rejects them by name instead of this function dropping them."""
    if not isinstance(zones, list):
        raise ConfigError("<zone editor>", [f"zones: expected a list, got {type(zones).__name__}"])
    existing = {z.get("id"): z for z in old or [] if isinstance(z, CommentedMap)}
    out = old if isinstance(old, CommentedSeq) else CommentedSeq()
    items = []
    for z in zones:
        if not isinstance(z, dict):
            items.append(z)
            continue
        m = existing.pop(z.get("id"), None)
        if m is None:
            m = CommentedMap()
        new = _zone_values(z)
        for key in [k for k in m if k not in new]:
            del m[key]
        for key, value in new.items():
            if m.get(key) != value:
                m[key] = value
        items.append(m)
    out[:] = items
    return out


def _zone_values(z: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for key in [*_ZONE_KEYS, *(k for k in z if k not in _ZONE_KEYS)]:
        value = z.get(key)
        if value is None or value == []:
            continue
        if key == "polygon" and isinstance(value, list):
            value = _flow([_flow([_number(c) for c in p]) if isinstance(p, list) else p for p in value])
        elif key == "classes" and isinstance(value, list):
            value = _flow(value)
        elif key == "schedule" and isinstance(value, dict):
            value = CommentedMap(
                {
                    k: _flow([DoubleQuotedScalarString(x) if isinstance(x, str) else x for x in v])
                    if isinstance(v, list)
                    else v
                    for k, v in value.items()
                }
            )
            value.fa.set_flow_style()
        m[key] = value
    return m


def _flow(items: list) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _number(v: Any) -> Any:
    """Pixels as whole numbers when they are (what a person would type)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    if isinstance(v, float):
        return round(v, 1)
    return v


class DaemonFleet:
    """The console's view of the running daemon's cameras (a Fleet)."""

    def __init__(self, daemon: Daemon):
        self._daemon = daemon
        self.out_dir = daemon.options.out_dir
        # Typed as Fleet declares it (None: nothing to edit); a daemon always has its streams.yaml.
        self.streams: StreamsFile | None = StreamsFile(daemon.options.streams_path)

    def cameras(self) -> list[CameraView]:
        runner, registry = self._daemon.runner, self._daemon.metrics.registry
        now = time.monotonic()
        views = []
        for cam_id, slot in runner.slots().items():
            state, reason = camera_state(slot)
            unsaved = runner.analysis.unsaved.get(cam_id)
            if unsaved:  # a full disk: the cameras page says so beside the camera's own state
                reason = f"{reason}; {unsaved}" if reason else unsaved
            cam = slot.camera
            seen = slot.reader.last_frame_at if slot.reader else None
            dropped = registry.get_sample_value("streetscan_frames_dropped_total", {"camera": cam_id})
            main = main_stream_state(slot)
            views.append(
                CameraView(
                    cam_id,
                    cam.name,
                    cam.location.address,
                    cam.location.lat,
                    cam.location.lon,
                    state.value,
                    reason,
                    None if seen is None else now - seen,
                    runner.analysis.analysed_fps(cam_id) if slot.reader else None,
                    int(dropped or 0),
                    cam.zones,
                    decode_mode(slot),
                    None if main is None else (main[0].value, main[1]),
                )
            )
        return views

    def applied(self) -> str:
        self._daemon.request_reload()
        return "saved_reloading"
