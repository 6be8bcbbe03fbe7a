"""The ASGI app: the recommender's two calls over HTTP (single and batch), health, readiness,
metrics and the admin reload. FastAPI validates every parameter (and documents it at ``/docs``);
:mod:`graphrec.serve.errors` turns whatever fails into a 4xx JSON body naming the parameter.

Filter ids the snapshot does not know are ignored, as in the Python API (``FilterOptions``).
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from graph.errors import GraphRecError
from graphrec.serve.errors import ApiError, BodyLimitMiddleware, error_body, install_error_handlers
from graphrec.serve.metrics import CONTENT_TYPE, MetricsMiddleware
from graphrec.serve.model import LoadedModel
from graphrec.serve.runtime import DrainMiddleware, WorkerRuntime
from retrieval.filters import FilterOptions
from retrieval.recommender import MAX_K, Recommendation, UnknownUserError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Most ids one filter list (exclude, blocked, muted) may hold.
MAX_FILTER_IDS = 10_000
#: Largest request body accepted (a full batch with full filter lists stays well below it).
MAX_BODY_BYTES = 2 * 1024 * 1024
Id = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]

FOLLOW_PATH = "/v1/users/{user_id}/who-to-follow"
TWEET_PATH = "/v1/users/{user_id}/tweet-candidates"
FOLLOW_BATCH_PATH = "/v1/who-to-follow"
TWEET_BATCH_PATH = "/v1/tweet-candidates"
RELOAD_PATH = "/admin/reload"
#: Every route, for the metrics' endpoint label.
ENDPOINTS = (
    FOLLOW_PATH,
    TWEET_PATH,
    FOLLOW_BATCH_PATH,
    TWEET_BATCH_PATH,
    RELOAD_PATH,
    "/healthz",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
)

# -- request and response shapes (also the OpenAPI schema) -------------------------------------


class Item(BaseModel):
    id: int = Field(description="external id of the account (who-to-follow) or tweet")
    score: float
    sources: dict[str, float] | None = Field(None, description="each source's share of the score (explain)")
    reason: str | None = Field(None, description="why it is recommended (explain)")


class Recommendations(BaseModel):
    user_id: int
    snapshot_id: str
    items: list[Item]


class BatchEntry(BaseModel):
    user_id: int
    items: list[Item] | None = None
    error: dict[str, Any] | None = Field(
        None, description="for this user only, e.g. unknown_user with strict"
    )


class BatchRecommendations(BaseModel):
    snapshot_id: str
    results: list[BatchEntry]


class FollowBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_ids: list[Id] = Field(min_length=1, description="external user ids (at most --max-batch)")
    k: int = Field(20, ge=1, le=MAX_K)
    explain: bool = True
    strict: bool = False
    exclude: list[Id] = Field(default_factory=list, max_length=MAX_FILTER_IDS)
    blocked: list[Id] = Field(default_factory=list, max_length=MAX_FILTER_IDS)
    muted: list[Id] = Field(default_factory=list, max_length=MAX_FILTER_IDS)


class TweetBatchRequest(FollowBatchRequest):
    k: int = Field(50, ge=1, le=MAX_K)
    max_age_days: float | None = Field(None, ge=0)
    exclude_own_tweets: bool = True
    per_author_cap: int | None = Field(None, ge=1)
    mmr_lambda: float | None = Field(None, ge=0, le=1)


class Reloaded(BaseModel):
    snapshot_id: str
    generation: int
    seconds: float
    workers_behind: int = Field(description="new workers not up within the start timeout (0: all serve)")


# -- query parameters shared by the single-user routes ---------------------------------------

UserId = Annotated[int, Path(ge=INT64_MIN, le=INT64_MAX, description="external user id")]
Explain = Annotated[bool, Query(description="add each item's sources and reason")]
Strict = Annotated[bool, Query(description="404 for an unknown user instead of the cold-start list")]
IdList = Annotated[list[Id] | None, Query(max_length=MAX_FILTER_IDS)]
FOLLOW_QUERY = frozenset({"k", "explain", "strict", "exclude", "blocked", "muted"})
TWEET_QUERY = FOLLOW_QUERY | {"max_age_days", "exclude_own_tweets", "per_author_cap", "mmr_lambda"}


def _only(request: Request, allowed: frozenset[str]) -> None:
    """Unknown query parameters are an error, not silently ignored (a typo would change nothing)."""
    for name in request.query_params:
        if name not in allowed:
            raise ApiError(400, "unknown_parameter", f"{name}: unknown query parameter", parameter=name)


def _items(recs: list[Recommendation], explain: bool) -> list[dict]:
    if explain:
        return [{"id": r.id, "score": r.score, "sources": r.sources, "reason": r.reason} for r in recs]
    return [{"id": r.id, "score": r.score} for r in recs]


def _json(body: dict) -> Response:
    return Response(json.dumps(body, separators=(",", ":")).encode(), media_type="application/json")


def _check_mmr(model: LoadedModel, mmr_lambda: float | None) -> None:
    if mmr_lambda is not None and model.rec.tweet_vectors is None:
        raise ApiError(
            400,
            "unsupported_parameter",
            "mmr_lambda needs tweet embeddings: serve a model fitted with --embeddings",
            parameter="mmr_lambda",
        )


def _recommend(model: LoadedModel, task: str, user_id: int, k: int, filters: FilterOptions, opts: dict):
    rec = model.rec
    try:
        if task == "follows":
            return rec.who_to_follow(user_id, k, filters=filters, **opts)
        _check_mmr(model, opts.get("mmr_lambda"))
        return rec.tweet_candidates(user_id, k, filters=filters, **opts)
    except UnknownUserError:
        raise ApiError(
            404, "unknown_user", f"unknown user id {user_id} (strict=true)", parameter="user_id"
        ) from None
    except GraphRecError as exc:
        raise ApiError(400, "bad_request", str(exc)) from None


def create_app(runtime: WorkerRuntime) -> FastAPI:
    settings = runtime.settings
    app = FastAPI(
        title="graphrec",
        summary="Graph recommendations: who to follow and tweet candidates",
        description=(
            "Candidates from a fitted graphrec recommender. Every error is a JSON body "
            '`{"error": {"code", "message", "parameter"}}`; unknown filter ids are ignored.'
        ),
        version="1",
        lifespan=runtime.lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    if runtime.metrics is not None:
        app.add_middleware(MetricsMiddleware, metrics=runtime.metrics, worker=runtime.worker)
    app.add_middleware(DrainMiddleware, runtime=runtime)  # outermost: every answer, errors too

    # -- operations ----------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"], summary="the process is up")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="200 once the recommender is loaded, else 503")
    async def readyz() -> JSONResponse:
        model = runtime.model
        if model is None:
            return JSONResponse(error_body("not_ready", "the recommender is not loaded yet"), status_code=503)
        return JSONResponse(
            {"status": "ready", "snapshot_id": model.snapshot_id, "generation": model.generation}
        )

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics of all workers")
    async def metrics() -> PlainTextResponse:
        if runtime.metrics is None:
            raise ApiError(404, "not_found", "metrics are off in this server")
        channel = runtime.channel
        text = runtime.metrics.render(
            generation=channel.generation if channel else 0, reloads=channel.reloads if channel else (0, 0)
        )
        return PlainTextResponse(text, media_type=CONTENT_TYPE)

    @app.post(
        RELOAD_PATH,
        tags=["admin"],
        include_in_schema=settings.admin_token is not None,
        response_model=Reloaded,
        summary="re-read the snapshot, model, config and embeddings paths and swap in the new recommender",
        description="Needs `Authorization: Bearer <token>` (--admin-token-file or $GRAPHREC_ADMIN_TOKEN); "
        "404 when no token is configured. The new recommender is loaded in the supervisor, new workers "
        "are forked from it, and the old ones drain (they finish what they hold and close their "
        "connections after their next answer); it answers once the new workers serve. No request is "
        "dropped.",
    )
    async def reload(authorization: Annotated[str | None, Header()] = None) -> dict:
        token = settings.admin_token
        if token is None:
            raise ApiError(404, "not_found", "Not Found")
        if not authorization or not authorization.startswith("Bearer "):
            raise ApiError(
                401,
                "unauthorized",
                "admin endpoints need Authorization: Bearer <token>",
                parameter="Authorization",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(authorization[len("Bearer ") :].strip().encode(), token.encode()):
            raise ApiError(403, "forbidden", "wrong admin token", parameter="Authorization")
        result, seconds = await runtime.reload()
        return {
            "snapshot_id": result.snapshot_id,
            "generation": result.generation,
            "seconds": seconds,
            "workers_behind": result.workers_behind,
        }

    # -- recommendations -------------------------------------------------------------------
    @app.get(
        FOLLOW_PATH, tags=["recommendations"], response_model=Recommendations, summary="accounts to follow"
    )
    async def who_to_follow(
        request: Request,
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
        explain: Explain = True,
        strict: Strict = False,
        exclude: IdList = None,
        blocked: IdList = None,
        muted: IdList = None,
    ) -> Response:
        _only(request, FOLLOW_QUERY)
        filters = FilterOptions(blocked=blocked or (), muted=muted or (), exclude=exclude or ())

        def run(model: LoadedModel) -> Response:
            recs = _recommend(model, "follows", user_id, k, filters, {"explain": explain, "strict": strict})
            return _json(
                {"user_id": user_id, "snapshot_id": model.snapshot_id, "items": _items(recs, explain)}
            )

        return await runtime.call(run)

    @app.get(TWEET_PATH, tags=["recommendations"], response_model=Recommendations, summary="tweet candidates")
    async def tweet_candidates(
        request: Request,
        user_id: UserId,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 50,
        explain: Explain = True,
        strict: Strict = False,
        exclude: IdList = None,
        blocked: IdList = None,
        muted: IdList = None,
        max_age_days: Annotated[float | None, Query(ge=0, description="drop older tweets")] = None,
        exclude_own_tweets: bool = True,
        per_author_cap: Annotated[int | None, Query(ge=1, description="at most this many per author")] = None,
        mmr_lambda: Annotated[
            float | None, Query(ge=0, le=1, description="MMR diversity (needs tweet embeddings)")
        ] = None,
    ) -> Response:
        _only(request, TWEET_QUERY)
        filters = FilterOptions(
            blocked=blocked or (),
            muted=muted or (),
            exclude=exclude or (),
            exclude_own_tweets=exclude_own_tweets,
            max_age_seconds=max_age_days * 86_400 if max_age_days is not None else None,
        )
        opts = {
            "explain": explain,
            "strict": strict,
            "per_author_cap": per_author_cap,
            "mmr_lambda": mmr_lambda,
        }

        def run(model: LoadedModel) -> Response:
            recs = _recommend(model, "tweets", user_id, k, filters, opts)
            return _json(
                {"user_id": user_id, "snapshot_id": model.snapshot_id, "items": _items(recs, explain)}
            )

        return await runtime.call(run)

    def batch(task: str, body: FollowBatchRequest) -> Any:
        if len(body.user_ids) > settings.max_batch:
            raise ApiError(
                413,
                "batch_too_large",
                f"user_ids: {len(body.user_ids)} ids, at most {settings.max_batch} per request",
                parameter="user_ids",
            )
        opts: dict = {"explain": body.explain, "strict": body.strict}
        max_age = None
        if isinstance(body, TweetBatchRequest):
            opts |= {"per_author_cap": body.per_author_cap, "mmr_lambda": body.mmr_lambda}
            max_age = body.max_age_days * 86_400 if body.max_age_days is not None else None
        filters = FilterOptions(
            blocked=body.blocked,
            muted=body.muted,
            exclude=body.exclude,
            exclude_own_tweets=getattr(body, "exclude_own_tweets", True),
            max_age_seconds=max_age,
        )

        def run(model: LoadedModel) -> Response:
            results = []
            for uid in body.user_ids:
                try:
                    recs = _recommend(model, task, uid, body.k, filters, opts)
                except ApiError as exc:
                    if exc.code != "unknown_user":
                        raise
                    results.append({"user_id": uid, "error": error_body(exc.code, exc.message)["error"]})
                    continue
                results.append({"user_id": uid, "items": _items(recs, body.explain)})
            return _json({"snapshot_id": model.snapshot_id, "results": results})

        return runtime.call(run)

    @app.post(
        FOLLOW_BATCH_PATH,
        tags=["recommendations"],
        response_model=BatchRecommendations,
        summary="accounts to follow for many users",
    )
    async def who_to_follow_batch(body: FollowBatchRequest) -> Response:
        return await batch("follows", body)

    @app.post(
        TWEET_BATCH_PATH,
        tags=["recommendations"],
        response_model=BatchRecommendations,
        summary="tweet candidates for many users",
    )
    async def tweet_candidates_batch(body: TweetBatchRequest) -> Response:
        return await batch("tweets", body)

    return app
