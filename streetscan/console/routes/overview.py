"""The overview page and its charts."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response

from ...pipeline.config import ConfigError
from .. import charts
from ..i18n import LANGS, translator
from ..users import User
from ..web import console_of, current_user, render

router = APIRouter()
WORST_UNITS = 5  # the overview names the units furthest behind; the board lists them all


@router.get("/overview", response_class=HTMLResponse)
def overview(request: Request, user: User = Depends(current_user)):
    try:
        cams = console_of(request).fleet.cameras()
    except ConfigError:
        cams = []
    return render(
        request,
        "overview.html",
        user,
        total=console_of(request).index.count(),
        open_now=console_of(request).index.open_count(),
        down=[c for c in cams if c.down],
        shedding=[c for c in cams if c.shedding],
        cameras=len(cams),
        worst_units=[u for u in console_of(request).index.per_unit() if u.on_time_rate is not None][:WORST_UNITS],
    )


@router.get("/overview/{chart}.svg")
def overview_chart(request: Request, chart: str, user: User = Depends(current_user)):
    lang = request.session.get("lang", LANGS[0])
    t = translator(lang)
    draw = {
        "per-day": lambda: charts.cases_per_day(console_of(request).index.per_day(), t),
        "per-camera": lambda: charts.cases_per_camera(console_of(request).index.per_camera(), t),
    }.get(chart)
    if draw is None:
        raise HTTPException(404, "no such chart")
    stamp = console_of(request).index.stamp()
    key = f"{chart}:{lang}"  # a chart speaks its page's language
    cached = console_of(request).chart_cache.get(key)
    if cached is None or cached[0] != stamp:  # redrawn only when a case changed
        cached = console_of(request).chart_cache[key] = (stamp, draw())
    return Response(cached[1], media_type="image/svg+xml", headers={"Cache-Control": "no-store"})
