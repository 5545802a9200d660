"""Who may look at the ward: the users file, password hashes (argon2id, ``argon2-cffi``), login
sessions and the failed-login limiter.

The users file holds one user per line, ``name:role:hash`` (``role`` is ``viewer`` or
``clinician``; ``hash`` an argon2id PHC string written by :func:`add_user`); blank lines and lines
starting with ``#`` are ignored. It never holds a password. Sessions live in memory only (a
restart logs everybody out); the cookie carries a random token whose SHA-256 is the key here.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pedstream.errors import PedstreamError

__all__ = ["WebError", "User", "Users", "Session", "Sessions", "LoginLimiter", "add_user", "ROLES",
           "NAME_RE"]

log = logging.getLogger("pedstream.web.auth")

ROLES = ("viewer", "clinician")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_MAX_PASSWORD = 1024  # characters; longer input is refused before hashing
_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory defaults


class WebError(PedstreamError):
    """A web station set-up problem the user can fix (bind address, TLS, users file): exit 2."""

    exit_code = 2

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"web: {what}: {reason}")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    hash: str

    @property
    def may_act(self) -> bool:
        """Acknowledge and silence alarms (clinicians only)."""
        return self.role == "clinician"


class Users:
    """The users of the station: read from the users file, or one one-time demo user."""

    def __init__(self, users: dict[str, User], *, source: str) -> None:
        self.users = users
        self.source = source
        self._dummy = _HASHER.hash(secrets.token_hex(16))  # unknown names cost as much time as known ones

    @classmethod
    def from_file(cls, path: str | Path) -> "Users":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WebError(f"users file {path}", f"cannot read it ({exc.strerror or exc})") from exc
        users: dict[str, User] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(":", 2)
            if len(parts) != 3 or not NAME_RE.match(parts[0]) or parts[1] not in ROLES or not parts[2].startswith("$argon2"):
                raise WebError(f"users file {path} line {n}", "expected name:role:argon2-hash (role viewer or clinician; "
                                                              "write it with `pedstream web adduser`)")
            users[parts[0]] = User(*parts)
        if not users:
            raise WebError(f"users file {path}", "holds no user (add one with `pedstream web adduser`)")
        return cls(users, source=str(path))

    @classmethod
    def one_time(cls, *, name: str = "demo", role: str = "clinician") -> tuple["Users", str]:
        """A single user with a random password, held in memory only; returns (users, password)."""
        password = secrets.token_urlsafe(12)
        return cls({name: User(name, role, _HASHER.hash(password))}, source="one-time login"), password

    def verify(self, name: str, password: str) -> User | None:
        """The user when ``password`` is theirs, else None (slow on purpose: call it in a thread)."""
        if len(password) > _MAX_PASSWORD or len(name) > 64:
            return None
        user = self.users.get(name)
        try:
            _HASHER.verify(user.hash if user is not None else self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


def add_user(path: str | Path, name: str, role: str, password: str) -> bool:
    """Add ``name`` (or replace its role and hash) in the users file ``path`` (created with mode 0600).
    Returns True when the user was new."""
    if not NAME_RE.match(name):
        raise WebError("user name", f"{name!r}: use 1-64 letters, digits or . _ @ -")
    if role not in ROLES:
        raise WebError("role", f"{role!r}: expected viewer or clinician")
    if not 8 <= len(password) <= _MAX_PASSWORD:
        raise WebError("password", "use 8 to 1024 characters")
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    entry = f"{name}:{role}:{_HASHER.hash(password)}"
    kept = [ln for ln in lines if ln.split(":", 1)[0] != name]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("\n".join([*kept, entry]) + "\n", encoding="utf-8")
    return len(kept) == len(lines)


@dataclass
class Session:
    user: User
    csrf: str
    expires: float  # monotonic


class Sessions:
    """Login sessions keyed by SHA-256 of the cookie token; at most ``max_sessions`` (oldest dropped)."""

    def __init__(self, *, lifetime_s: float, max_sessions: int = 1000) -> None:
        self.lifetime_s = float(lifetime_s)
        self.max_sessions = int(max_sessions)
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    @staticmethod
    def _key(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    def create(self, user: User) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        sess = Session(user=user, csrf=secrets.token_urlsafe(32), expires=time.monotonic() + self.lifetime_s)
        self._by_key[self._key(token)] = sess
        while len(self._by_key) > self.max_sessions:
            self._by_key.popitem(last=False)
        return token, sess

    def get(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        key = self._key(token)
        sess = self._by_key.get(key)
        if sess is not None and sess.expires < time.monotonic():
            del self._by_key[key]
            return None
        return sess

    def drop(self, token: str | None) -> None:
        """Log out: the session ends now (its open screens are closed at their next update)."""
        if token and len(token) <= 128:
            sess = self._by_key.pop(self._key(token), None)
            if sess is not None:
                sess.expires = 0.0


@dataclass
class LoginLimiter:
    """At most ``max_failures`` failed logins per user name and per client address in ``window_s``."""

    max_failures: int
    window_s: float
    _fails: dict[str, deque] = field(default_factory=dict)

    def _recent(self, key: str, now: float) -> deque:
        q = self._fails.setdefault(key, deque(maxlen=self.max_failures))
        while q and now - q[0] > self.window_s:
            q.popleft()
        if not q:
            self._fails.pop(key, None)
        return q

    def retry_after(self, name: str, client: str) -> float:
        """Seconds until a login for ``name`` from ``client`` may be tried again (0: now)."""
        now = time.monotonic()
        waits = [self.window_s - (now - q[0]) for q in (self._recent(f"u:{name}", now), self._recent(f"c:{client}", now))
                 if len(q) >= self.max_failures]
        return max(waits, default=0.0)

    def failed(self, name: str, client: str) -> None:
        now = time.monotonic()
        for key in (f"u:{name}", f"c:{client}"):
            self._fails.setdefault(key, deque(maxlen=self.max_failures)).append(now)
        if len(self._fails) > 100_000:  # bounded under a spray of names: forget the oldest half
            for key in list(self._fails)[: len(self._fails) // 2]:
                del self._fails[key]
        log.warning("web: failed login for %r from %s", name[:64], client)
