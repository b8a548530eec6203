"""The operator console: a FastAPI app with server-rendered Jinja2 pages.

Nothing is served without a session: pages redirect to the login page, the JSON API and evidence
images answer 401. Every POST carries the session's CSRF token. Evidence is served only from
inside the output folder's evidence directory.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from .i18n import LANGS, translator
from .index import STATES, CaseFilter, CaseIndex, cases_csv
from .users import Role, User, UserStore

HERE = Path(__file__).parent
PAGE_SIZE = 50
SESSION_HOURS = 12


@dataclass(frozen=True)
class ConsoleSettings:
    out_dir: Path                 # the output folder: evidence/ lives here, paths in events are relative to it
    index_path: Path              # the case index (SQLite)
    users_path: Path              # console users (SQLite)
    secret_path: Path             # session signing key, created 0600 on first start
    https_only: bool = False      # set when served behind TLS: the session cookie gets `Secure`

    @classmethod
    def for_output(cls, out_dir: Path, state_dir: Path | None = None) -> ConsoleSettings:
        state = state_dir or out_dir
        return cls(out_dir, state / "cases.db", state / "console-users.db", state / "console-secret")


def session_secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class LoginRequired(Exception):
    def __init__(self, api: bool):
        self.api = api


def create_app(settings: ConsoleSettings, index: CaseIndex | None = None, users: UserStore | None = None) -> FastAPI:
    index = index or CaseIndex(settings.index_path)
    users = users or UserStore(settings.users_path)
    evidence_root = (settings.out_dir / "evidence").resolve()
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    app = FastAPI(title="StreetScan console", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings.secret_path),
                       session_cookie="streetscan_session", max_age=SESSION_HOURS * 3600,
                       same_site="strict", https_only=settings.https_only)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.index, app.state.users = index, users

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        if exc.api:
            return PlainTextResponse("login required", status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

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
        name = request.session.get("user")
        user = users.get(name) if name else None
        if user is None:   # a removed user's cookie stops working at once
            raise LoginRequired(api=request.url.path.startswith(("/api/", "/evidence/")))
        return user

    def needs(role: Role):
        def check(user: User = Depends(current_user)) -> User:
            if not user.can(role):
                raise HTTPException(403, f"needs the {role} role")
            return user
        return check

    def render(request: Request, name: str, user: User | None, **context: Any) -> HTMLResponse:
        lang = request.session.get("lang", LANGS[0])
        return templates.TemplateResponse(request, name, {
            "user": user, "csrf": csrf_token(request), "t": translator(lang), "lang": lang, **context})

    # -- login ------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/cases"):
        return render(request, "login.html", None, next=_safe_next(next), error=None)

    @app.post("/login")
    def login(request: Request, name: str = Form(...), password: str = Form(...), csrf: str = Form(""),
              next: str = Form("/cases")):
        check_csrf(request, csrf)
        address = request.client.host if request.client else "?"
        if users.throttled(name, address):
            resp = render(request, "login.html", None, next=_safe_next(next), error="throttled")
            resp.status_code = 429
            return resp
        user = users.authenticate(name, password, address)
        if user is None:
            resp = render(request, "login.html", None, next=_safe_next(next), error="wrong")
            resp.status_code = 401
            return resp
        lang = request.session.get("lang", LANGS[0])
        request.session.clear()            # a fresh session (and CSRF token) after login: no fixation
        request.session.update(user=user.name, lang=lang, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form(""), user: User = Depends(current_user)):
        check_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @app.get("/lang/{lang}")
    def set_lang(request: Request, lang: str, user: User = Depends(current_user)):
        if lang in LANGS:
            request.session["lang"] = lang
        return RedirectResponse(_safe_next(request.headers.get("referer", "/cases"), same_origin=str(request.base_url)),
                                status_code=303)

    # -- cases ------------------------------------------------------------------------------
    def case_filter(camera: str = "", scene: str = "", zone: str = "", state: str = "", since: str = "",
                    until: str = "") -> CaseFilter:
        if state and state not in STATES:
            raise HTTPException(422, f"state must be one of {', '.join(STATES)}")
        return CaseFilter(camera or None, scene or None, zone or None, state or None, since or None, until or None)

    @app.get("/")
    def root(user: User = Depends(current_user)):
        return RedirectResponse("/cases", status_code=303)

    @app.get("/cases", response_class=HTMLResponse)
    def case_list(request: Request, page: int = 1, flt: CaseFilter = Depends(case_filter),
                  user: User = Depends(current_user)):
        page = max(1, page)
        total = index.count(flt)
        rows = index.cases(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        query = {k: v for k, v in flt.__dict__.items() if v}
        return render(request, "cases.html", user, cases=rows, total=total, page=page,
                      pages=max(1, -(-total // PAGE_SIZE)), flt=flt, query=query, facets=index.facets(),
                      states=STATES)

    @app.get("/cases.csv")
    def case_csv(flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
        rows = index.cases(flt, limit=100_000)
        return Response(cases_csv(rows), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="cases.csv"'})

    @app.get("/cases/{event_id}", response_class=HTMLResponse)
    def case_page(request: Request, event_id: str, user: User = Depends(current_user)):
        case = index.case(event_id)
        if case is None:
            raise HTTPException(404, "no such case")
        ev = case.event
        muted = index.muted(ev["camera"]["id"], ev["zone"]["id"], ev["scene_class"]["code"])
        return render(request, "case.html", user, case=case, ev=ev, timeline=index.timeline(event_id), muted=muted)

    @app.post("/cases/{event_id}/review")
    def review(request: Request, event_id: str, verdict: str = Form(...), reason: str = Form(""),
               csrf: str = Form(""), user: User = Depends(needs("operator"))):
        check_csrf(request, csrf)
        try:
            index.review(event_id, verdict, reason, user.name)
        except KeyError:
            raise HTTPException(404, "no such case") from None
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return RedirectResponse(f"/cases/{event_id}", status_code=303)

    @app.post("/cases/{event_id}/mute")
    def mute(request: Request, event_id: str, hours: float = Form(...), reason: str = Form(""),
             csrf: str = Form(""), user: User = Depends(needs("operator"))):
        check_csrf(request, csrf)
        case = index.case(event_id)
        if case is None:
            raise HTTPException(404, "no such case")
        if not 0 < hours <= 24 * 30:
            raise HTTPException(422, "hours: more than 0, at most 720")
        ev = case.event
        index.mute(ev["camera"]["id"], ev["zone"]["id"], ev["scene_class"]["code"], hours, reason, user.name)
        return RedirectResponse(f"/cases/{event_id}", status_code=303)

    @app.get("/dismissed.jsonl")
    def dismissed(user: User = Depends(needs("operator"))):
        lines = (json.dumps({"event": ev, "reason": reason, "dismissed_by": by}, ensure_ascii=False)
                 for ev, reason, by in index.dismissed())
        return Response("".join(line + "\n" for line in lines), media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="dismissed.jsonl"'})

    # -- API and evidence -------------------------------------------------------------------
    @app.get("/api/cases")
    def api_cases(page: int = 1, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
        page = max(1, page)
        rows = index.cases(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        return {"total": index.count(flt), "page": page,
                "cases": [{**c.event, "verdict": c.verdict, "verdict_reason": c.verdict_reason} for c in rows]}

    @app.get("/evidence/{path:path}")
    def evidence(path: str, user: User = Depends(current_user)):
        target = (evidence_root / path).resolve()
        # resolve() follows `..` and symlinks: whatever is asked for must end up inside evidence/.
        if not target.is_relative_to(evidence_root) or not target.is_file():
            raise HTTPException(404, "no such evidence")
        return FileResponse(target)

    return app


def _safe_next(target: str, same_origin: str | None = None) -> str:
    """Only local paths: a `next` pointing elsewhere would make the login page an open redirect."""
    if same_origin and target.startswith(same_origin):
        target = "/" + target[len(same_origin):]
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/cases"
    return target
