"""The verification desk: where requests to re-check a case (核查) come in, from the Redis command
stream, the HTTP endpoint or a replay's request file.

It answers at once what it can: `accepted` (the camera checks its next frames), `malformed`,
`unknown_case` (no such event within the retention period), `camera_down` (the camera is not
live, or not in this fleet). An accepted request ends as a new revision of the event, delivered
through the sinks like any other (`verified` / `still_present`), and as an `answered` status; a
camera that stops delivering frames meanwhile ends it as `camera_down` after `timeout_s`.
Every status change also goes to the `notify` callbacks (the Redis reply stream, a replay's
verifications.jsonl), so no request goes unanswered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..pipeline.events import Event
from ..pipeline.verify import FRAMES_TO_CHECK, BadRequest, VerificationRequest, ZoneCheck
from .runner import Runner

log = logging.getLogger(__name__)

STATUSES_KEPT = 10_000
# Status -> HTTP code for the endpoint (workers answer 202 while checking, 200 once answered).
HTTP_STATUS = {
    "accepted": 202,
    "answered": 200,
    "malformed": 400,
    "unknown_case": 404,
    "camera_down": 409,
    "other_shard": 421,
}


class VerificationDesk:
    def __init__(
        self, runner: Runner, camera_live: Callable[[str], tuple[bool, str]], *, timeout_s: float = 60.0, shard=None
    ):
        """`shard` (infra.shard.Shard): in a sharded fleet every shard sees every request; the
        one owning the request's camera answers it, the others leave it (`other_shard`, not
        recorded or sent on), and shard 0 answers requests that name no camera (malformed)."""
        self.runner = runner
        self.shard = shard
        self.camera_live = camera_live
        self.timeout_s = timeout_s
        self.notify: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, float]] = {}  # request -> (camera, deadline)
        self._status: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def watch(self, analysis) -> None:
        """Hear a camera's answers (called when the runner adds a camera)."""
        analysis.on_answer = self._answered

    def submit(self, raw: Any, requested: datetime | None = None) -> dict[str, Any]:
        requested = requested or datetime.now().astimezone()
        rid = raw.get("request_id") if isinstance(raw, dict) and isinstance(raw.get("request_id"), str) else None
        try:
            req = VerificationRequest.parse(raw, requested)
        except BadRequest as exc:
            return self._reply(rid, None, "malformed", str(exc))
        if self.shard is not None:
            if req.camera_id is None:
                if self.shard.index != 0:
                    return self._elsewhere(req, "shard 0 answers requests that name no camera")
                return self._reply(
                    req.request_id,
                    req.event_id,
                    "malformed",
                    f"camera_id: required, this fleet is split over {self.shard.count} shards",
                )
            if not self.shard.owns(req.camera_id):
                return self._elsewhere(
                    req,
                    f"camera {req.camera_id} is analysed by shard "
                    f"{self.shard.owner(req.camera_id)} of {self.shard.count}",
                )
        with self._lock:
            known = self._status.get(req.request_id)
        if known is not None and known["event_id"] == req.event_id:
            return known  # a request sent twice is one request
        event = self.runner.spool.known_event(req.event_id)
        if event is None:
            return self._reply(
                req.request_id,
                req.event_id,
                "unknown_case",
                "no event with this id here (never reported, or older than the retention period)",
            )
        cam_id = event.camera.id
        if req.camera_id is not None and req.camera_id != cam_id:
            return self._reply(
                req.request_id,
                req.event_id,
                "unknown_case",
                f"event {req.event_id} was reported by camera {cam_id}, not {req.camera_id}",
            )
        slot = self.runner.slot(cam_id)
        if slot is None:
            return self._reply(req.request_id, req.event_id, "camera_down", f"camera {cam_id} is not in this fleet")
        live, why = self.camera_live(cam_id)
        if not live:
            return self._reply(req.request_id, req.event_id, "camera_down", f"camera {cam_id}: {why}")
        zone_id = event.violation.zone_id
        if all(z.id != zone_id for z in slot.camera.zones):
            return self._reply(
                req.request_id,
                req.event_id,
                "unknown_case",
                f"zone {zone_id} is no longer configured on camera {cam_id}",
            )
        with self._lock:
            self._pending[req.request_id] = (cam_id, time.monotonic() + self.timeout_s)
        reply = self._reply(
            req.request_id,
            req.event_id,
            "accepted",
            f"camera {cam_id} checks zone {zone_id} on its next {FRAMES_TO_CHECK} frames",
        )
        slot.analysis.check(ZoneCheck(req, event))
        return reply

    @staticmethod
    def _elsewhere(req: VerificationRequest, detail: str) -> dict[str, Any]:
        """Another shard's request: answered by that shard, so not recorded or sent on here."""
        return {"request_id": req.request_id, "event_id": req.event_id, "status": "other_shard", "detail": detail}

    def refuse(self, raw: Any, status: str, detail: str) -> dict[str, Any]:
        """Answer a request that cannot be taken, for a reason found outside the desk."""
        rid = raw.get("request_id") if isinstance(raw, dict) else None
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        return self._reply(
            rid if isinstance(rid, str) else None, event_id if isinstance(event_id, str) else None, status, detail
        )

    def status(self, request_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._status.get(request_id)

    def expire(self, now: float | None = None) -> None:
        """End the checks whose camera delivered too few frames in time."""
        now = time.monotonic() if now is None else now
        with self._lock:
            late = [(rid, cam) for rid, (cam, deadline) in self._pending.items() if now > deadline]
            for rid, _ in late:
                del self._pending[rid]
        for rid, cam in late:
            slot = self.runner.slot(cam)
            if slot is not None:
                slot.analysis.cancel(rid)
            event_id = (self.status(rid) or {}).get("event_id")
            self._reply(
                rid,
                event_id,
                "camera_down",
                f"camera {cam} delivered too few frames within {self.timeout_s:g} s to check",
            )

    def _answered(self, zc: ZoneCheck, answer: Event) -> None:
        with self._lock:
            self._pending.pop(zc.request.request_id, None)
        self._reply(
            zc.request.request_id,
            answer.event_id,
            "answered",
            f"{answer.state}: {zc.present} of {zc.frames} frames showed it",
            state=answer.state,
            revision=answer.revision,
        )

    def _reply(
        self, request_id: str | None, event_id: str | None, status: str, detail: str, **extra: Any
    ) -> dict[str, Any]:
        reply = {"request_id": request_id, "event_id": event_id, "status": status, "detail": detail, **extra}
        if request_id is not None:
            with self._lock:
                self._status[request_id] = reply
                self._status.move_to_end(request_id)
                while len(self._status) > STATUSES_KEPT:
                    self._status.popitem(last=False)
        log.info("verification %s: %s (%s)", request_id, status, detail)
        for notify in self.notify:
            try:
                notify(reply)
            except Exception:  # a reply channel's outage must not lose the answer for the others
                log.exception("verification reply for %s not sent", request_id)
        return reply
