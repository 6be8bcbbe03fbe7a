"""Request counters and latency histograms for every worker, in the Prometheus text format.

The arrays live in shared memory created before the workers fork: one row per worker, each
written only by its own worker (from its event loop thread, so without locks), summed when
``/metrics`` is scraped, whichever worker answers. Labels are fixed up front: endpoints are
route templates (``/v1/users/{user_id}/who-to-follow``; anything unrouted is ``other``) and
statuses a fixed list (anything else is ``other``), so series stay few and rows stay fixed-size.
"""

from __future__ import annotations

import bisect
import multiprocessing as mp
import time
from collections.abc import Sequence

import numpy as np

#: Histogram bucket upper bounds, seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUSES = (200, 400, 401, 403, 404, 405, 413, 500, 503, 504)
_ID_BYTES = 64
# per-worker gauges
_ALIVE, _GENERATION, _NEWEST_EVENT, _LOADED_AT = 0, 1, 2, 3
# the live feed, when the server follows an events topic
_LIVE_APPLIED, _LIVE_INVALID, _LIVE_LAG, _LIVE_EDGES, _LIVE_BYTES, _LIVE_AT, _LIVE_ON = 4, 5, 6, 7, 8, 9, 10
# the walk view (folds of the live graph for the walks)
_WALK_FOLDS, _WALK_FOLD_S, _WALK_FOLD_EDGES = 11, 12, 13
_N_GAUGES = 14

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class SharedMetrics:
    def __init__(self, endpoints: Sequence[str], n_workers: int, ctx=None):
        ctx = ctx or mp.get_context("fork")
        self.endpoints = [*endpoints, "other"]
        self._endpoint_index = {e: i for i, e in enumerate(self.endpoints)}
        self.statuses = [str(s) for s in STATUSES] + ["other"]
        self._status_index = {s: i for i, s in enumerate(STATUSES)}
        self.n_workers = n_workers
        E, S, B = len(self.endpoints), len(self.statuses), len(BUCKETS) + 1
        self._shape = {"counts": (E, S), "buckets": (E, B), "sums": (E,), "gauges": (_N_GAUGES,)}
        sizes = {k: int(np.prod(v)) for k, v in self._shape.items()}
        row = sum(sizes.values())
        self._raw = ctx.RawArray("d", n_workers * row)
        self._ids = ctx.RawArray("c", n_workers * _ID_BYTES)
        table = np.frombuffer(self._raw, dtype=np.float64).reshape(n_workers, row)
        self._views, start = {}, 0
        for key, size in sizes.items():
            self._views[key] = table[:, start : start + size].reshape(n_workers, *self._shape[key])
            start += size

    # -- writing (a worker, its own row) -------------------------------------------
    def observe(self, worker: int, endpoint: str | None, status: int, seconds: float) -> None:
        e = (
            self._endpoint_index.get(endpoint, len(self.endpoints) - 1)
            if endpoint
            else len(self.endpoints) - 1
        )
        s = self._status_index.get(status, len(self.statuses) - 1)
        self._views["counts"][worker, e, s] += 1
        self._views["buckets"][worker, e, bisect.bisect_left(BUCKETS, seconds)] += 1
        self._views["sums"][worker, e] += seconds

    def set_model(
        self, worker: int, snapshot_id: str, generation: int, newest_event: int, loaded_at: float
    ) -> None:
        gauges = self._views["gauges"][worker]
        gauges[_GENERATION], gauges[_NEWEST_EVENT], gauges[_LOADED_AT] = generation, newest_event, loaded_at
        raw = snapshot_id.encode()[: _ID_BYTES - 1].ljust(_ID_BYTES, b"\0")
        self._ids[worker * _ID_BYTES : (worker + 1) * _ID_BYTES] = raw
        gauges[_ALIVE] = 1

    def set_live(
        self,
        worker: int,
        *,
        applied: int,
        invalid: int,
        lag: int,
        edges: int,
        nbytes: int,
        at: float,
        folds: int = 0,
        fold_s: float = 0.0,
        fold_edges: int = 0,
    ) -> None:
        """The worker's live feed: events applied and invalid, lag, live edges and their bytes;
        its walk view: folds so far, the last one's seconds and the live edges it holds."""
        g = self._views["gauges"][worker]
        g[_LIVE_APPLIED], g[_LIVE_INVALID], g[_LIVE_LAG] = applied, invalid, lag
        g[_LIVE_EDGES], g[_LIVE_BYTES], g[_LIVE_AT], g[_LIVE_ON] = edges, nbytes, at, 1
        g[_WALK_FOLDS], g[_WALK_FOLD_S], g[_WALK_FOLD_EDGES] = folds, fold_s, fold_edges

    def set_alive(self, worker: int, alive: bool) -> None:
        self._views["gauges"][worker, _ALIVE] = 1.0 if alive else 0.0

    # -- reading ---------------------------------------------------------------------
    def is_alive(self, worker: int) -> bool:
        """Whether ``worker`` is up and serving (not draining)."""
        return bool(self._views["gauges"][worker, _ALIVE] > 0)

    def snapshot_ids(self) -> list[str | None]:
        """Per worker the snapshot id it serves (None for a worker that is not up)."""
        alive = self._views["gauges"][:, _ALIVE]
        out = []
        for w in range(self.n_workers):
            raw = bytes(self._ids[w * _ID_BYTES : (w + 1) * _ID_BYTES]).rstrip(b"\0")
            out.append(raw.decode(errors="replace") if alive[w] else None)
        return out

    def render(self, *, generation: int, reloads: tuple[int, int], now: float | None = None) -> str:
        now = time.time() if now is None else now
        counts = self._views["counts"].sum(axis=0)
        buckets = np.cumsum(self._views["buckets"].sum(axis=0), axis=1)
        sums = self._views["sums"].sum(axis=0)
        gauges = self._views["gauges"]
        alive = gauges[:, _ALIVE] > 0
        lines = [
            "# HELP graphrec_http_requests_total HTTP requests answered, by endpoint and status.",
            "# TYPE graphrec_http_requests_total counter",
        ]
        for e, endpoint in enumerate(self.endpoints):
            for s, status in enumerate(self.statuses):
                if counts[e, s]:
                    lines.append(
                        f'graphrec_http_requests_total{{endpoint="{_esc(endpoint)}",status="{status}"}} {int(counts[e, s])}'
                    )
        lines += [
            "# HELP graphrec_http_request_duration_seconds Time to answer an HTTP request, by endpoint.",
            "# TYPE graphrec_http_request_duration_seconds histogram",
        ]
        for e, endpoint in enumerate(self.endpoints):
            total = int(buckets[e, -1])
            if not total:
                continue
            label = f'endpoint="{_esc(endpoint)}"'
            for b, bound in enumerate(BUCKETS):
                lines.append(
                    f'graphrec_http_request_duration_seconds_bucket{{{label},le="{bound:g}"}} {int(buckets[e, b])}'
                )
            lines.append(f'graphrec_http_request_duration_seconds_bucket{{{label},le="+Inf"}} {total}')
            lines.append(f"graphrec_http_request_duration_seconds_sum{{{label}}} {sums[e]:.6f}")
            lines.append(f"graphrec_http_request_duration_seconds_count{{{label}}} {total}")
        served: dict[str, int] = {}
        for sid in self.snapshot_ids():
            if sid is not None:
                served[sid] = served.get(sid, 0) + 1
        lines += [
            "# HELP graphrec_snapshot_info The snapshot served, valued by how many workers serve it.",
            "# TYPE graphrec_snapshot_info gauge",
            *(
                f'graphrec_snapshot_info{{snapshot_id="{_esc(sid)}"}} {n}'
                for sid, n in sorted(served.items())
            ),
        ]
        newest = gauges[alive, _NEWEST_EVENT]
        if len(newest) and newest.min() > 0:
            oldest = float(newest.min())
            lines += [
                "# HELP graphrec_snapshot_timestamp_seconds Newest event (tweet or engagement) in the served snapshot.",
                "# TYPE graphrec_snapshot_timestamp_seconds gauge",
                f"graphrec_snapshot_timestamp_seconds {oldest:.0f}",
                "# HELP graphrec_snapshot_age_seconds Seconds since the newest event in the served snapshot.",
                "# TYPE graphrec_snapshot_age_seconds gauge",
                f"graphrec_snapshot_age_seconds {max(now - oldest, 0.0):.0f}",
            ]
        loaded = gauges[alive, _LOADED_AT]
        if len(loaded):
            lines += [
                "# HELP graphrec_model_loaded_timestamp_seconds When the oldest model a worker serves was loaded.",
                "# TYPE graphrec_model_loaded_timestamp_seconds gauge",
                f"graphrec_model_loaded_timestamp_seconds {float(loaded.min()):.3f}",
            ]
        live = alive & (gauges[:, _LIVE_ON] > 0)
        if live.any():
            rows = np.flatnonzero(live)
            lines += [
                "# HELP graphrec_live_events_applied_total Events applied to the worker's live graph.",
                "# TYPE graphrec_live_events_applied_total counter",
                *(
                    f'graphrec_live_events_applied_total{{worker="{w}"}} {int(gauges[w, _LIVE_APPLIED])}'
                    for w in rows
                ),
                "# HELP graphrec_live_events_invalid_total Invalid events the worker's live feed skipped.",
                "# TYPE graphrec_live_events_invalid_total counter",
                *(
                    f'graphrec_live_events_invalid_total{{worker="{w}"}} {int(gauges[w, _LIVE_INVALID])}'
                    for w in rows
                ),
                "# HELP graphrec_live_lag_messages Messages of the events topic the worker has not applied yet.",
                "# TYPE graphrec_live_lag_messages gauge",
                *(f'graphrec_live_lag_messages{{worker="{w}"}} {int(gauges[w, _LIVE_LAG])}' for w in rows),
                "# HELP graphrec_live_edges Edges in the worker's live segments.",
                "# TYPE graphrec_live_edges gauge",
                *(f'graphrec_live_edges{{worker="{w}"}} {int(gauges[w, _LIVE_EDGES])}' for w in rows),
                "# HELP graphrec_live_bytes Bytes held by the worker's live segments.",
                "# TYPE graphrec_live_bytes gauge",
                *(f'graphrec_live_bytes{{worker="{w}"}} {int(gauges[w, _LIVE_BYTES])}' for w in rows),
                "# HELP graphrec_live_applied_timestamp_seconds When the worker last applied a batch.",
                "# TYPE graphrec_live_applied_timestamp_seconds gauge",
                *(
                    f'graphrec_live_applied_timestamp_seconds{{worker="{w}"}} {gauges[w, _LIVE_AT]:.3f}'
                    for w in rows
                ),
                "# HELP graphrec_live_walk_folds_total Folds of the live graph swapped in for the walks.",
                "# TYPE graphrec_live_walk_folds_total counter",
                *(
                    f'graphrec_live_walk_folds_total{{worker="{w}"}} {int(gauges[w, _WALK_FOLDS])}'
                    for w in rows
                ),
                "# HELP graphrec_live_walk_fold_seconds Time the last fold took (fold + walk graphs).",
                "# TYPE graphrec_live_walk_fold_seconds gauge",
                *(
                    f'graphrec_live_walk_fold_seconds{{worker="{w}"}} {gauges[w, _WALK_FOLD_S]:.4f}'
                    for w in rows
                ),
                "# HELP graphrec_live_walk_edges Live edges the walks step over (the last fold's).",
                "# TYPE graphrec_live_walk_edges gauge",
                *(
                    f'graphrec_live_walk_edges{{worker="{w}"}} {int(gauges[w, _WALK_FOLD_EDGES])}'
                    for w in rows
                ),
            ]
        lines += [
            "# HELP graphrec_model_generation Reload generation published by the supervisor (0 = as started).",
            "# TYPE graphrec_model_generation gauge",
            f"graphrec_model_generation {generation}",
            "# HELP graphrec_reloads_total Reloads by the supervisor, by result.",
            "# TYPE graphrec_reloads_total counter",
            f'graphrec_reloads_total{{result="ok"}} {reloads[0]}',
            f'graphrec_reloads_total{{result="error"}} {reloads[1]}',
            "# HELP graphrec_workers Worker processes up.",
            "# TYPE graphrec_workers gauge",
            f"graphrec_workers {int(alive.sum())}",
        ]
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Pure ASGI middleware: times every HTTP request and counts it by route template and status."""

    def __init__(self, app, metrics: SharedMetrics, worker: int):
        self.app, self.metrics, self.worker = app, metrics, worker

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            self.metrics.observe(
                self.worker, getattr(route, "path", None), status, time.perf_counter() - start
            )
