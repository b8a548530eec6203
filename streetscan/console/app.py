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
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from ..pipeline.catalogue import CATALOGUE, Grade, ZoneKind
from ..pipeline.config import ConfigError
from . import charts
from .fleet import Fleet, RecordedFleet, StaleEdit, snapshot_path
from .i18n import LANGS, translator
from .index import STATES, CaseFilter, CaseIndex, cases_csv
from .users import Role, User, UserStore

HERE = Path(__file__).parent
PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # a page number past this reads the last page rather than overflowing SQLite's OFFSET
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SESSION_HOURS = 12


@dataclass(frozen=True)
class ConsoleSettings:
    out_dir: Path                 # the output folder: evidence/ lives here, paths in events are relative to it
    index_path: Path              # the case index (SQLite)
    users_path: Path              # console users (SQLite)
    secret_path: Path             # session signing key, created 0600 on first start
    https_only: bool = False      # set when served behind TLS: the session cookie gets `Secure`
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses); none: the client's own
    # address is the one login throttling counts, whatever headers it sends.
    trusted_proxies: tuple[str, ...] = ()

    def server_options(self) -> dict:
        """uvicorn's options for these settings: forwarded headers only from the trusted proxies."""
        return {"proxy_headers": bool(self.trusted_proxies),
                "forwarded_allow_ips": ",".join(self.trusted_proxies) or "", "log_level": "warning"}

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


