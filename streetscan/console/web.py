"""What every console route shares: the console's parts, who is asking, CSRF, page rendering.

The parts live on `app.state.console` (one `Console` per app); routes reach them, and the signed-in
user, through FastAPI dependencies, so each area's router (routes/) is a module of its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..dataset.labels import LabelStore
from .fleet import Fleet
from .i18n import LANGS, translator
from .index import CaseIndex
from .users import Role, User, UserStore

SESSION_HOURS = 12
PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # a page number past this reads the last page rather than overflowing SQLite's OFFSET


class LoginRequired(Exception):
    def __init__(self, api: bool):
        self.api = api


@dataclass
class Console:
    index: CaseIndex
    users: UserStore
    fleet: Fleet
    templates: Jinja2Templates
    evidence_root: Path
    labels: LabelStore | None = None  # frames operators label for the next model (issue #33)
    chart_cache: dict[str, tuple[Any, bytes]] = field(default_factory=dict)


def console_of(request: Request) -> Console:
    return request.app.state.console


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, token: str) -> None:
    expected = request.session.get("csrf")
    if not expected or not token or not secrets.compare_digest(expected, token):
        raise HTTPException(403, "CSRF token missing or wrong")


def current_user(request: Request) -> User:
    # The cookie names a session the store must still hold: logging out, a new password or a
    # removed user ends it at once, whatever copy of the cookie is still around.
    user = console_of(request).users.session_user(request.session.get("sid"), SESSION_HOURS * 3600)
    if user is None:
        raise LoginRequired(
            api=request.url.path.startswith(("/api/", "/evidence/")) or request.url.path.endswith((".jpg", ".svg"))
        )  # images: no page to redirect
    return user


def needs(role: Role) -> Callable[..., User]:
    def check(user: User = Depends(current_user)) -> User:
        if not user.can(role):
            raise HTTPException(403, f"needs the {role} role")
        return user

    return check


def render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
    lang = request.session.get("lang", LANGS[0])
    return console_of(request).templates.TemplateResponse(
        request, name, {"user": user, "csrf": csrf_token(request), "t": translator(lang), "lang": lang, **context}
    )


def safe_next(target: str, same_origin: str | None = None) -> str:
    """Only local paths: a `next` pointing elsewhere would make the login page an open redirect."""
    if same_origin and target.startswith(same_origin):
        target = "/" + target[len(same_origin) :]
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/cases"
    return target
