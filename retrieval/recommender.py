"""The Python API: ``Recommender.who_to_follow`` and ``Recommender.tweet_candidates``.

One candidate pipeline, in explicit stages: sources (the catalogue's, each returning sparse
candidate lists with the user's history left out) -> fusion (per-source normalised lists,
weighted) -> request filters -> popularity backfill -> diversity -> explanation. The batch
path :meth:`Recommender.rank` runs the same stages without per-request options: it is what
``graphrec evaluate --method recommender`` scores and what ``graphrec tune`` tunes.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from graph.errors import GraphRecError, SnapshotError
from graph.live import LiveGraph
from graph.ranking import select_candidates, top_k
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, TASKS, check_task, exclusion_matrix, n_targets, target_ids
from retrieval import explain
from retrieval.catalogue import (
    DEFAULT_DEPTH,
    BuildContext,
    build_sources,
    check_weights,
    default_weights,
    per_call_walk,
)
from retrieval.diversity import cap_exposure_share, cap_per_group, mmr
from retrieval.filters import FilterOptions, RequestFilter, compile_filters
from retrieval.fusion import check_fusion, fuse, normalised_lists
from retrieval.live import LiveOverlay, TargetAttribute, WalkView, fold_in, live_reason
from retrieval.precomputed import PrecomputedSource
from retrieval.sources import (
    CandidateSource,
    CoEngagementSource,
    CoFollowSource,
    EmbeddingSource,
    PopularitySource,
    SimilarUsersSource,
    StaticSource,
    best_anchor,
)
from retrieval.walk_sources import WalkSource
from retrieval.walk_sources import forget as forget_walk_graphs

log = logging.getLogger(__name__)

MAX_K = 10_000
#: Format of a saved fitted recommender (``Recommender.save``); bumped on incompatible change.
MODEL_FORMAT = 2
#: Arrays of a fitted model at least this large are saved as .npy files beside the pickle and
#: memory-mapped on load: loading (and a server's hot reload) costs no copy, and every worker
#: process that loads the same model shares one copy in the page cache.
MAPPED_ARRAY_MIN_BYTES = 1 << 20


class UnknownUserError(GraphRecError):
    """The user id is not in the snapshot and ``strict=True`` was asked."""


@dataclass
class Recommendation:
    """One candidate: external id, fused score, each source's share of it, and a reason."""

    id: int
    score: float
    sources: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RecommenderConfig:
    """Source weights per task (tuned on validation data by ``graphrec tune``), fusion settings
    and the number of candidates each source contributes (``depth``)."""

    tweet_weights: dict[str, float] = field(default_factory=lambda: default_weights(TASK_TWEETS))
    follow_weights: dict[str, float] = field(default_factory=lambda: default_weights(TASK_FOLLOWS))
    fusion: str = "score"
    depth: int = DEFAULT_DEPTH
    seed: int = 0
    #: task -> source -> why the tuning gate set that source's weight to 0 (e.g. an embedding
    #: source whose model did not beat popularity on validation)
    switched_off: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_weights(TASK_TWEETS, self.tweet_weights)
        check_weights(TASK_FOLLOWS, self.follow_weights)
        check_fusion(self.fusion)
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise GraphRecError(f"depth must be a positive integer, got {self.depth!r}")
        if not isinstance(self.switched_off, dict) or not all(
            isinstance(v, dict) for v in self.switched_off.values()
        ):
            raise GraphRecError("switched_off must map a task to {source: reason}")
        for task, reasons in self.switched_off.items():
            check_weights(task, dict.fromkeys(reasons, 0.0))  # known task and source names

    def weights(self, task: str) -> dict[str, float]:
        return self.tweet_weights if check_task(task) == TASK_TWEETS else self.follow_weights

    def with_weights(self, task: str, weights: Mapping[str, float]) -> RecommenderConfig:
        """A copy with ``task``'s weights replaced."""
        d = asdict(self)
        d["tweet_weights" if check_task(task) == TASK_TWEETS else "follow_weights"] = dict(weights)
        return RecommenderConfig(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> RecommenderConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GraphRecError(f"{path}: cannot read a recommender config: {exc}") from exc
        if not isinstance(data, dict):
            raise GraphRecError(f"{path}: a recommender config is a JSON object")
        unknown = set(data) - {"tweet_weights", "follow_weights", "fusion", "depth", "seed", "switched_off"}
        if unknown:
            raise GraphRecError(f"{path}: unknown config field(s) {sorted(unknown)}")
        try:
            return cls(**data)
        except GraphRecError as exc:
            raise GraphRecError(f"{path}: {exc}") from None


class Recommender:
    """Candidates for a user from a snapshot and its fitted sources.

    ``sources`` (optional) replaces the catalogue's sources of a task with your own objects
    following :class:`~retrieval.sources.CandidateSource`; ``tasks`` limits what is fitted.
    """

    def __init__(
        self,
        snap: GraphSnapshot,
        *,
        config: RecommenderConfig | None = None,
        sources: Mapping[str, Sequence[CandidateSource]] | None = None,
        user_vectors: np.ndarray | None = None,
        tweet_vectors: np.ndarray | None = None,
        tasks: Sequence[str] = TASKS,
        serving: bool = True,
    ):
        self.snap = snap
        self.config = config or RecommenderConfig()
        self.user_vectors, self.tweet_vectors = user_vectors, tweet_vectors
        self.tasks = tuple(check_task(t) for t in tasks)
        context = BuildContext(self.config.seed, user_vectors, tweet_vectors)
        self.sources: dict[str, dict[str, CandidateSource]] = {}
        for task in self.tasks:
            weights = self.config.weights(task)
            # Only sources with a weight are built and fitted: a tuned config may switch off an expensive one.
            if sources is not None and task in sources:
                chosen = {s.name: s for s in sources[task] if weights.get(s.name)}
            else:
                names = [n for n, w in weights.items() if w]
                chosen = build_sources(
                    snap, task, names, context=context, serving=serving, depth=self.config.depth
                )
            self.sources[task] = {name: s.fit(snap) for name, s in chosen.items()}
        self._derive_from_snapshot()

    #: The live stage (:meth:`attach_live`); None serves the snapshot alone.
    overlay: LiveOverlay | None = None
    #: The walk sources the live stage walks on the walk view, by task (set by attach_live).
    _live_walks: Mapping[str, Mapping[str, WalkSource]] = MappingProxyType({})

    def _derive_from_snapshot(self) -> None:
        """Per task, the history exclusions and the cold-start popularity (saved with the model)."""
        self._exclude = {t: exclusion_matrix(self.snap, t) for t in self.tasks}
        self._cold = {
            t: PopularitySource(t, half_life_days=3.0 if t == TASK_TWEETS else 0.0).fit(self.snap)
            for t in self.tasks
        }

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_store(cls, store, **kwargs) -> Recommender:
        """Export a snapshot from any store and build on it."""
        from graph.export import export_snapshot

        return cls(export_snapshot(store, progress=False), **kwargs)

    @classmethod
    def from_artifacts(
        cls,
        snapshot_dir: str | Path,
        *,
        embeddings_dir: str | Path | None = None,
        config_path: str | Path | None = None,
        **kwargs,
    ) -> Recommender:
        """Fit on a saved snapshot, optionally with an embedding artifact (``graphrec embed --out``)
        and a tuned config (``graphrec tune --out``).

        Raises :class:`SnapshotError` when the embeddings were trained on another snapshot.
        """
        from gnn.artifacts import load_artifact

        snap = GraphSnapshot.load(snapshot_dir)
        user_vectors = tweet_vectors = None
        if embeddings_dir is not None:  # an artifact directory, or `graphrec embed --out` with its LATEST
            artifact = load_artifact(embeddings_dir, snapshot_id=snap.snapshot_id)
            user_vectors, tweet_vectors = artifact.user_vectors, artifact.tweet_vectors
            if artifact.metrics.get("beats_popularity") is False:
                log.warning(
                    "the embeddings in %s do not beat popularity on their validation carve; "
                    "`graphrec tune --embeddings` switches their source off",
                    artifact.path,
                )
        config = RecommenderConfig.load(config_path) if config_path else None
        return cls(snap, config=config, user_vectors=user_vectors, tweet_vectors=tweet_vectors, **kwargs)

    def save(self, path: str | Path) -> None:
        """Save the fitted recommender (config + fitted sources) to directory ``path``.

        The snapshot is not copied: :meth:`load` takes it again and checks its id. The sources
        are pickled: load only models you (or your own jobs) saved.
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {
            "sources": self.sources,
            "user_vectors": self.user_vectors,
            "tweet_vectors": self.tweet_vectors,
            "tasks": self.tasks,
            # Derived from the snapshot, saved so that a load (a server's reload) derives nothing.
            "exclude": self._exclude,
            "cold": self._cold,
        }
        arrays = Path(
            tempfile.mkdtemp(prefix="arrays-", dir=out)
        )  # new files: a running reader keeps the old
        tmp = out / "model.pkl.tmp"
        with open(tmp, "wb") as fh:
            _SnapshotPickler(fh, self.snap, arrays).dump(state)
        tmp.replace(out / "model.pkl")
        for old in out.glob("arrays-*"):
            if old != arrays:
                shutil.rmtree(old, ignore_errors=True)  # mapped files stay readable until unmapped
        self.config.save(out / "config.json")
        meta = {"format": MODEL_FORMAT, "snapshot_id": self.snap.snapshot_id, "tasks": list(self.tasks)}
        (out / "meta.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path, snapshot: GraphSnapshot | str | Path) -> Recommender:
        """A recommender saved by :meth:`save`, bound to ``snapshot`` (a snapshot or its directory).

        Raises :class:`SnapshotError` when the model was fitted on another snapshot.
        """
        path = Path(path)
        snap = snapshot if isinstance(snapshot, GraphSnapshot) else GraphSnapshot.load(snapshot)
        try:
            meta = json.loads((path / "meta.json").read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise GraphRecError(f"{path}: not a saved recommender (meta.json: {exc})") from None
        if meta.get("format") != MODEL_FORMAT:
            raise GraphRecError(
                f"{path}: model format {meta.get('format')!r}, this version reads {MODEL_FORMAT}"
            )
        if meta.get("snapshot_id") != snap.snapshot_id:
            raise SnapshotError(
                f"the model in {path} was fitted on snapshot {meta.get('snapshot_id')!r}, not on "
                f"{snap.snapshot_id!r}; fit it again on this snapshot"
            )
        with open(path / "model.pkl", "rb") as fh:
            state = _SnapshotUnpickler(fh, snap, path).load()
        rec = cls.__new__(cls)
        rec.snap, rec.config = snap, RecommenderConfig.load(path / "config.json")
        rec.user_vectors, rec.tweet_vectors = state["user_vectors"], state["tweet_vectors"]
        rec.tasks, rec.sources = tuple(state["tasks"]), state["sources"]
        rec._exclude, rec._cold = state["exclude"], state["cold"]
        return rec

    # -- live segments -----------------------------------------------------------
    def attach_live(self, live: LiveGraph | None, *, walk_refresh_s: float | None = None) -> None:
        """Serve the snapshot plus ``live`` (the events since it, :class:`graph.live.LiveGraph`):
        fresh history is left out at once and candidates through live edges join the fusion as
        the ``live`` source; the random walks step over live edges once they are folded into the
        walk view (:class:`retrieval.live.WalkView`): every ``walk_refresh_s`` seconds on a
        background thread, or on :meth:`refresh_walks` when None. None detaches."""
        if live is not None and live.snap.snapshot_id != self.snap.snapshot_id:
            raise SnapshotError(
                f"the live graph extends snapshot {live.snap.snapshot_id}, this recommender serves "
                f"{self.snap.snapshot_id}"
            )
        old = self.overlay
        if old is not None and old.walks is not None:
            old.walks.stop()
        if live is None:
            self.overlay, self._live_walks = None, {}
            return
        similar = self.sources.get(TASK_TWEETS, {}).get("similar_users")
        vectors = self.user_vectors
        if vectors is not None and len(vectors) != self.snap.n_users:
            vectors = None
        self.overlay = LiveOverlay(
            live,
            similar_users=similar if isinstance(similar, SimilarUsersSource) else None,
            user_vectors=vectors,
        )
        self._live_walks = self._walk_sources()
        if not self._live_walks and not any(self._fold_sources(t) for t in self.sources):
            return
        self.overlay.walks = WalkView(
            live, self._prepare_walks, forget_walk_graphs, walk_refresh_s or WalkView.DEFAULT_REFRESH_S
        )
        if walk_refresh_s is not None:
            self.overlay.walks.start()

    def refresh_walks(self) -> bool:
        """Fold the live graph into the walk view now (True when a new fold is in)."""
        if self.overlay is None or self.overlay.walks is None:
            return False
        return self.overlay.walks.refresh()

    def _walk_sources(self) -> dict[str, dict[str, WalkSource]]:
        """The random-walk sources by task that the walk view walks: the fitted ones, and for a
        precomputed walk (its table holds the snapshot's answers) its walk with the per-call
        budgets."""
        out = {}
        for task, sources in self.sources.items():
            walks = {
                n: per_call_walk(s.inner) if isinstance(getattr(s, "inner", None), WalkSource) else s
                for n, s in sources.items()
            }
            walks = {n: s for n, s in walks.items() if isinstance(s, WalkSource)}
            if walks:
                out[task] = walks
        return out

    def _prepare_walks(self, snap: GraphSnapshot) -> dict:
        """Everything the live stage reads on a fold: each walk's cached graphs, and per task
        the fold's exclusions and the score-vector sources (popularity, recency) refitted on
        it (a count over the edges: new tweets trend and new tweets are recent at once)."""
        for walks in self._live_walks.values():
            for src in walks.values():
                src.prepare(snap)
        statics = {}
        for task, sources in self.sources.items():
            fitted = {n: copy.copy(s).fit(snap) for n, s in sources.items() if isinstance(s, StaticSource)}
            if fitted:
                statics[task] = (exclusion_matrix(snap, task), fitted)
        return statics

    def _fold_sources(self, task: str) -> tuple[str, ...]:
        """The sources of ``task`` the live stage reads on the fold instead of the snapshot."""
        statics = [n for n, s in self.sources.get(task, {}).items() if isinstance(s, StaticSource)]
        return (*self._live_walks.get(task, ()), *statics)

    def apply_events(self, cols) -> dict[str, int]:
        """Add events (:class:`graph.ingest.GraphColumns`) to the live graph, starting one if
        needed; returns how many of each were new (first write wins)."""
        if self.overlay is None:
            self.attach_live(LiveGraph(self.snap))
        return self.overlay.live.add(cols)

    @property
    def live(self) -> LiveGraph | None:
        return self.overlay.live if self.overlay is not None else None

    # -- public API ------------------------------------------------------------
    def who_to_follow(
        self,
        user_id: int,
        k: int = 20,
        *,
        filters: FilterOptions | None = None,
        explain: bool = True,
        strict: bool = False,
        max_group_share: float | None = None,
        groups: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Accounts for ``user_id`` to follow, best first.

        An unknown user gets the cold-start path (most followed accounts) unless
        ``strict=True``, which raises :class:`UnknownUserError`.
        """
        return self._recommend(
            TASK_FOLLOWS, user_id, k, filters, explain, strict, None, None, max_group_share, groups
        )

    def tweet_candidates(
        self,
        user_id: int,
        k: int = 50,
        *,
        filters: FilterOptions | None = None,
        explain: bool = True,
        strict: bool = False,
        per_author_cap: int | None = None,
        mmr_lambda: float | None = None,
        max_group_share: float | None = None,
        groups: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Tweet candidates for ``user_id``, best first (for a ranker downstream).

        ``per_author_cap`` limits tweets per author; ``mmr_lambda`` (0..1) re-ranks
        for diversity with the tweet embeddings; ``max_group_share`` caps the
        share of any author group (``groups`` maps user index -> group).
        """
        return self._recommend(
            TASK_TWEETS,
            user_id,
            k,
            filters,
            explain,
            strict,
            per_author_cap,
            mmr_lambda,
            max_group_share,
            groups,
        )

    def who_to_follow_batch(
        self, user_ids: Iterable[int], k: int = 20, **kwargs
    ) -> list[list[Recommendation]]:
        """:meth:`who_to_follow` for many users."""
        return [self.who_to_follow(u, k, **kwargs) for u in user_ids]

    def tweet_candidates_batch(
        self, user_ids: Iterable[int], k: int = 50, **kwargs
    ) -> list[list[Recommendation]]:
        """:meth:`tweet_candidates` for many users."""
        return [self.tweet_candidates(u, k, **kwargs) for u in user_ids]

    # -- the pipeline ------------------------------------------------------------
    def source_lists(
        self, task: str, users: np.ndarray, skip: Iterable[str] = ()
    ) -> dict[str, sp.csr_matrix]:
        """Stage 1 for a batch of users (dense indices): every weighted source's top ``depth``
        candidates (history left out), normalised (:func:`retrieval.fusion.normalised_lists`).
        Sources named in ``skip`` are left out (the live stage walks them on the walk view)."""
        task = self._check_fitted(task)
        users = np.asarray(users, np.int64)
        exclude = self._exclude[task][users]
        weights = self.config.weights(task)
        n = n_targets(self.snap, task)
        return {
            name: normalised_lists(*src.candidates(users, self.config.depth, exclude), n, self.config.fusion)
            for name, src in self.sources[task].items()
            if weights.get(name) and name not in skip
        }

    def fused_lists(
        self, task: str, users: np.ndarray, skip: Iterable[str] = ()
    ) -> tuple[sp.csr_matrix, dict[str, sp.csr_matrix]]:
        """Stages 1-2: :meth:`source_lists`, weighted and summed. Returns the fused rows and each
        source's weighted part."""
        parts = self.source_lists(task, users, tuple(skip))
        if not parts:
            return sp.csr_matrix((len(users), n_targets(self.snap, task)), dtype=np.float32), {}
        weights = self.config.weights(task)
        return fuse(parts, {name: weights[name] for name in parts})

    def rank(self, task: str, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The served candidates for a batch of users without per-request options:
        ``(ids, scores)`` of dense target indices, best first (-1 / 0 in empty slots). This is
        what the evaluation scores and the weight tuning tunes."""
        k = check_k(k)
        fused, _ = self.fused_lists(task, users)
        fused = self._backfill(task, np.asarray(users, np.int64), fused, k, None)
        return select_candidates(fused, k)

    def _recommend(
        self, task, user_id, k, filters, want_reason, strict, author_cap, mmr_lambda, share, groups
    ):
        k = check_k(k)
        task = self._check_fitted(task)
        filters = filters or FilterOptions()
        overlay = self.overlay
        user_id = _check_id(user_id)
        idx = int(self.snap.user_index([user_id], strict=False)[0])
        if idx < 0 and overlay is not None:
            idx = overlay.user_index(user_id)  # born since the snapshot
        if idx < 0:
            if strict:
                raise UnknownUserError(
                    f"unknown user id {user_id}; pass strict=False for the cold-start path"
                )
            request, unknown = compile_filters(self.snap, task, None, filters)
            return self._cold_start(task, k, self._live_filter(task, request))
        request, unknown = compile_filters(self.snap, task, idx, filters)
        if unknown:
            log.info("ignored %d unknown ids in filters: %s", len(unknown), unknown[:5])
        request = self._live_filter(task, request)
        users = np.array([idx])
        # The walks step over live edges on the latest fold, when there is one (one reference
        # read once: a fold swapped in mid-call is used by the next call).
        fold_state = overlay.walks.current() if overlay is not None and overlay.walks is not None else None
        if fold_state is not None and fold_state[0] is None:
            fold_state = None
        walked = self._fold_sources(task) if fold_state is not None else ()
        if idx < self.snap.n_users:
            fused, parts = self.fused_lists(task, users, skip=walked)
        else:  # a user born since the snapshot: only the live stage knows them
            fused, parts = sp.csr_matrix((1, n_targets(self.snap, task)), dtype=np.float32), {}
        fresh = None
        if overlay is not None:
            fused, parts, fresh = self._with_live(task, idx, fused, parts, fold_state)
        if not request.is_empty and fused.nnz:
            fused.data[~request.keep(fused.indices)] = 0.0
            fused.eliminate_zeros()
        fused = self._backfill(task, users, fused, k, request, fresh)
        diversify = bool(author_cap or mmr_lambda is not None or share)
        ranked, scores = select_candidates(fused, max(k * 5, k) if diversify else k)
        ranked, scores = ranked[0][ranked[0] >= 0], scores[0][ranked[0] >= 0]
        if diversify:
            ranked = self._diversify(task, ranked, scores, k, author_cap, mmr_lambda, share, groups)
            scores = _row_values(fused, ranked)
        return self._explained(task, idx, ranked[:k], scores[:k], parts, want_reason)

    def _explained(self, task, idx, ranked, scores, parts, want_reason) -> list[Recommendation]:
        names = list(parts)
        shares = (
            np.stack([_row_values(parts[n], ranked) for n in names]) if names else np.zeros((0, len(ranked)))
        )
        if self.overlay is not None:
            ids = self.overlay.external_ids(task, ranked)
        else:
            ids = np.asarray(target_ids(self.snap, task))[ranked]
        memo: dict = {}  # per-call neighbours, shared by every explained candidate
        out = []
        for col, t in enumerate(ranked.tolist()):
            contrib = {n: float(v) for n, v in zip(names, shares[:, col].tolist()) if v > 0}
            if not contrib:  # a backfilled target: no source proposed it
                contrib = {"popular": float(scores[col])}
            reason = self._reason(task, idx, t, _explaining_source(contrib), memo) if want_reason else ""
            out.append(Recommendation(int(ids[col]), float(scores[col]), contrib, reason))
        return out

    def _check_fitted(self, task: str) -> str:
        check_task(task)
        if task not in self.sources:
            raise GraphRecError(f"this recommender was fitted for {', '.join(self.tasks)} only, not {task!r}")
        return task

    def _diversify(self, task, ranked, scores, k, author_cap, mmr_lambda, share, groups) -> np.ndarray:
        if task == TASK_TWEETS and mmr_lambda is not None:
            if self.tweet_vectors is None:
                raise GraphRecError(
                    "mmr_lambda needs tweet embeddings; build the Recommender with tweet_vectors"
                )
            ranked = mmr(ranked, scores, self.tweet_vectors, max(k * 2, k), mmr_lambda)
        if task == TASK_TWEETS and author_cap is not None:
            if author_cap < 1:
                raise GraphRecError(f"per_author_cap must be >= 1, got {author_cap}")
            ranked = cap_per_group(ranked, self._tweet_author(), author_cap, len(ranked))
        if share is not None:
            if not 0 < share <= 1:
                raise GraphRecError(f"max_group_share must be in (0, 1], got {share}")
            if groups is None:
                raise GraphRecError("max_group_share needs `groups` (a group label per user index)")
            owner = ranked if task == TASK_FOLLOWS else np.asarray(self._tweet_author()[ranked])
            group_of_item = np.full(int(ranked.max(initial=-1)) + 1, -1, np.int64)
            group_of_item[ranked] = np.where(owner >= 0, np.asarray(groups)[np.maximum(owner, 0)], -1)
            ranked = cap_exposure_share(ranked, group_of_item, share, k)
        return ranked[:k]

    def _reason(self, task: str, user: int, target: int, source: str, memo: dict) -> str:
        if source == "live" or user >= self.snap.n_users or target >= n_targets(self.snap, task):
            return live_reason(task)
        src = _unwrapped(self.sources[task].get(source))
        if task == TASK_TWEETS:
            anchor = -1
            co = _unwrapped(self.sources[TASK_TWEETS].get("co_engagement"))
            if source in ("co_engagement", "spectral", "pixie") and isinstance(co, CoEngagementSource):
                anchor = co.best_anchor(user, target)
            peers = None
            if source == "similar_users" and isinstance(src, SimilarUsersSource):
                if "peers" not in memo:  # once per call: the user's neighbours, most similar first
                    nb = src.neighbours(np.array([user]))
                    memo["peers"] = nb.indices[np.lexsort((nb.indices, -nb.data))]
                peers = memo["peers"]
            return explain.tweet_reason(self.snap, user, target, source, anchor, peers)
        anchor = -1
        if source == "co_follow" and isinstance(src, CoFollowSource):
            anchor = best_anchor(src.f, src.sim_t, user, target)
        return explain.follow_reason(self.snap, user, target, source, anchor)

    def _backfill(
        self,
        task: str,
        users: np.ndarray,
        fused: sp.csr_matrix,
        k: int,
        request: RequestFilter | None,
        fresh: np.ndarray | None = None,
    ) -> sp.csr_matrix:
        """Rows with fewer than ``k`` candidates get the most popular targets they lack (passing
        the same exclusions and filters, and ``fresh``: the live history of a one-user call),
        each ranked below every sourced candidate."""
        short = np.flatnonzero(np.diff(fused.indptr) < k)
        if not len(short):
            return fused
        rows, cols, vals = [], [], []
        for r in short.tolist():
            lo, hi = fused.indptr[r], fused.indptr[r + 1]
            have = np.sort(fused.indices[lo:hi]).astype(np.int64)
            floor = float(fused.data[lo:hi].min()) if hi > lo else 1.0
            history = self._exclude[task][users[r]].indices if users[r] < self.snap.n_users else []
            skip = np.union1d(np.union1d(have, history), fresh if fresh is not None else [])
            fill, pop = self._popular(task, k - len(have), skip, request)
            rows.append(np.full(len(fill), r))
            cols.append(fill)
            vals.append(
                (0.5 * floor * pop / max(float(pop[0]) if len(pop) else 1.0, 1e-12)).astype(np.float32)
            )
        extra = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=fused.shape
        )
        return (fused + extra).tocsr()

    def _with_live(self, task: str, idx: int, fused: sp.csr_matrix, parts: dict, fold_state=None):
        """Fusion with the live stage: the walk and score-vector sources' lists on the walk
        view's fold (``fold_state``, when there is one), the user's live history dropped from every list, and the
        candidates through live edges as one more normalised, weighted list (``live``), weighted
        as the task's strongest source. Returns the fused row, the parts and the live history."""
        overlay = self.overlay
        with overlay.live.lock:  # one consistent view of the live graph for the whole stage
            return self._with_live_locked(task, idx, fused, parts, fold_state)

    def _walked_on_fold(self, task: str, idx: int, fold_state, width: int) -> dict:
        """Each weighted walk and score-vector source's list for live user ``idx`` on the fold
        (``fold_state``: the fold and what :meth:`_prepare_walks` built on it), in live indices,
        normalised and weighted like :meth:`fused_lists`' parts."""
        view, weights = self.overlay.walks, self.config.weights(task)
        walk_snap, statics = fold_state
        q = view.to_fold(walk_snap, idx)
        if q < 0:  # the user was born after this fold
            return {}
        lists = {
            name: src.candidates_on(walk_snap, np.array([q]), self.config.depth)
            for name, src in self._live_walks.get(task, {}).items()
            if weights.get(name)
        }
        if statics and task in statics:
            exclude, fitted = statics[task]
            for name, src in fitted.items():
                if weights.get(name):
                    lists[name] = src.candidates(np.array([q]), self.config.depth, exclude[[q]])
        out = {}
        for name, (ids, vals) in lists.items():
            ids = view.from_fold(walk_snap, task, ids[0])[None, :]
            out[name] = normalised_lists(ids, vals, width, self.config.fusion) * float(weights[name])
        return out

    def _folded_in(self, task: str, idx: int, width: int) -> dict:
        """For a user born since the snapshot: each weighted embedding source's list from the
        user's folded-in vector (:func:`retrieval.live.fold_in`), normalised and weighted."""
        weights, out = self.config.weights(task), {}
        for name, src in self.sources[task].items():
            if not (isinstance(src, EmbeddingSource) and weights.get(name)):
                continue
            live = self.overlay.live
            followees = live.follows.out_edges(np.array([idx]))[1]
            engaged = live.engagements.out_edges(np.array([idx]))[1]
            vec = fold_in(self.user_vectors, self.tweet_vectors, followees, engaged)
            if vec is None:
                continue
            ids, vals = top_k((src.t @ vec)[None, :], self.config.depth)
            out[name] = normalised_lists(ids, vals, width, self.config.fusion) * float(weights[name])
        return out

    def _with_live_locked(self, task: str, idx: int, fused: sp.csr_matrix, parts: dict, fold_state):
        overlay = self.overlay
        fresh = overlay.exclusions(task, idx)
        width = overlay.n_targets(task)
        fused = fused.copy()
        fused.resize((1, width))
        extra = self._walked_on_fold(task, idx, fold_state, width) if fold_state is not None else {}
        if idx >= self.snap.n_users:
            extra.update(self._folded_in(task, idx, width))
        for part in extra.values():
            fused = (fused + part).tocsr()
        parts = {**parts, **extra}
        if len(fresh) and fused.nnz:
            fused.data[np.isin(fused.indices, fresh)] = 0.0
            fused.eliminate_zeros()
        history = self._exclude[task][idx].indices if idx < self.snap.n_users else np.zeros(0, np.int64)
        ids, vals = overlay.candidates(task, idx, self.config.depth, np.union1d(fresh, history))
        if len(ids):
            weight = max(self.config.weights(task).values(), default=1.0) or 1.0
            live = normalised_lists(ids[None, :], vals[None, :], width, self.config.fusion) * weight
            fused = (fused + live).tocsr()
            parts = {**parts, "live": live}
        return fused, parts, fresh

    def _live_filter(self, task: str, request: RequestFilter) -> RequestFilter:
        """``request`` able to judge targets born since the snapshot (their author and time)."""
        if self.overlay is None or task != TASK_TWEETS:
            return request
        request.tweet_author = TargetAttribute(self.overlay.tweet_author)
        request.tweet_created = TargetAttribute(self.overlay.tweet_created)
        return request

    def _tweet_author(self):
        """Author of each tweet by dense index (tweets born since the snapshot included)."""
        if self.overlay is not None:
            return TargetAttribute(self.overlay.tweet_author)
        return np.asarray(self.snap.tweet_author)

    def _popular(
        self, task: str, n: int, skip: np.ndarray, request: RequestFilter | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` most popular targets not in ``skip`` (sorted) that pass ``request``."""
        return self._cold[task].first(n, skip, None if request is None else request.keep)

    def _cold_start(self, task: str, k: int, request: RequestFilter) -> list[Recommendation]:
        ids, pop = self._popular(task, k, np.zeros(0, np.int64), request)
        reason = (
            "popular account (you are new here)"
            if task == TASK_FOLLOWS
            else "popular right now (you are new here)"
        )
        out_ids = target_ids(self.snap, task)
        return [
            Recommendation(int(out_ids[t]), float(p), {"popular": float(p)}, reason)
            for t, p in zip(ids.tolist(), pop.tolist())
        ]


class _SnapshotPickler(pickle.Pickler):
    """Pickles a fitted recommender's sources without the snapshot they point to; numeric arrays
    of :data:`MAPPED_ARRAY_MIN_BYTES` or more go to ``.npy`` files in ``array_dir``."""

    def __init__(self, fh, snap: GraphSnapshot, array_dir: Path):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self._snap, self._array_dir = snap, array_dir
        self._saved: dict[int, tuple] = {}
        self._keep: list[np.ndarray] = []  # ids stay unique while we pickle

    def persistent_id(self, obj):
        if obj is self._snap:
            return "snapshot"
        if not (
            isinstance(obj, np.ndarray) and obj.dtype.kind in "biuf" and obj.nbytes >= MAPPED_ARRAY_MIN_BYTES
        ):
            return None
        if id(obj) not in self._saved:
            name = f"{len(self._saved)}.npy"
            np.save(self._array_dir / name, np.asarray(obj))
            self._saved[id(obj)] = ("array", self._array_dir.name, name)
            self._keep.append(obj)
        return self._saved[id(obj)]


class _SnapshotUnpickler(pickle.Unpickler):
    def __init__(self, fh, snap: GraphSnapshot, model_dir: Path):
        super().__init__(fh)
        self._snap, self._model_dir = snap, model_dir

    def persistent_load(self, pid):
        if pid == "snapshot":
            return self._snap
        if isinstance(pid, tuple) and len(pid) == 3 and pid[0] == "array":
            path = self._model_dir / pid[1] / pid[2]
            if (
                any(Path(part).name != part or part in ("", ".", "..") for part in pid[1:])
                or not path.is_file()
            ):
                raise pickle.UnpicklingError(f"{path}: missing array file of the saved model")
            # Copy-on-write mapping: shared between processes, and a write stays private.
            return np.load(path, mmap_mode="c", allow_pickle=False)
        raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")


def _unwrapped(src):
    return src.inner if isinstance(src, PrecomputedSource) else src


def _row_values(m: sp.csr_matrix, ids: np.ndarray) -> np.ndarray:
    """Values of row 0 of ``m`` at columns ``ids`` (0 where not stored)."""
    lo, hi = m.indptr[0], m.indptr[1]
    cols, vals = m.indices[lo:hi], m.data[lo:hi]
    order = np.argsort(cols, kind="stable")
    cols, vals = cols[order], vals[order]
    pos = np.minimum(np.searchsorted(cols, ids), max(len(cols) - 1, 0))
    hit = (cols[pos] == ids) if len(cols) else np.zeros(len(ids), bool)
    return np.where(hit, vals[pos] if len(cols) else 0.0, 0.0).astype(np.float32)


#: Sources whose reason says little; a graph source that contributes a fair share explains better.
_FALLBACK_REASONS = ("embedding", "popular", "recent", "content")


def _explaining_source(contrib: dict[str, float]) -> str:
    """The source to explain a candidate with: the top graph source if it carries >= 30% of the top share."""
    if not contrib:
        return "popular"
    top = max(contrib, key=contrib.get)
    graph = {n: v for n, v in contrib.items() if n not in _FALLBACK_REASONS}
    if graph:
        best_graph = max(graph, key=graph.get)
        if graph[best_graph] >= 0.3 * contrib[top]:
            return best_graph
    return top


def check_k(k: int) -> int:
    """``k`` if it is an integer in 1..MAX_K, else a GraphRecError naming it."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise GraphRecError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise GraphRecError(f"k must be at least 1, got {k}")
    if k > MAX_K:
        raise GraphRecError(f"k must be at most {MAX_K}, got {k}")
    return int(k)


def _check_id(user_id) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, (int, np.integer)):
        raise GraphRecError(f"user id must be an integer, got {user_id!r}")
    return int(user_id)
