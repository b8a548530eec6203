"""The operator console: a FastAPI app with server-rendered Jinja2 pages, one router per area
(routes/: auth, cases, cameras, overview, units, labels, evidence) over the parts in web.Console.

Nothing is served without a session: pages redirect to the login page, the JSON API and evidence
images answer 401. Every POST carries the session's CSRF token. Evidence is served only from
inside the output folder's evidence directory.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from ..dataset.labels import LabelStore
from ..pipeline.models import vocabulary
from .fleet import Fleet, RecordedFleet
from .index import CaseIndex
from .routes import ROUTERS
from .users import UserStore
from .web import SESSION_HOURS, Console, LoginRequired

HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class ConsoleSettings:
    out_dir: Path  # the output folder: evidence/ lives here, paths in events are relative to it
    index_path: Path  # the case index (SQLite)
    users_path: Path  # console users (SQLite)
    secret_path: Path  # session signing key, created 0600 on first start
    https_only: bool = False  # set when served behind TLS: the session cookie gets `Secure`
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses); none: the client's own
    # address is the one login throttling counts, whatever headers it sends.
    trusted_proxies: tuple[str, ...] = ()
    labels_path: Path | None = None  # operators' labels (SQLite); default: labels.db beside the case index

    def server_options(self) -> dict:
        """uvicorn's options for these settings: forwarded headers only from the trusted proxies."""
        return {
            "proxy_headers": bool(self.trusted_proxies),
            "forwarded_allow_ips": ",".join(self.trusted_proxies) or "",
            "log_level": "warning",
        }

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
                    (
                        k,
                        v + b"; secure"
                        if k == b"set-cookie" and v.startswith(b"streetscan_session=") and b"secure" not in v.lower()
                        else v,
                    )
                    for k, v in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, secure)


def create_app(
    settings: ConsoleSettings,
    index: CaseIndex | None = None,
    users: UserStore | None = None,
    fleet: Fleet | None = None,
) -> FastAPI:
    index = index or CaseIndex(settings.index_path)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["duration"] = duration
    templates.env.filters["wall"] = wall_time

    app = FastAPI(title="StreetScan console", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings.secret_path),
        session_cookie="streetscan_session",
        max_age=SESSION_HOURS * 3600,
        same_site="strict",
        https_only=settings.https_only,
    )
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

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired):
        if exc.api:
            return PlainTextResponse("login required", status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    app.state.console = Console(
        index=index,
        users=users or UserStore(settings.users_path),
        fleet=fleet or RecordedFleet(settings.out_dir, camera_ids=index.facets()["camera_id"]),
        templates=templates,
        evidence_root=(settings.out_dir / "evidence").resolve(),
        labels=LabelStore(
            settings.out_dir, vocabulary(), settings.labels_path or settings.index_path.with_name("labels.db")
        ),
    )
    for router in ROUTERS:
        app.include_router(router)
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
