"""Sampling primitives of the walk kernels (:mod:`graph.walk_kernels`): the random stream,
software prefetch, drawing one neighbour (uniform, or weighted through row-local alias
tables), and the kernel that builds those alias tables.

Internal to :mod:`graph.walks`, which describes the conventions (a splitmix64 stream per
(seed, query node, walker), the alias-table layout). Also :func:`_share_cache_stamp`,
which keeps numba's on-disk cache of the three walk modules consistent.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from graph.kernels import TwinKernel

# splitmix64 constants (Steele, Lea & Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53


# ---------------------------------------------------------------------------
# random numbers


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def _seed_state(seed, a, b):
    """Initial state of the stream for (seed, a, b); all non-negative integers."""
    s = _mix(np.uint64(seed) + _GOLDEN)
    s = _mix((s ^ np.uint64(a)) + _GOLDEN)
    return _mix((s ^ np.uint64(b)) + _GOLDEN)


@njit(inline="always", cache=True)
def _next(state):
    """Advance the stream: (new state, uniform float64 in [0, 1) with 53 random bits)."""
    state = state + _GOLDEN
    z = _mix(state)
    return state, np.float64(z >> _S11) * _INV53


# ---------------------------------------------------------------------------
# software prefetch: walkers are advanced in lockstep phases, and each phase
# prefetches what the walker's next phase will read, so cache misses of different
# walkers overlap instead of stalling one after the other.


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to load ``arr[idx]`` into cache (no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = builder.gep(ary.data, [context.cast(builder, args[1], idxty, types.intp)])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------
# sampling one neighbour


@njit(inline="always", cache=True)
def _first_above(cdf, lo, hi, target):
    """First j in [lo, hi) with cdf[j] > target (hi if none); cdf non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always", cache=True)
def _first_at_least(cdf, lo, hi, target):
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always", cache=True)
def _sample_cdf(cdf, start, end, u):
    """Index in [start, end) drawn with probability proportional to the weights whose
    running sum is ``cdf[start:end]``; -1 when the row is empty or has no weight."""
    if end <= start:
        return -1
    total = cdf[end - 1]
    if not total > 0.0:
        return -1
    j = _first_above(cdf, start, end, u * total)
    if j == end:  # u * total rounded up to total
        j = _first_at_least(cdf, start, end, total)
    return j


# Weighted rows are sampled with row-local alias tables (Walker / Vose): per edge slot
# j a probability ``prob[j]`` (float32) and an alias ``alias[j]`` (int32, row-local
# offset; -1 in rows whose weights are all zero). A draw u in [0, 1) picks slot
# off = floor(u * deg) and keeps it when the fractional part of u * deg is below
# prob[j], else takes its alias: O(1), one select, no search. An empty ``prob`` array
# means uniform sampling.


@njit(inline="always", cache=True)
def _slot(start, end, u):
    """Slot position and the remaining uniform fraction for a draw ``u`` in a row."""
    deg = end - start
    f = u * deg
    off = np.int64(f)
    if off >= deg:
        off = deg - 1
    return start + off, f - off


@njit(inline="always", cache=True)
def _resolve(prob, alias, start, j, frac):
    """Edge position of slot ``j`` after the alias coin (-1 in an all-zero-weight row)."""
    if frac < prob[j]:
        return j
    a = alias[j]
    return np.int64(-1) if a < 0 else start + a


@njit(inline="always", cache=True)
def _choose(prob, alias, start, end, u):
    """Edge position in [start, end) drawn with ``u``; -1 if the row has no (weighted) edge."""
    if end <= start:
        return np.int64(-1)
    j, frac = _slot(start, end, u)
    if prob.shape[0] == 0:
        return j
    return _resolve(prob, alias, start, j, frac)


@njit(inline="always", cache=True)
def _pick(indptr, indices, prob, alias, node, u):
    """A neighbour of ``node`` (uniform when ``prob`` is empty, else weighted); -1 at a dead end."""
    j = _choose(prob, alias, indptr[node], indptr[node + 1], u)
    if j < 0:
        return np.int64(-1)
    return np.int64(indices[j])


@njit(inline="always", cache=True)
def _can_leave(indptr, prob, alias, node):
    """True when a walk at ``node`` has an edge to follow."""
    start = indptr[node]
    if indptr[node + 1] <= start:
        return False
    if prob.shape[0] == 0:
        return True
    return prob[start] > 0.0 or alias[start] >= 0


@TwinKernel
def _alias_kernel(indptr, weights, prob, alias):
    n = indptr.shape[0] - 1
    for r in prange(n):
        start = indptr[r]
        deg = indptr[r + 1] - start
        if deg == 0:
            continue
        total = 0.0
        best = 0
        for i in range(deg):
            total += weights[start + i]
            if weights[start + i] > weights[start + best]:
                best = i
        if not total > 0.0:
            for i in range(deg):
                prob[start + i] = 0.0
                alias[start + i] = -1
            continue
        p = np.empty(deg, dtype=np.float64)
        small = np.empty(deg, dtype=np.int64)
        large = np.empty(deg, dtype=np.int64)
        n_small = 0
        n_large = 0
        for i in range(deg):
            p[i] = weights[start + i] * deg / total
            if p[i] < 1.0:
                small[n_small] = i
                n_small += 1
            else:
                large[n_large] = i
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            sm = small[n_small]
            lg = large[n_large - 1]
            prob[start + sm] = p[sm]
            alias[start + sm] = lg
            p[lg] = (p[lg] + p[sm]) - 1.0
            if p[lg] < 1.0:
                n_large -= 1
                small[n_small] = lg
                n_small += 1
        for i in range(n_large):
            prob[start + large[i]] = 1.0
            alias[start + large[i]] = large[i]
        for i in range(n_small):  # rounding leftovers: keep them, unless weightless
            sm = small[i]
            if weights[start + sm] > 0.0:
                prob[start + sm] = 1.0
                alias[start + sm] = sm
            else:
                prob[start + sm] = 0.0
                alias[start + sm] = best


# ---------------------------------------------------------------------------
# numba's on-disk cache across the walk modules

#: The modules whose numba functions compile into one another (kernels inline the
#: primitives and the top-k code, which in turn compiles the kernels' score functions).
_WALK_NUMBA_FILES = ("walk_primitives.py", "walk_topk.py", "walk_kernels.py")


def _share_cache_stamp(namespace: dict) -> None:
    """Key the cached machine code of the numba functions defined in ``namespace`` (a
    walk module's globals) on the source of all three walk modules.

    numba keys a function's cache entries on its own file only, so a kernel cached before
    an edit of a function it inlines from another file would otherwise be loaded stale.
    Any edit of one of the files now recompiles all of them, as when they were one file.
    Does nothing where numba's cache is laid out otherwise, or the sources are missing.
    """
    here = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in _WALK_NUMBA_FILES:
        path = here / name
        if not path.is_file():
            return
        digest.update(path.read_bytes())
    stamp = digest.hexdigest()
    for obj in list(namespace.values()):
        for dispatcher in (obj.parallel, obj.serial) if isinstance(obj, TwinKernel) else (obj,):
            if getattr(getattr(dispatcher, "py_func", None), "__module__", None) != namespace["__name__"]:
                continue  # imported from another module, which stamps its own
            cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
            if cache_file is not None and hasattr(cache_file, "_source_stamp"):
                cache_file._source_stamp = (cache_file._source_stamp, stamp)


_share_cache_stamp(globals())
