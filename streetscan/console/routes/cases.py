"""The case list, one case, reviews and mutes, the CSV and JSON views of the list."""

from __future__ import annotations

import json
from typing import cast

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...pipeline.events import State
from ..index import STATES, CaseFilter, cases_csv
from ..users import User
from ..web import MAX_PAGE, PAGE_SIZE, check_csrf, console_of, current_user, needs, render

router = APIRouter()


def case_filter(
    camera: str = "",
    scene: str = "",
    zone: str = "",
    state: str = "",
    since: str = "",
    until: str = "",
    muted: bool = False,
    unit: str = "",
) -> CaseFilter:
    if state and state not in STATES:
        raise HTTPException(422, f"state must be one of {', '.join(STATES)}")
    checked = cast("State | None", state or None)  # one of STATES, or none
    return CaseFilter(
        camera or None,
        scene or None,
        zone or None,
        checked,
        since or None,
        until or None,
        include_muted=muted,
        unit=unit or None,
    )


@router.get("/")
def root(user: User = Depends(current_user)):
    return RedirectResponse("/cases", status_code=303)


@router.get("/cases", response_class=HTMLResponse)
def case_list(
    request: Request, page: int = 1, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)
):
    page = min(max(1, page), MAX_PAGE)
    total = console_of(request).index.count(flt)
    rows = console_of(request).index.cases(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    query = {("muted" if k == "include_muted" else k): v for k, v in flt.__dict__.items() if v}
    return render(
        request,
        "cases.html",
        user,
        cases=rows,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        flt=flt,
        query=query,
        facets=console_of(request).index.facets(),
        states=STATES,
    )


@router.get("/cases.csv")
def case_csv(request: Request, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
    rows = console_of(request).index.cases(flt, limit=100_000)
    return Response(
        cases_csv(rows),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
    )


@router.get("/cases/{event_id}", response_class=HTMLResponse)
def case_page(request: Request, event_id: str, user: User = Depends(current_user)):
    case = console_of(request).index.case(event_id)
    if case is None:
        raise HTTPException(404, "no such case")
    ev = case.event
    muted = console_of(request).index.muted(*case.place)
    return render(
        request, "case.html", user, case=case, ev=ev, timeline=console_of(request).index.timeline(event_id), muted=muted
    )


@router.post("/cases/{event_id}/review")
def review(
    request: Request,
    event_id: str,
    verdict: str = Form(...),
    reason: str = Form(""),
    csrf: str = Form(""),
    user: User = Depends(needs("operator")),
):
    check_csrf(request, csrf)
    try:
        console_of(request).index.review(event_id, verdict, reason, user.name)
    except KeyError:
        raise HTTPException(404, "no such case") from None
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return RedirectResponse(f"/cases/{event_id}", status_code=303)


@router.post("/cases/{event_id}/mute")
def mute(
    request: Request,
    event_id: str,
    hours: float = Form(...),
    reason: str = Form(""),
    csrf: str = Form(""),
    user: User = Depends(needs("operator")),
):
    check_csrf(request, csrf)
    case = console_of(request).index.case(event_id)
    if case is None:
        raise HTTPException(404, "no such case")
    if not 0 < hours <= 24 * 30:
        raise HTTPException(422, "hours: more than 0, at most 720")
    console_of(request).index.mute(*case.place, hours, reason, user.name)
    return RedirectResponse(f"/cases/{event_id}", status_code=303)


@router.get("/dismissed.jsonl")
def dismissed(request: Request, user: User = Depends(needs("operator"))):
    lines = (
        json.dumps({"event": ev, "reason": reason, "dismissed_by": by}, ensure_ascii=False)
        for ev, reason, by in console_of(request).index.dismissed()
    )
    return Response(
        "".join(line + "\n" for line in lines),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="dismissed.jsonl"'},
    )


@router.get("/api/cases")
def api_cases(
    request: Request, page: int = 1, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)
):
    page = min(max(1, page), MAX_PAGE)
    rows = console_of(request).index.cases(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return {
        "total": console_of(request).index.count(flt),
        "page": page,
        "cases": [{**c.event, "verdict": c.verdict, "verdict_reason": c.verdict_reason} for c in rows],
    }
