"""Signing in and out, and the page language."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..i18n import LANGS
from ..users import User
from ..web import check_csrf, console_of, current_user, render, safe_next

router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/cases"):
    return render(request, "login.html", None, next=safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request, name: str = Form(...), password: str = Form(...), csrf: str = Form(""), next: str = Form("/cases")
):
    check_csrf(request, csrf)
    address = request.client.host if request.client else "?"
    user = console_of(request).users.login(name, password, address)
    if user == "throttled":
        resp = render(request, "login.html", None, next=safe_next(next), error="throttled")
        resp.status_code = 429
        return resp
    if user is None:
        resp = render(request, "login.html", None, next=safe_next(next), error="wrong")
        resp.status_code = 401
        return resp
    lang = request.session.get("lang", LANGS[0])
    request.session.clear()  # a fresh session (and CSRF token) after login: no fixation
    request.session.update(
        sid=console_of(request).users.open_session(user.name), lang=lang, csrf=secrets.token_urlsafe(32)
    )
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form(""), user: User = Depends(current_user)):
    check_csrf(request, csrf)
    console_of(request).users.close_session(request.session.get("sid"))
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{lang}")
def set_lang(request: Request, lang: str, user: User = Depends(current_user)):
    if lang in LANGS:
        request.session["lang"] = lang
    return RedirectResponse(
        safe_next(request.headers.get("referer", "/cases"), same_origin=str(request.base_url)), status_code=303
    )