class _SecureCookieOverHttps:
    """The session cookie gets `Secure` on a request that arrived over https: TLS here, or a trusted
    proxy's X-Forwarded-Proto (uvicorn sets the scheme only for those)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def secure(message):
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (k, v + b"; secure" if k == b"set-cookie" and v.startswith(b"streetscan_session=")
                     and b"secure" not in v.lower() else v) for k, v in message.get("headers", [])]
            await send(message)

        await self.app(scope, receive, secure)


class LoginRequired(Exception):
    def __init__(self, api: bool):
        self.api = api


def create_app(settings: ConsoleSettings, index: CaseIndex | None = None, users: UserStore | None = None,
               fleet: Fleet | None = None) -> FastAPI:
    index = index or CaseIndex(settings.index_path)
    users = users or UserStore(settings.users_path)
    fleet = fleet or RecordedFleet(settings.out_dir, camera_ids=index.facets()["camera_id"])
    chart_cache: dict[str, tuple[Any, bytes]] = {}
    evidence_root = (settings.out_dir / "evidence").resolve()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["duration"] = duration
    templates.env.filters["wall"] = wall_time

    app = FastAPI(title="StreetScan console", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=session_secret(settings.secret_path),
                       session_cookie="streetscan_session", max_age=SESSION_HOURS * 3600,
                       same_site="strict", https_only=settings.https_only)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if not settings.https_only:
        app.add_middleware(_SecureCookieOverHttps)

    @app.middleware("http")
    async def _security_headers(request: Request, call_next):
        response = await call_next(request)
        # Scripts only from /static (no inline script can run), no framing, no MIME sniffing.
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
    app.state.index, app.state.users, app.state.fleet = index, users, fleet

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
        # The cookie names a session the store must still hold: logging out, a new password or a
        # removed user ends it at once, whatever copy of the cookie is still around.
        user = users.session_user(request.session.get("sid"), SESSION_HOURS * 3600)
        if user is None:
            raise LoginRequired(api=request.url.path.startswith(("/api/", "/evidence/"))
                                or request.url.path.endswith((".jpg", ".svg")))  # images: no page to redirect
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
        user = users.login(name, password, address)
        if user == "throttled":
            resp = render(request, "login.html", None, next=_safe_next(next), error="throttled")
            resp.status_code = 429
            return resp
        if user is None:
            resp = render(request, "login.html", None, next=_safe_next(next), error="wrong")
            resp.status_code = 401
            return resp
        lang = request.session.get("lang", LANGS[0])
        request.session.clear()            # a fresh session (and CSRF token) after login: no fixation
        request.session.update(sid=users.open_session(user.name), lang=lang, csrf=secrets.token_urlsafe(32))
        return RedirectResponse(_safe_next(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form(""), user: User = Depends(current_user)):
        check_csrf(request, csrf)
        users.close_session(request.session.get("sid"))
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
                    until: str = "", muted: bool = False) -> CaseFilter:
        if state and state not in STATES:
            raise HTTPException(422, f"state must be one of {', '.join(STATES)}")
        return CaseFilter(camera or None, scene or None, zone or None, state or None, since or None, until or None,
                          include_muted=muted)

    @app.get("/")
    def root(user: User = Depends(current_user)):
        return RedirectResponse("/cases", status_code=303)

    @app.get("/cases", response_class=HTMLResponse)
    def case_list(request: Request, page: int = 1, flt: CaseFilter = Depends(case_filter),
                  user: User = Depends(current_user)):
        page = min(max(1, page), MAX_PAGE)
        total = index.count(flt)
        rows = index.cases(flt, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        query = {("muted" if k == "include_muted" else k): v for k, v in flt.__dict__.items() if v}
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

    # -- cameras and zones ------------------------------------------------------------------
    def known_camera(camera_id: str):
        cam = next((c for c in fleet.cameras() if c.id == camera_id), None)
        if cam is None:
            raise HTTPException(404, "no such camera")
        return cam

    def picture_size(camera_id: str) -> tuple[int, int] | None:
        path = snapshot_path(fleet.out_dir, camera_id)
        if path is None:
            return None
        from PIL import Image  # reads the JPEG header only

        with Image.open(path) as im:
            return im.size

    @app.get("/cameras", response_class=HTMLResponse)
    def cameras_page(request: Request, user: User = Depends(current_user)):
        try:
            cams, error = fleet.cameras(), None
        except ConfigError as exc:
            cams, error = [], str(exc)
        return render(request, "cameras.html", user, cameras=cams, error=error,
                      sizes={c.id: picture_size(c.id) for c in cams}, editable=fleet.streams is not None)

    @app.get("/cameras/{camera_id}/snapshot.jpg")
    def camera_snapshot(camera_id: str, user: User = Depends(current_user)):
        known_camera(camera_id)
        path = snapshot_path(fleet.out_dir, camera_id)
        if path is None:
            raise HTTPException(404, "no picture from this camera yet")
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    @app.get("/cameras/{camera_id}/zones", response_class=HTMLResponse)
    def zone_editor(request: Request, camera_id: str, user: User = Depends(needs("admin"))):
        if fleet.streams is None:
            raise HTTPException(404, "this console was started without a streams.yaml to edit")
        cam = known_camera(camera_id)
        zones = [z.model_dump(mode="json", exclude_none=True) for z in cam.zones]
        for z in zones:   # the editor shows schedules as typed: "07:00-18:00"
            if "schedule" in z:
                z["schedule"]["active"] = [f"{r['start'][:5]}-{'24:00' if r['end'].startswith('23:59:59') else r['end'][:5]}"
                                           for r in z["schedule"]["active"]]
        return render(request, "zones.html", user, camera=cam, zones=zones, size=picture_size(camera_id),
                      version=fleet.streams.version(), kinds=[k.value for k in ZoneKind],
                      grades=[g.value for g in Grade], classes=list(CATALOGUE), path=str(fleet.streams.path))

    @app.post("/api/cameras/{camera_id}/zones")
    async def save_zones(request: Request, camera_id: str, user: User = Depends(needs("admin"))):
        check_csrf(request, request.headers.get("x-csrf-token", ""))
        if fleet.streams is None:
            raise HTTPException(404, "this console was started without a streams.yaml to edit")
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"errors": ["the request body is not JSON"]}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"errors": ["expected {version, zones}"]}, status_code=400)
        try:
            backup = fleet.streams.replace_zones(camera_id, body.get("zones"), body.get("version"))
        except StaleEdit as exc:
            return JSONResponse({"errors": [str(exc)]}, status_code=409)
        except ConfigError as exc:
            return JSONResponse({"errors": exc.problems, "file": exc.path}, status_code=422)
        message = translator(request.session.get("lang", LANGS[0]))(fleet.applied())
        return {"message": message, "backup": backup.name, "version": fleet.streams.version()}

    # -- overview ---------------------------------------------------------------------------
    @app.get("/overview", response_class=HTMLResponse)
    def overview(request: Request, user: User = Depends(current_user)):
        try:
            cams = fleet.cameras()
        except ConfigError:
            cams = []
        return render(request, "overview.html", user, total=index.count(), open_now=index.open_count(),
                      down=[c for c in cams if c.down], shedding=[c for c in cams if c.shedding], cameras=len(cams))

    @app.get("/overview/{chart}.svg")
    def overview_chart(chart: str, user: User = Depends(current_user)):
        draw = {"per-day": lambda: charts.cases_per_day(index.per_day()),
                "per-camera": lambda: charts.cases_per_camera(index.per_camera())}.get(chart)
        if draw is None:
            raise HTTPException(404, "no such chart")
        stamp = index.stamp()
        cached = chart_cache.get(chart)
        if cached is None or cached[0] != stamp:   # redrawn only when a case changed
            cached = chart_cache[chart] = (stamp, draw())
        return Response(cached[1], media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    # -- API and evidence -------------------------------------------------------------------
    @app.get("/api/cases")
    def api_cases(page: int = 1, flt: CaseFilter = Depends(case_filter), user: User = Depends(current_user)):
        page = min(max(1, page), MAX_PAGE)
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


def wall_time(iso: str) -> str:
    """'2026-11-24T11:36:15.652009+08:00' -> '2026-11-24 11:36:15': the camera's local time, as read on a screen."""
    return iso[:19].replace("T", " ")


def duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def _safe_next(target: str, same_origin: str | None = None) -> str:
    """Only local paths: a `next` pointing elsewhere would make the login page an open redirect."""
    if same_origin and target.startswith(same_origin):
        target = "/" + target[len(same_origin):]
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/cases"
    return target
