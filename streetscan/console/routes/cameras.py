"""The cameras page, their pictures, and the zone editor that writes streams.yaml."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

from ...pipeline.catalogue import CATALOGUE, Grade, ZoneKind
from ...pipeline.config import ConfigError
from ..fleet import StaleEdit, snapshot_path
from ..i18n import LANGS, translator
from ..users import User
from ..web import check_csrf, console_of, current_user, needs, render

router = APIRouter()


def known_camera(request: Request, camera_id: str):
    cam = next((c for c in console_of(request).fleet.cameras() if c.id == camera_id), None)
    if cam is None:
        raise HTTPException(404, "no such camera")
    return cam


def picture_size(request: Request, camera_id: str) -> tuple[int, int] | None:
    path = snapshot_path(console_of(request).fleet.out_dir, camera_id)
    if path is None:
        return None
    from PIL import Image  # reads the JPEG header only

    with Image.open(path) as im:
        return im.size


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request, user: User = Depends(current_user)):
    try:
        cams, error = console_of(request).fleet.cameras(), None
    except ConfigError as exc:
        cams, error = [], str(exc)
    return render(
        request,
        "cameras.html",
        user,
        cameras=cams,
        error=error,
        sizes={c.id: picture_size(request, c.id) for c in cams},
        editable=console_of(request).fleet.streams is not None,
    )


@router.get("/cameras/{camera_id}/snapshot.jpg")
def camera_snapshot(request: Request, camera_id: str, user: User = Depends(current_user)):
    known_camera(request, camera_id)
    path = snapshot_path(console_of(request).fleet.out_dir, camera_id)
    if path is None:
        raise HTTPException(404, "no picture from this camera yet")
    return FileResponse(path, headers={"Cache-Control": "no-store"})


@router.get("/cameras/{camera_id}/zones", response_class=HTMLResponse)
def zone_editor(request: Request, camera_id: str, user: User = Depends(needs("admin"))):
    streams = console_of(request).fleet.streams
    if streams is None:
        raise HTTPException(404, "this console was started without a streams.yaml to edit")
    cam = known_camera(request, camera_id)
    zones = [z.model_dump(mode="json", exclude_none=True) for z in cam.zones]
    for z in zones:  # the editor shows schedules as typed: "07:00-18:00"
        if "schedule" in z:
            z["schedule"]["active"] = [
                f"{r['start'][:5]}-{'24:00' if r['end'].startswith('23:59:59') else r['end'][:5]}"
                for r in z["schedule"]["active"]
            ]
    return render(
        request,
        "zones.html",
        user,
        camera=cam,
        zones=zones,
        size=picture_size(request, camera_id),
        version=streams.version(),
        kinds=[k.value for k in ZoneKind],
        grades=[g.value for g in Grade],
        classes=list(CATALOGUE),
        path=str(streams.path),
    )


@router.post("/api/cameras/{camera_id}/zones")
async def save_zones(request: Request, camera_id: str, user: User = Depends(needs("admin"))):
    check_csrf(request, request.headers.get("x-csrf-token", ""))
    streams = console_of(request).fleet.streams
    if streams is None:
        raise HTTPException(404, "this console was started without a streams.yaml to edit")
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"errors": ["the request body is not JSON"]}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"errors": ["expected {version, zones}"]}, status_code=400)
    try:
        backup = streams.replace_zones(camera_id, body.get("zones"), body.get("version"))
    except StaleEdit as exc:
        return JSONResponse({"errors": [str(exc)]}, status_code=409)
    except ConfigError as exc:
        return JSONResponse({"errors": exc.problems, "file": exc.path}, status_code=422)
    message = translator(request.session.get("lang", LANGS[0]))(console_of(request).fleet.applied())
    return {"message": message, "backup": backup.name, "version": streams.version()}
