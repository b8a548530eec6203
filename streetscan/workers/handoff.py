"""Hand-off from the readers to batched inference, in two policies behind one interface:

FrameBoard (live, newest frame wins). Each camera has one slot. A reader overwrites its slot and
never waits; a frame overwritten before inference took it is dropped and counted. A reader does not
even decode a frame while its slot holds a recent one (`wants`): that frame is skipped, and counted
as dropped too. Inference gathers one frame per ready camera, round-robin from where the last batch
stopped, so no camera starves the others. Memory is bounded by one frame per camera whatever the
load, and a frame's age at analysis by the reader's freshness bound plus one batch.

FrameQueue (recordings, nothing dropped). One bounded queue in arrival order; a reader blocks
while it is full, so a replay analyses every sampled frame at the speed inference allows and
holds at most `capacity` decoded frames.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..pipeline.frames import Frame


@dataclass(frozen=True, slots=True)
class LiveFrame:
    camera_id: str
    generation: int  # the camera's (re)start count: results for a replaced camera are discarded
    frame: Frame
    arrived: float  # time.monotonic() when the reader had it
    crops: tuple = ()  # zone boxes to detect again at native resolution (pipeline/crops.py)


class ReaderHandoff(Protocol):
    """The part of a hand-off a reader uses (a reader process's SlotHandoff has no more)."""

    def put(self, lf: LiveFrame) -> bool: ...

    def wants(self, camera_id: str, fresh_s: float) -> bool: ...


class Handoff(Protocol):
    def add(self, camera_id: str) -> None: ...

    def remove(self, camera_id: str) -> None: ...

    def put(self, lf: LiveFrame) -> bool: ...

    def wants(self, camera_id: str, fresh_s: float) -> bool: ...

    def pending(self) -> int: ...

    def gather(self, max_batch: int, max_wait_s: float) -> list[LiveFrame]: ...

    def wake(self) -> None: ...


class _Stoppable:
    """The lock both hand-offs wait on, and the wake-up that ends inference's waits for good."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closing = False

    def wake(self) -> None:
        """Inference is stopping: a `gather` waits no more, now or later (no lost wake-up)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()


class FrameBoard(_Stoppable):
    def __init__(self, on_drop: Callable[[str], None] | None = None):
        super().__init__()
        self._slots: dict[str, LiveFrame | None] = {}
        self._order: list[str] = []
        self._next = 0
        self._on_drop = on_drop

    def add(self, camera_id: str) -> None:
        with self._cond:
            if camera_id not in self._slots:
                self._slots[camera_id] = None
                self._order.append(camera_id)

    def remove(self, camera_id: str) -> None:
        with self._cond:
            if camera_id in self._slots:
                del self._slots[camera_id]
                self._order.remove(camera_id)

    def put(self, lf: LiveFrame) -> bool:
        """Offer a camera's newest frame; True when it replaced one inference had not taken."""
        with self._cond:
            if lf.camera_id not in self._slots:
                return False  # the camera was removed while its reader was finishing
            replaced = self._slots[lf.camera_id] is not None
            self._slots[lf.camera_id] = lf
            self._cond.notify()
        if replaced and self._on_drop:
            self._on_drop(lf.camera_id)
        return replaced

    def wants(self, camera_id: str, fresh_s: float) -> bool:
        """Whether a new frame from the camera is worth making: no frame of it is waiting, or the
        one waiting is older than `fresh_s`. Under overload a reader then skips decoding frames
        that would only replace a recent one, and the cores go to inference instead; a waiting
        frame never gets older than `fresh_s` plus one batch before it is replaced."""
        with self._cond:
            lf = self._slots.get(camera_id)
            return lf is None or time.monotonic() - lf.arrived > fresh_s

    def pending(self) -> int:
        with self._cond:
            return sum(1 for v in self._slots.values() if v is not None)

    def arrived(self, camera_id: str) -> float | None:
        """When the camera's waiting frame reached its reader; None when none waits."""
        with self._cond:
            lf = self._slots.get(camera_id)
            return None if lf is None else lf.arrived

    def _take_round_robin(self, batch: list[LiveFrame], limit: int) -> None:
        n = len(self._order)
        for i in range(n):
            if len(batch) >= limit:
                return
            idx = (self._next + i) % n
            cam = self._order[idx]
            lf = self._slots[cam]
            if lf is not None and all(b.camera_id != cam for b in batch):
                batch.append(lf)
                self._slots[cam] = None
                self._next = (idx + 1) % n

    def gather(self, max_batch: int, max_wait_s: float, idle_timeout_s: float = 0.25) -> list[LiveFrame]:
        """Up to `max_batch` frames, one per camera. Waits up to `idle_timeout_s` for a first frame,
        then up to `max_wait_s` more for the batch to fill (not longer than the cameras can fill it)."""
        with self._cond:
            if not self._closing and not any(v is not None for v in self._slots.values()):
                self._cond.wait(idle_timeout_s)
            batch: list[LiveFrame] = []
            self._take_round_robin(batch, max_batch)
            if not batch:
                return batch
            limit = min(max_batch, len(self._order))
            deadline = time.monotonic() + max_wait_s
            while len(batch) < limit and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                self._take_round_robin(batch, limit)
            return batch


class FrameQueue(_Stoppable):
    """Every frame, in order, up to `capacity` waiting; `put` blocks while full (see module doc)."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = max(1, capacity)
        self._frames: deque[LiveFrame] = deque()
        self._cameras: set[str] = set()

    def add(self, camera_id: str) -> None:
        with self._cond:
            self._cameras.add(camera_id)

    def remove(self, camera_id: str) -> None:
        """Forget the camera and its waiting frames; a reader blocked in `put` for it returns."""
        with self._cond:
            self._cameras.discard(camera_id)
            self._frames = deque(lf for lf in self._frames if lf.camera_id != camera_id)
            self._cond.notify_all()

    def put(self, lf: LiveFrame) -> bool:
        """Wait for room, then queue the frame. Never replaces one: always False (nothing dropped)."""
        with self._cond:
            while lf.camera_id in self._cameras and len(self._frames) >= self.capacity:
                self._cond.wait()
            if lf.camera_id in self._cameras:
                self._frames.append(lf)
                self._cond.notify_all()
        return False

    def wants(self, camera_id: str, fresh_s: float) -> bool:
        return True  # every frame of a recording is analysed

    def pending(self) -> int:
        with self._cond:
            return len(self._frames)

    def gather(self, max_batch: int, max_wait_s: float, idle_timeout_s: float = 0.25) -> list[LiveFrame]:
        """Up to `max_batch` frames in arrival order: waits up to `idle_timeout_s` for a first one,
        then up to `max_wait_s` for the batch to fill."""
        with self._cond:
            if not self._frames and not self._closing:
                self._cond.wait(idle_timeout_s)
            deadline = time.monotonic() + max_wait_s
            while self._frames and len(self._frames) < max_batch and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    break
            batch = [self._frames.popleft() for _ in range(min(max_batch, len(self._frames)))]
            if batch:
                self._cond.notify_all()  # room for a blocked reader
            return batch
