"""The supervision board (督): cases per responsible unit against their rectification deadlines,
filterable like the case list and exportable as CSV."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from ..index import CaseFilter, units_csv
from ..users import User
from ..web import console_of, current_user, render
from .cases import case_filter

router = APIRouter()


@router.get("/units", response_class=HTMLResponse)
def unit_board(request: Request, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
    query = {("muted" if k == "include_muted" else k): v for k, v in flt.__dict__.items() if v}
    return render(
        request,
        "units.html",
        user,
        units=console_of(request).index.per_unit(flt),
        flt=flt,
        query=query,
        facets=console_of(request).index.facets(),
    )


@router.get("/units.csv")
def unit_csv(request: Request, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
    return Response(
        units_csv(console_of(request).index.per_unit(flt)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="units.csv"'},
    )
