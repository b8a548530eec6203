"""Reader processes: cameras' demuxing and decoding spread over a pool of processes.

    reader process k: StreamReader threads -> FrameSlot (shared memory, one per camera)
    daemon: FrameCollector -> FrameBoard (newest frame wins) -> batched inference

In one process every reader thread shares one interpreter lock with inference and analysis. Here
each reader process runs the same `StreamReader`s (reconnect, pacing, load shedding) for the
cameras rendezvous hashing gives it, and hands each sampled frame, already scaled to the model's
input box, to the daemon through its camera's fixed shared-memory slot: newest frame wins, memory
is one frame per camera, and a frame replaced before the daemon took it is dropped and counted,
as on the FrameBoard. The daemon moves a slot's frame onto the board only when the board wants
one (empty, or its frame stale), so a reader still skips decoding frames nobody will analyse and
its load shedder still sees inference falling behind.

A reader process that dies (SIGKILL, out of memory) is started again with its cameras; the other
processes and every camera's analysis and open cases are untouched. Counters the readers keep
(decoded, sampled, dropped, decode errors, reconnects) and each camera's state travel back twice a
second and feed the daemon's metrics, /readyz and the console.

Frames from a reader process carry no full-resolution picture: evidence is drawn at the model's
input resolution, and cameras with zone crops (which cut the full picture) keep in-process reader
threads. A substream camera (`detect_url`) is split by stream: its substream, decoded in full, is
read in a reader process; its main stream, keyframes only, by a thread in the daemon, where
evidence is drawn, so its cases' pictures are the main stream's at full resolution. The daemon
places each substream frame in the main stream's pixels as it moves it onto the board.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.shared_memory import SharedMemory
from typing import TYPE_CHECKING, Any

import numpy as np

from ..infra.loop import Worker
from ..infra.metrics import Metrics
from ..infra.shard import owner
from ..logs import JsonFormatter
from ..logs import configure as configure_logging
from ..pipeline.config import Camera
from ..pipeline.frames import Frame
from .handoff import FrameBoard, LiveFrame
from .mainstream import LiveMainStream, MainStreamMapper
from .reader import CameraState, StreamReader

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue

log = logging.getLogger(__name__)

HEADER = np.dtype(
    [
        ("written", "<u8"),
        ("done", "<u8"),
        ("taken", "<u8"),
        ("seq", "<i8"),
        ("decoded_index", "<i8"),
        ("pts_s", "<f8"),
        ("arrived", "<f8"),
        ("keyframe", "<u8"),
        ("h", "<u8"),
        ("w", "<u8"),
        ("src_w", "<u8"),
        ("src_h", "<u8"),
        ("busy_until", "<f8"),
    ]
)
# The reader counters that travel from a reader process to the daemon's metrics.
FORWARDED = ("frames_decoded", "frames_sampled", "frames_dropped", "decode_errors", "reconnects")
STATUS_EVERY_S = 0.5


class FrameSlot:
    """One camera's newest frame in shared memory. Its reader process writes it; the daemon reads
    it. A sequence lock instead of a cross-process mutex: the writer bumps `written`, writes, then
    sets `done`; a copy taken while `written` moved on is retried. `taken` (written by the daemon
    alone) is the last `done` it consumed, so "a frame waits" is `done != taken`. `busy_until`
    (the daemon's too) says until when the board still holds a recent frame of the camera: the
    slot and the board together are one frame deep, as a reader thread's board slot is."""

    def __init__(self, name: str | None, capacity: int, *, create: bool):
        self.capacity = capacity
        self.shm = SharedMemory(name=name, create=create, size=HEADER.itemsize + capacity)
        self.name = self.shm.name
        self.header = np.ndarray((1,), HEADER, self.shm.buf, 0)
        self.pixels = np.ndarray((capacity,), np.uint8, self.shm.buf, HEADER.itemsize)
        if create:
            self.header[0] = 0

    def _get(self, key: str):
        return self.header[key][0]

    def waiting(self) -> bool:
        return bool(self._get("done") != self._get("taken"))

    def age(self, now: float) -> float:
        return now - float(self._get("arrived"))

    def busy_until(self) -> float:
        return float(self._get("busy_until"))

    def mark_busy(self, until: float) -> None:
        self.header["busy_until"][0] = until

    def write(self, frame: Frame, arrived: float) -> bool:
        """Store the frame; True when it replaced one the daemon had not taken."""
        image = np.ascontiguousarray(frame.image)
        if image.nbytes > self.capacity:
            raise ValueError(f"frame {image.shape} larger than its slot ({self.capacity} bytes)")
        replaced = self.waiting()
        n = self._get("written") + 1
        h = self.header
        h["written"][0] = n
        self.pixels[: image.nbytes] = image.reshape(-1)
        h["seq"][0], h["decoded_index"][0], h["pts_s"][0] = frame.seq, frame.decoded_index, frame.pts_s
        h["arrived"][0], h["keyframe"][0] = arrived, int(frame.keyframe)
        h["h"][0], h["w"][0] = image.shape[0], image.shape[1]
        h["src_w"][0], h["src_h"][0] = frame.width, frame.height
        h["done"][0] = n
        return replaced

    def take(self) -> tuple[Frame, float] | None:
        """The waiting frame (copied out) and when its reader had it; None when none waits."""
        for _ in range(5):
            done = self._get("done")
            if done == self._get("taken"):
                return None
            rec = self.header[0].copy()
            hh, ww = int(rec["h"]), int(rec["w"])
            image = self.pixels[: hh * ww * 3].copy().reshape(hh, ww, 3)
            if self._get("written") != done:
                continue  # the writer moved on while we copied: read the newer frame
            self.header["taken"][0] = done
            src = (int(rec["src_w"]), int(rec["src_h"]))
            frame = Frame(
                seq=int(rec["seq"]),
                decoded_index=int(rec["decoded_index"]),
                pts_s=float(rec["pts_s"]),
                image=image,
                keyframe=bool(rec["keyframe"]),
                source_size=None if src == (ww, hh) else src,
            )
            return frame, float(rec["arrived"])
        return None  # a writer faster than five copies: the next round takes it

    def close(self, unlink: bool = False) -> None:
        del self.header, self.pixels
        self.shm.close()
        if unlink:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


class SlotHandoff:
    """The hand-off a StreamReader in a reader process sees: its camera's FrameSlot."""

    def __init__(self, metrics: Metrics, posted):
        self.slots: dict[str, FrameSlot] = {}
        # Each camera's current reader: a reader a reload replaced, still ending a network read,
        # must not write into the slot its successor now fills (the daemon reads it as the new one's).
        self.generations: dict[str, int] = {}
        self.metrics = metrics
        self.posted = posted

    def add(self, camera_id: str) -> None:  # slots are attached by the process loop
        pass

    def remove(self, camera_id: str) -> None:
        pass

    def attach(self, camera_id: str, slot: FrameSlot, generation: int) -> None:
        """The camera's slot, for the reader of this generation alone."""
        self.slots[camera_id], self.generations[camera_id] = slot, generation

    def detach(self, camera_id: str) -> FrameSlot | None:
        self.generations.pop(camera_id, None)
        return self.slots.pop(camera_id, None)

    def put(self, lf: LiveFrame) -> bool:
        slot = self.slots.get(lf.camera_id)
        if slot is None or self.generations.get(lf.camera_id) != lf.generation:
            return False
        replaced = slot.write(lf.frame, lf.arrived)
        if replaced:
            self.metrics.frames_dropped.labels(lf.camera_id).inc()
        self.posted.release()
        return replaced

    def wants(self, camera_id: str, fresh_s: float) -> bool:
        """No recent frame of the camera waits, in its slot or on the daemon's board."""
        slot = self.slots.get(camera_id)
        if slot is None:
            return False
        now = time.monotonic()
        return (not slot.waiting() or slot.age(now) > fresh_s) and now >= slot.busy_until()


def _log_settings() -> tuple[int, str]:
    """The daemon's log level and format, for its reader processes to log alike."""
    root = logging.getLogger()
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    return root.getEffectiveLevel(), "json" if json_lines else "text"


def _reader_process(index: int, commands, status, posted, fit, epoch, shed_load: bool, logs: tuple[int, str]) -> None:
    """A reader process: StreamReader threads for the cameras the daemon sends, until told to
    stop or the daemon is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon owns shutdown: it sends "stop"
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging(*logs)
    parent = os.getppid()
    metrics = Metrics()
    handoff = SlotHandoff(metrics, posted)
    readers: dict[str, StreamReader] = {}
    last_status = 0.0
    running = True
    while running and os.getppid() == parent:
        try:
            cmd = commands.get(timeout=STATUS_EVERY_S / 2)
        except queue.Empty:
            cmd = None
        if cmd is not None:
            op = cmd[0]
            if op == "add":
                _, camera, generation, slot_name, capacity = cmd
                handoff.attach(camera.id, FrameSlot(slot_name, capacity, create=False), generation)
                reader = StreamReader(
                    camera,
                    handoff,
                    metrics,
                    generation=generation,
                    epoch=epoch,
                    fit=fit,
                    crops=None,
                    shed_load=shed_load,
                    read_main=False,  # the daemon reads a substream camera's main stream
                )
                readers[camera.id] = reader
                reader.start()
            elif op == "remove":
                removed = readers.pop(cmd[1], None)
                if removed:
                    removed.stop()
                    removed.join(timeout=2.0)
                slot = handoff.detach(cmd[1])
                if slot:
                    slot.close()
                metrics.forget_camera(cmd[1])  # a camera added again counts from zero, as the daemon expects
            elif op == "stop":
                running = False
        now = time.monotonic()
        if now - last_status >= STATUS_EVERY_S:
            last_status = now
            status.put((index, os.getpid(), {cam: _camera_status(r, metrics) for cam, r in readers.items()}))
    for reader in readers.values():
        reader.stop()
    for reader in readers.values():
        reader.join(timeout=2.0)
    for slot in handoff.slots.values():
        slot.close()


def _camera_status(reader: StreamReader, metrics: Metrics) -> dict:
    get = metrics.registry.get_sample_value
    return {
        "generation": reader.generation,
        "state": reader.state.value,
        "reason": reader.reason,
        "decode_mode": reader.decode_mode,
        "last_frame_at": reader.last_frame_at,
        "alive": reader.alive,
        "counters": {name: get(f"streetscan_{name}_total", {"camera": reader.camera_id}) or 0.0 for name in FORWARDED},
    }


class RemoteReader:
    """The daemon's handle on a camera read in a reader process; quacks like a StreamReader for
    the runner, the probes and the console."""

    def __init__(self, pool: ReaderPool, camera: Camera, generation: int):
        self.pool, self.camera, self.camera_id, self.generation = pool, camera, camera.id, generation
        self.state, self.reason = CameraState.CONNECTING, "starting in a reader process"
        self.decode_mode = "full"
        self.last_frame_at: float | None = None
        self.heartbeat = time.monotonic()
        self.thread_alive = True  # its StreamReader thread in the process, as last reported
        # A substream camera's main stream is read here, where its evidence is drawn.
        self.main_stream = LiveMainStream(camera) if camera.detect_url else None
        self.mapper = (
            MainStreamMapper(camera.id, self.main_stream, self._evidence_from_substream)
            if self.main_stream is not None
            else None
        )

    def start(self) -> None:
        if self.main_stream is not None:
            self.main_stream.start()
        self.pool.add(self)

    def stop(self) -> None:
        self.pool.remove(self.camera_id)
        if self.main_stream is not None:
            self.main_stream.stop()

    def join(self, timeout: float | None = None) -> bool:
        # The process stops the substream's thread; the main stream's lives here.
        if self.main_stream is not None:
            return self.main_stream.join(timeout)
        return True

    def report(self, state: CameraState, reason: str) -> None:
        """The substream reader's state, as its process reported it."""
        if state != CameraState.LIVE and self.mapper is not None:
            self.mapper.reset()  # a reconnected substream may come in another format: place it again
        self.state, self.reason = state, reason

    def main_stream_seen(self) -> bool:
        """Whether the substream may be dialled: zones are drawn in the main stream's pixels, so a
        substream camera waits for its main stream's size (as a reader thread does); meanwhile its
        state says so."""
        main = self.main_stream
        if main is None or main.size is not None:
            return True
        self.state = CameraState.BACKOFF if main.state == CameraState.BACKOFF else CameraState.CONNECTING
        self.reason = f"main stream not seen yet ({main.reason}); zones are in its pixels"
        return False

    def place(self, frame: Frame, arrived: float) -> Frame:
        """The frame as analysis takes it: a substream camera's in its main stream's pixels (known:
        the substream is dialled only once it is)."""
        return frame if self.mapper is None else self.mapper.map(frame, arrived)

    def _evidence_from_substream(self) -> None:
        self.pool.metrics.evidence_from_substream.labels(self.camera_id).inc()

    @property
    def alive(self) -> bool:
        main_alive = self.main_stream is None or self.main_stream.alive
        if self.pool.waiting(self.camera_id):
            return main_alive  # (no process reads it yet)
        return main_alive and self.thread_alive and self.pool.process_alive(self.camera_id)


@dataclass
class _Process:
    index: int
    commands: Queue[Any]
    process: BaseProcess | None = None
    cameras: dict[str, RemoteReader] = field(default_factory=dict)
    starts: int = 0


class ReaderPool(Worker):
    """The reader processes and the daemon-side loop that collects their frames, forwards their
    counters and states, and restarts a process that died."""

    def __init__(
        self,
        processes: int,
        board: FrameBoard,
        metrics: Metrics,
        *,
        fit: tuple[int, int],
        epoch: tuple[float, float],
        shed_load: bool = True,
    ):
        if processes < 1:
            raise ValueError("a reader pool needs at least one process")
        self.board, self.metrics, self.fit, self.epoch, self.shed_load = board, metrics, fit, epoch, shed_load
        self.capacity = fit[0] * fit[1] * 3  # the decoder scales every picture into the model's box
        self._ctx = mp.get_context("spawn")  # fork would copy the daemon's threads' locks mid-use
        self.posted = self._ctx.Semaphore(0)
        self.status = self._ctx.Queue()
        self._lock = threading.Lock()
        self._procs = [_Process(i, self._ctx.Queue()) for i in range(processes)]
        self._slots: dict[str, FrameSlot] = {}
        self._seen: dict[str, dict[str, float]] = {}  # counters last forwarded, per camera
        self._waiting: dict[str, RemoteReader] = {}  # substream cameras whose main stream is not seen yet
        self.restarts = 0
        super().__init__("reader-pool")

    # -- cameras ------------------------------------------------------------------------------
    def reader(self, camera: Camera, generation: int) -> RemoteReader:
        return RemoteReader(self, camera, generation)

    def process_of(self, camera_id: str) -> _Process:
        # Salted apart from the shard hash: unsalted, a shard's cameras (all the argmax of one
        # index) would all land in the process of that same index.
        return self._procs[owner(f"reader-process\x00{camera_id}", len(self._procs))]

    def add(self, remote: RemoteReader) -> None:
        with self._lock:
            if not remote.main_stream_seen():
                self._waiting[remote.camera_id] = remote  # sent to its process once it is (_run)
                return
            self._add_locked(remote)

    def _add_waiting(self) -> None:
        with self._lock:
            for cam, remote in list(self._waiting.items()):
                if remote.main_stream_seen():
                    del self._waiting[cam]
                    self._add_locked(remote)

    def _add_locked(self, remote: RemoteReader) -> None:
        self._slots[remote.camera_id] = FrameSlot(None, self.capacity, create=True)
        self._seen[remote.camera_id] = {}
        proc = self.process_of(remote.camera_id)
        proc.cameras[remote.camera_id] = remote
        if proc.process is None:
            self._spawn(proc)
        else:
            proc.commands.put(self._add_command(remote))

    def remove(self, camera_id: str) -> None:
        with self._lock:
            if self._waiting.pop(camera_id, None) is not None:
                return
            proc = self.process_of(camera_id)
            if proc.cameras.pop(camera_id, None) is None:
                return
            proc.commands.put(("remove", camera_id))
            slot = self._slots.pop(camera_id, None)
            self._seen.pop(camera_id, None)
            if slot:
                slot.close(unlink=True)  # the process's own mapping stays valid until it closes it

    def waiting(self, camera_id: str) -> bool:
        """Not sent to a process yet: its main stream has not been seen."""
        return camera_id in self._waiting

    def process_alive(self, camera_id: str) -> bool:
        proc = self.process_of(camera_id)
        return proc.process is not None and proc.process.is_alive()

    def describe(self) -> dict[str, dict]:
        """Per process: pid, alive, starts, its cameras (for /readyz)."""
        with self._lock:
            return {
                str(p.index): {
                    "pid": p.process.pid if p.process is not None else None,
                    "alive": p.process is not None and p.process.is_alive(),
                    "starts": p.starts,
                    "cameras": sorted(p.cameras),
                }
                for p in self._procs
            }

    def _spawn(self, proc: _Process) -> None:
        proc.commands = self._ctx.Queue()  # a killed process may have died holding the old queue's lock
        proc.process = self._ctx.Process(
            target=_reader_process,
            name=f"streetscan-reader-{proc.index}",
            daemon=True,
            args=(
                proc.index,
                proc.commands,
                self.status,
                self.posted,
                self.fit,
                self.epoch,
                self.shed_load,
                _log_settings(),
            ),
        )
        proc.process.start()
        proc.starts += 1
        for remote in proc.cameras.values():
            proc.commands.put(self._add_command(remote))

    def _add_command(self, remote: RemoteReader) -> tuple:
        return ("add", remote.camera, remote.generation, self._slots[remote.camera_id].name, self.capacity)

    # -- the daemon-side loop -----------------------------------------------------------------
    def _run(self) -> None:
        last_check = 0.0
        while not self._stop.is_set():
            self.beat()
            self.posted.acquire(timeout=0.02)  # a frame was posted, or look again anyway
            while self.posted.acquire(block=False):
                pass
            self._collect()
            self._drain_status()
            now = time.monotonic()
            if now - last_check > 0.5:
                last_check = now
                self._restart_dead()
                self._add_waiting()

    def _collect(self) -> None:
        # Under the lock: `remove` closes a slot's mapping, which must not happen mid-copy.
        with self._lock:
            for cam, slot in self._slots.items():
                remote = self.process_of(cam).cameras.get(cam)
                if remote is None:
                    continue
                fresh_s = 2.0 / remote.camera.analysis_fps
                if slot.waiting() and self.board.wants(cam, fresh_s):
                    taken = slot.take()
                    if taken is not None:
                        frame, arrived = taken
                        self.board.put(LiveFrame(cam, remote.generation, remote.place(frame, arrived), arrived))
                waiting = self.board.arrived(cam)
                slot.mark_busy(0.0 if waiting is None else waiting + fresh_s)

    def _drain_status(self) -> None:
        while True:
            try:
                index, pid, cameras = self.status.get_nowait()
            except queue.Empty:
                return
            self._apply_status(index, pid, cameras)

    def _apply_status(self, index: int, pid: int, cameras: dict[str, dict]) -> None:
        """One report of a reader process: its cameras' states, and their counters forwarded."""
        with self._lock:
            proc = self._procs[index]
            if proc.process is None or proc.process.pid != pid:
                return  # from a process since replaced
            for cam, st in cameras.items():
                remote = proc.cameras.get(cam)
                if remote is None or st["generation"] != remote.generation:
                    # A camera reloaded (removed, added again) while its process reported the
                    # reader it replaced: those totals were forwarded already, that state is gone.
                    # (What that reader counted after its last report read before the reload, at
                    # most STATUS_EVERY_S of it, is not forwarded: under-counted, never twice.)
                    continue
                remote.report(CameraState(st["state"]), st["reason"])
                remote.decode_mode, remote.heartbeat = st["decode_mode"], time.monotonic()
                remote.thread_alive = st["alive"]
                if st["last_frame_at"] is not None:
                    remote.last_frame_at = st["last_frame_at"]
                self._forward(cam, st["counters"])

    def _forward(self, camera_id: str, counters: dict[str, float]) -> None:
        seen = self._seen.setdefault(camera_id, {})
        for name, total in counters.items():
            delta = total - seen.get(name, 0.0)
            if delta < 0:  # a restarted process counts from zero again
                delta = total
            if delta:
                getattr(self.metrics, name).labels(camera_id).inc(delta)
            seen[name] = total

    def _restart_dead(self) -> None:
        with self._lock:
            for proc in self._procs:
                if proc.process is None or proc.process.is_alive() or self._stop.is_set():
                    continue
                code = proc.process.exitcode
                if not proc.cameras:
                    proc.process = None
                    continue
                log.error(
                    "reader process %d (pid %s) died (exit %s); starting it again with its %d camera(s)",
                    proc.index,
                    proc.process.pid,
                    code,
                    len(proc.cameras),
                )
                for remote in proc.cameras.values():
                    remote.report(CameraState.CONNECTING, f"reader process restarted (exit {code})")
                    self._seen[remote.camera_id] = {}
                self.restarts += 1
                self._spawn(proc)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the loop and every process; free the slots."""
        self.stop()
        self.join(timeout=2.0)
        with self._lock:
            procs = [p for p in self._procs if p.process is not None]
            for p in procs:
                p.commands.put(("stop",))
            deadline = time.monotonic() + timeout
            for p in procs:
                assert p.process is not None  # kept above only if it has one
                p.process.join(max(0.1, deadline - time.monotonic()))
                if p.process.is_alive():
                    p.process.kill()
                    p.process.join(1.0)
            for slot in self._slots.values():
                slot.close(unlink=True)
            self._slots.clear()
