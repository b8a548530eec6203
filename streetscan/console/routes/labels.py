"""Labelling (issue #33): the queue of frames worth a label, the labelling view, its JSON save,
and taking a camera's current picture into the queue."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from ...dataset.labels import BadLabel, StaleLabel
from ...pipeline.catalogue import CATALOGUE
from ..fleet import snapshot_path
from ..users import User
from ..web import check_csrf, console_of, current_user, needs, render
from .cameras import known_camera

router = APIRouter()


def _store(request: Request):
    store = console_of(request).labels
    if store is None:
        raise HTTPException(404, "this console keeps no labels")
    return store


@router.get("/label", response_class=HTMLResponse)
def label_queue(request: Request, user: User = Depends(current_user)):
    store = _store(request)
    return render(
        request, "label_queue.html", user, queue=store.queue(), labelled=len(store.labels()),
        counts=sorted(store.object_counts().items(), key=lambda kv: (-kv[1], kv[0])),
    )  # fmt: skip


@router.post("/label/refill")
def refill(request: Request, csrf: str = Form(""), user: User = Depends(needs("operator"))):
    check_csrf(request, csrf)
    _store(request).offer_cases(console_of(request).index.label_candidates())
    return RedirectResponse("/label", status_code=303)


@router.post("/cameras/{camera_id}/label")
def label_snapshot(request: Request, camera_id: str, csrf: str = Form(""), user: User = Depends(needs("operator"))):
    """The camera's current picture, into the queue, and open it."""
    check_csrf(request, csrf)
    cam = known_camera(request, camera_id)
    path = snapshot_path(console_of(request).fleet.out_dir, cam.id)
    if path is None:
        raise HTTPException(404, "no picture from this camera yet")
    from datetime import datetime

    taken = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
    frame = _store(request).add_frame(
        f"snap-{cam.id}-{taken.strftime('%Y%m%dT%H%M%S')}", cam.id, taken.isoformat(), path, "snapshot"
    )
    if frame is None:
        raise HTTPException(404, "the camera's picture could not be read")
    return RedirectResponse(f"/label/{frame.frame_id}", status_code=303)


@router.get("/label/{frame_id}", response_class=HTMLResponse)
def label_view(request: Request, frame_id: str, user: User = Depends(needs("operator"))):
    store = _store(request)
    frame = store.frame(frame_id)
    if frame is None:
        raise HTTPException(404, "no such frame")
    label = store.label(frame_id)
    queue = [f.frame_id for f in store.queue()]
    order = [f.frame_id for f in store.frames()]
    later = [f for f in order[order.index(frame_id) + 1 :] if f in queue] or [f for f in queue if f != frame_id]
    earlier = order[: order.index(frame_id)]
    hinted = CATALOGUE[frame.hint].objects if frame.hint in CATALOGUE else ()
    objects = [*hinted, *(o for o in store.vocabulary if o not in hinted)]
    return render(
        request, "label.html", user, frame=frame, history=store.history(frame_id), objects=objects,
        data={
            "frame": frame.frame_id, "width": frame.width, "height": frame.height, "objects": objects,
            "label": label.as_dict() if label else None, "next": later[0] if later else None,
            "previous": earlier[-1] if earlier else None, "csrf": "",
        },
    )  # fmt: skip


@router.get("/label/{frame_id}/image.jpg")
def label_image(request: Request, frame_id: str, user: User = Depends(current_user)):
    store = _store(request)
    frame = store.frame(frame_id)
    if frame is None:
        raise HTTPException(404, "no such frame")
    return FileResponse(store.out_dir / frame.image, headers={"Cache-Control": "no-store"})


@router.post("/api/label/{frame_id}")
async def save_label(request: Request, frame_id: str, user: User = Depends(needs("operator"))):
    check_csrf(request, request.headers.get("x-csrf-token", ""))
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"errors": ["the request body is not JSON"]}, status_code=400)
    if not isinstance(body, dict) or not isinstance(body.get("version"), int):
        return JSONResponse({"errors": ["expected {version, boxes, nothing, difficult}"]}, status_code=400)
    try:
        label = _store(request).save(
            frame_id, body.get("boxes", []), nothing=bool(body.get("nothing")), difficult=bool(body.get("difficult")),
            user=user.name, version=body["version"],
        )  # fmt: skip
    except KeyError:
        raise HTTPException(404, "no such frame") from None
    except StaleLabel as exc:
        return JSONResponse({"errors": [str(exc)], "current": exc.current.as_dict()}, status_code=409)
    except BadLabel as exc:
        return JSONResponse({"errors": [str(exc)]}, status_code=422)
    return label.as_dict()
