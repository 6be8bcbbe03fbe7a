"""Neo4j credentials: the generated password of local servers, and where clients find theirs.

A server started by :mod:`graph.neo4j_local` has authentication on: user ``neo4j`` with a
password generated once per user account (``secrets.token_urlsafe``) and kept in
:func:`password_file`, ``$XDG_CONFIG_HOME/graphrec/neo4j-password`` (``~/.config/...``;
``GRAPHREC_NEO4J_PASSWORD_FILE`` names another file), mode 0600 in a 0700 directory. It is
configuration, not cache: ``~/.cache/graphrec`` (the provisioned jars) may be deleted at any
time, but every store that was started with this password keeps it.

Clients (:meth:`graph.neo4j_store.Neo4jStore.connect`, hence :func:`graph.store.open_store`
and every ``--store`` of the command line) take their credentials from, in this order
(:func:`resolve_auth`):

1. ``user`` / ``password`` arguments;
2. for a server this process started (:class:`graph.neo4j_local.LocalNeo4j`), its credentials;
3. ``NEO4J_PASSWORD``, with ``NEO4J_USER`` (default ``neo4j``);
4. ``NEO4J_AUTH=USER/PASSWORD``, as the Neo4j Docker image takes it (``none``: no credentials);
5. for a server on this machine (``localhost``, ``127.*``, ``::1``), the password file, when it
   exists;
6. none.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from graph.errors import InputError, StoreUnavailableError

log = logging.getLogger(__name__)

DEFAULT_USER = "neo4j"
PASSWORD_FILE_ENV = "GRAPHREC_NEO4J_PASSWORD_FILE"

# Servers this process started, by Bolt URI: their credentials (None: authentication off). They
# win over the environment, whose NEO4J_PASSWORD may well be meant for another server (Docker's).
_STARTED_HERE: dict[str, Credentials | None] = {}


def password_file() -> Path:
    """Where the local servers' password lives: ``$GRAPHREC_NEO4J_PASSWORD_FILE``, else
    ``$XDG_CONFIG_HOME/graphrec/neo4j-password``, else ``~/.config/graphrec/neo4j-password``."""
    if os.environ.get(PASSWORD_FILE_ENV):
        return Path(os.environ[PASSWORD_FILE_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "graphrec" / "neo4j-password"


@dataclass(frozen=True)
class Credentials:
    """A Neo4j user and password, and where the password came from (for error messages)."""

    user: str
    password: str = field(repr=False)
    source: str

    def as_tuple(self) -> tuple[str, str]:
        """``(user, password)``, as ``neo4j.GraphDatabase.driver(auth=...)`` takes it."""
        return self.user, self.password


def read_local_password(path: str | os.PathLike | None = None) -> str | None:
    """The local servers' password (from :func:`password_file` unless ``path``), or None if
    there is no such file yet. A file that others can read is made owner-only (with a warning)."""
    path = Path(path) if path is not None else password_file()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreUnavailableError(f"cannot read the Neo4j password file {path}: {exc}") from exc
    _make_private(path)
    password = text.strip()
    if not password:
        raise StoreUnavailableError(
            f"the Neo4j password file {path} is empty; delete it to have a new password generated "
            "(then start the servers that used the old one with --reset-password)"
        )
    return password


def ensure_local_password(path: str | os.PathLike | None = None) -> Path:
    """The password file (:func:`password_file` unless ``path``), created with a new random
    password when there is none: mode 0600, and a directory created for it gets mode 0700.

    Safe against concurrent callers: the file appears complete or not at all (written aside,
    then hard-linked into place, which fails if another process got there first), so every
    caller ends up with the same password.
    """
    path = Path(path) if path is not None else password_file()
    if read_local_password(path) is not None:
        return path
    parent = path.parent
    if not parent.is_dir():
        parent.mkdir(parents=True, mode=0o700)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered by the umask
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("generated the password of local Neo4j servers (user %s) into %s", DEFAULT_USER, path)
        except FileExistsError:
            pass  # another process was first: use its password
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _make_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("the Neo4j password file %s had mode %o; making it owner-only (0600)", path, mode)
            os.chmod(path, 0o600)
    except OSError as exc:
        log.warning("cannot check or restrict the permissions of %s: %s", path, exc)


def remember_server(uri: str, credentials: Credentials | None) -> None:
    """Record the credentials of a server this process started (``LocalNeo4j.start``)."""
    _STARTED_HERE[uri] = credentials


def forget_server(uri: str) -> None:
    """Forget a server this process stopped."""
    _STARTED_HERE.pop(uri, None)


def is_local_uri(uri: str) -> bool:
    """Whether a Bolt URI names a server on this machine (loopback host)."""
    try:
        host = urlsplit(uri).hostname or ""
    except ValueError:
        return False
    return host in ("localhost", "::1") or host.startswith("127.")


def resolve_auth(uri: str, user: str | None = None, password: str | None = None) -> Credentials | None:
    """The credentials a client of ``uri`` uses (see the module docstring for the order), or None."""
    if password:
        return Credentials(
            user or os.environ.get("NEO4J_USER") or DEFAULT_USER, password, "the password argument"
        )
    if uri in _STARTED_HERE:
        return _STARTED_HERE[uri]
    if os.environ.get("NEO4J_PASSWORD"):
        name = user or os.environ.get("NEO4J_USER") or DEFAULT_USER
        return Credentials(name, os.environ["NEO4J_PASSWORD"], "NEO4J_PASSWORD")
    env_auth = os.environ.get("NEO4J_AUTH", "").strip()
    if env_auth:
        if env_auth.lower() == "none":
            return None
        name, sep, secret = env_auth.partition("/")
        if not (sep and name and secret):
            raise InputError(
                "NEO4J_AUTH must be USER/PASSWORD (e.g. neo4j/secret) or none, as for the Neo4j image"
            )
        return Credentials(user or name, secret, "NEO4J_AUTH")
    if is_local_uri(uri):
        local = read_local_password()
        if local is not None:
            return Credentials(user or DEFAULT_USER, local, str(password_file()))
    return None


def auth_failure_message(uri: str, credentials: Credentials | None, detail: str) -> str:
    """What to tell a user whose client the server at ``uri`` refused: which credentials were
    sent, and where to put the right ones."""
    if credentials is None:
        head = f"Neo4j at {uri} requires a user and password, and none was given ({detail})."
    else:
        head = (
            f"Neo4j at {uri} refused user {credentials.user!r} with the password from "
            f"{credentials.source} ({detail})."
        )
    hint = (
        " Give the password in NEO4J_PASSWORD (user in NEO4J_USER, default neo4j) or as "
        "NEO4J_AUTH=neo4j/PASSWORD, or pass user=/password= to Neo4jStore.connect / open_store."
    )
    if is_local_uri(uri):
        hint += (
            f" A server started by scripts/neo4j_local.py uses the password in {password_file()}; "
            "clients read it by themselves for a localhost URI when neither variable is set "
            "(export NEO4J_PASSWORD=$(python scripts/neo4j_local.py password) for other tools)."
        )
        if credentials is not None and credentials.source == str(password_file()):
            hint += (
                " If that server's store got its password from an earlier file, restart it with "
                "`python scripts/neo4j_local.py start --reset-password` (LocalNeo4j().start(reset_password=True))."
            )
    return head + hint
