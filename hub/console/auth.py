"""Console users: a file of ``name:role:hash`` lines, PBKDF2-SHA256 password hashes, two roles.

The file (``MELDHUB_CONSOLE_USERS`` or ``--users``) is written by operators with
``meldhub dlq console-user NAME --role admin``; it holds no plain passwords. Blank lines and
lines starting with ``#`` are ignored. The file is re-read when it changes, so removing a user
or lowering a role takes effect on the user's next request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

USERS_ENV = "MELDHUB_CONSOLE_USERS"
ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
ALGORITHM = "pbkdf2_sha256"
DEFAULT_ITERATIONS = 600_000  # OWASP 2023 for PBKDF2-HMAC-SHA256
_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class UsersError(ValueError):
    """The users file is missing or malformed; the message names the line."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def hash_password(password: str, iterations: int = DEFAULT_ITERATIONS, salt: bytes | None = None) -> str:
    """``pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>``."""
    if len(password) < 8 and iterations >= DEFAULT_ITERATIONS:
        raise UsersError("a console password has at least 8 characters")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode().rstrip("=")  # noqa: E731
    return f"{ALGORITHM}${iterations}${b64(salt)}${b64(digest)}"


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, digest = encoded.split("$")
        if algorithm != ALGORITHM:
            return False
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), _unb64(salt), int(iterations))
        return hmac.compare_digest(actual, _unb64(digest))
    except (ValueError, TypeError):
        return False


def user_line(name: str, role: str, password_hash: str) -> str:
    if not _NAME.match(name):
        raise UsersError(f"invalid user name {name!r}: letters, digits and . _ @ - only")
    if role not in ROLES:
        raise UsersError(f"invalid role {role!r}: {' or '.join(ROLES)}")
    return f"{name}:{role}:{password_hash}"


def parse_users(text: str, origin: str = "users file") -> dict[str, User]:
    users: dict[str, User] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 3:
            raise UsersError(f"{origin}, line {n}: expected name:role:hash")
        name, role, encoded = (p.strip() for p in parts)
        if not _NAME.match(name):
            raise UsersError(f"{origin}, line {n}: invalid user name")
        if role not in ROLES:
            raise UsersError(f"{origin}, line {n}: role must be {' or '.join(ROLES)}, not {role!r}")
        if not encoded.startswith(ALGORITHM + "$") or encoded.count("$") != 3:
            raise UsersError(f"{origin}, line {n}: the password must be a {ALGORITHM} hash (meldhub dlq console-user)")
        if name in users:
            raise UsersError(f"{origin}, line {n}: user {name!r} listed twice")
        users[name] = User(name, role, encoded)
    return users


class UserDB:
    """Users from a file, re-read when the file changes."""

    def __init__(self, path: Path | None = None, users: dict[str, User] | None = None) -> None:
        self.path = path
        self._users = users or {}
        self._mtime: float | None = None
        if path is not None:
            self._reload(force=True)

    def _reload(self, force: bool = False) -> None:
        if self.path is None:
            return
        try:
            mtime = self.path.stat().st_mtime
        except OSError as e:
            if force:
                raise UsersError(f"cannot read the users file {self.path}: {e.strerror or e}") from None
            self._users = {}  # the file is gone: nobody may log in
            return
        if force or mtime != self._mtime:
            self._users = parse_users(self.path.read_text(encoding="utf-8"), str(self.path))
            self._mtime = mtime

    def get(self, name: str) -> User | None:
        try:
            self._reload()
        except UsersError:
            return None  # a broken edit of the file locks everybody out rather than in
        return self._users.get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.get(name)
        # same work for unknown users: the response time does not tell which names exist
        ok = verify_password(password, user.password_hash if user else _dummy_hash())
        return user if ok and user else None

    def __len__(self) -> int:
        return len(self._users)


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password", salt=b"\0" * 16)


def load_users_from_env(path: Path | None = None) -> UserDB:
    chosen = path or (Path(os.environ[USERS_ENV]) if os.environ.get(USERS_ENV) else None)
    if chosen is None:
        raise UsersError(f"no console users: give --users FILE or set {USERS_ENV} (lines from meldhub dlq console-user)")
    db = UserDB(chosen)
    if not len(db):
        raise UsersError(f"the users file {chosen} lists no users")
    return db
