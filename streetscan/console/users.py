"""Console users: local accounts with argon2id password hashes, three roles, and login throttling.

There is no default account and no default password: `streetscan users add` creates them.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
MIN_PASSWORD = 10
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{2,40}$")

# Login throttling: after MAX_FAILURES failed logins for one user name, or from one address,
# within WINDOW_S, further attempts are refused until the window has passed.
MAX_FAILURES = 5
WINDOW_S = 300.0


class UserError(ValueError):
    """A user could not be created or changed; the message says which field and why."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def can(self, role: Role) -> bool:
        """Roles are ordered: an admin can do what an operator can, an operator what a viewer can."""
        return _RANK[self.role] >= _RANK[role]


class UserStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Password hashes and live sessions: readable by the service's user only, from its creation.
        os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(self.path, 0o600)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.executescript("""
            CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, role TEXT NOT NULL, hash TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS failures (name TEXT NOT NULL, address TEXT NOT NULL, at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS sessions (sid TEXT PRIMARY KEY, name TEXT NOT NULL, at REAL NOT NULL);
        """)
        self._lock = threading.Lock()
        # Held from the throttle check to the recorded failure: 50 concurrent wrong passwords must
        # not all pass the check before the first failure is written.
        self._login_lock = threading.Lock()
        self._hasher = PasswordHasher()
        self._decoy_hash: str | None = None  # verified against for unknown names; made on first need

    def add(self, name: str, password: str, role: Role) -> User:
        if not NAME_PATTERN.match(name):
            raise UserError(f"name {name!r}: 2-40 letters, digits, '_', '.' or '-'")
        if role not in ROLES:
            raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        digest = self._hasher.hash(password)
        with self._lock:
            try:
                self._db.execute("INSERT INTO users VALUES (?,?,?)", (name, role, digest))
            except sqlite3.IntegrityError:
                raise UserError(f"name {name!r}: the user exists") from None
        return User(name, role)

    def remove(self, name: str) -> bool:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE name = ?", (name,))
            return self._db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount > 0

    def passwd(self, name: str, password: str) -> None:
        """A new password; every session of the user ends (a stolen cookie dies with the old password)."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        digest = self._hasher.hash(password)
        with self._lock:
            if self._db.execute("UPDATE users SET hash = ? WHERE name = ?", (digest, name)).rowcount == 0:
                raise UserError(f"name {name!r}: no such user")
            self._db.execute("DELETE FROM sessions WHERE name = ?", (name,))

    # -- sessions: the cookie only names one; logging out or a new password ends it here ---------
    def open_session(self, name: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._db.execute("INSERT INTO sessions VALUES (?,?,?)", (sid, name, time.time()))
        return sid

    def session_user(self, sid: str | None, max_age_s: float) -> User | None:
        if not sid:
            return None
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE at < ?", (time.time() - max_age_s,))
            row = self._db.execute(
                "SELECT u.name, u.role FROM sessions s JOIN users u ON u.name = s.name WHERE s.sid = ?", (sid,)
            ).fetchone()
        return User(*row) if row else None

    def close_session(self, sid: str | None) -> None:
        with self._lock:
            self._db.execute("DELETE FROM sessions WHERE sid = ?", (sid or "",))

    def list(self) -> list[User]:
        with self._lock:
            return [User(n, r) for n, r in self._db.execute("SELECT name, role FROM users ORDER BY name")]

    def get(self, name: str) -> User | None:
        with self._lock:
            row = self._db.execute("SELECT name, role FROM users WHERE name = ?", (name,)).fetchone()
        return User(*row) if row else None

    def throttled(self, name: str, address: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("DELETE FROM failures WHERE at < ?", (now - WINDOW_S,))
            by_name, by_addr = self._db.execute(
                "SELECT SUM(name = ?), SUM(address = ?) FROM failures", (name, address)
            ).fetchone()
        return (by_name or 0) >= MAX_FAILURES or (by_addr or 0) >= MAX_FAILURES

    def login(self, name: str, password: str, address: str) -> User | Literal["throttled"] | None:
        """The user; None for a wrong name or password (recorded as a failure); "throttled" when
        the name or address has used up its failures. One attempt at a time, so the limit holds
        however many arrive together (argon2 takes tens of milliseconds: a console's logins queue
        for that long at worst)."""
        with self._login_lock:
            if self.throttled(name, address):
                return "throttled"
            return self.authenticate(name, password, address)

    def authenticate(self, name: str, password: str, address: str) -> User | None:
        """The user, or None for a wrong name or password (recorded as a failure); `login` checks
        the throttle first."""
        with self._lock:
            row = self._db.execute("SELECT role, hash FROM users WHERE name = ?", (name,)).fetchone()
        ok = False
        if row is not None:
            try:
                ok = self._hasher.verify(row[1], password)
            except (VerificationError, InvalidHashError):
                ok = False
        else:
            # Same work for an unknown name as for a wrong password: timing does not reveal names.
            if self._decoy_hash is None:
                self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))
            try:
                self._hasher.verify(self._decoy_hash, password)
            except VerificationError:
                pass
        if not ok:
            with self._lock:
                self._db.execute("INSERT INTO failures VALUES (?,?,?)", (name, address, time.time()))
            return None
        return User(name, row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def require_users(users_path: Path, out: Path) -> None:
    """A console is never served without a user to sign in as: UserError says how to make one."""
    if not UserStore(users_path).list():
        raise UserError(
            f"no console users in {users_path}: create one with `streetscan users add NAME --role admin --out {out}`"
        )
