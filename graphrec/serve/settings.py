"""What a server is started with: the artifact paths, the listening address and the limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graph.errors import GraphRecError

if TYPE_CHECKING:
    from graphrec.serve.live_feed import LiveSettings

#: Environment variable holding the admin token when ``--admin-token-file`` is not given.
ADMIN_TOKEN_ENV = "GRAPHREC_ADMIN_TOKEN"


@dataclass(frozen=True)
class ModelPaths:
    """Where the served recommender comes from; a reload reads the same paths again."""

    snapshot: Path
    model: Path | None = None
    config: Path | None = None
    embeddings: Path | None = None

    def __post_init__(self) -> None:
        if self.model is not None and (self.config is not None or self.embeddings is not None):
            raise GraphRecError("--model already holds its config and embeddings; drop --config/--embeddings")


@dataclass(frozen=True)
class ServeSettings:
    """``live``: the events topic each worker follows (:class:`graphrec.serve.live_feed.LiveSettings`)."""

    paths: ModelPaths
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    deadline_ms: float = 1000.0
    max_batch: int = 100
    admin_token: str | None = None
    reload_timeout_s: float = 600.0
    live: LiveSettings | None = None
    compact_every_s: float | None = None  # graphrec serve --compact-every
    compact_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise GraphRecError(f"--workers must be at least 1, got {self.workers}")
        if not 0 <= self.port <= 65535:
            raise GraphRecError(f"--port must be in 0..65535, got {self.port}")
        if self.deadline_ms <= 0:
            raise GraphRecError(f"--deadline-ms must be positive, got {self.deadline_ms}")
        if self.max_batch < 1:
            raise GraphRecError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.compact_every_s is not None:
            if not self.compact_every_s > 0:
                raise GraphRecError(f"--compact-every must be positive, got {self.compact_every_s}")
            if self.live is None:
                raise GraphRecError("--compact-every folds the live events: it needs --live-bootstrap")
            if self.compact_dir is None:
                raise GraphRecError("--compact-every needs --compact-dir (where the compactions are written)")

    @property
    def deadline_s(self) -> float:
        return self.deadline_ms / 1000.0


def read_admin_token(path: str | Path | None) -> str | None:
    """The admin token from ``path``, else from ``$GRAPHREC_ADMIN_TOKEN``; None disables the admin endpoints."""
    if path is not None:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise GraphRecError(f"--admin-token-file: cannot read {path}: {exc}") from None
        if not token:
            raise GraphRecError(f"--admin-token-file: {path} is empty")
        return token
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    return token or None
