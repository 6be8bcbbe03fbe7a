"""Embedding models. They expose embeddings; the training loop lives in :mod:`gnn.trainer`, the losses in :mod:`gnn.losses`.

* :class:`LightGCN` (He et al., SIGIR 2020) over the joint user+tweet graph: final
  embeddings ``E = sum_l a_l Â^l E0`` with the symmetric-normalised adjacency ``Â`` built
  once and cached. Because ``Â`` is symmetric, the propagation operator ``P`` is too, so its
  backward pass is one more forward pass (:class:`Propagation`): six sparse products per
  step for three layers, instead of the autograd graph of a message-passing layer stack.
  LightGCN++'s options (Lee et al., RecSys 2024): the ego layer's share ``a_0``
  (``layer0_weight``), an asymmetric ``D^-a A D^-b`` and unit-length layer inputs; without
  the last two ``P`` stays self-adjoint, with them each layer's backward is one product with
  the cached transpose.
  :func:`spectral_init` gives the warm start (top eigenvectors of ``Â``).
* :class:`HeteroSAGE`: an inductive heterogeneous GraphSAGE (``HeteroConv`` of ``SAGEConv``)
  over users and tweets whose inputs are content features (hashed TF-IDF of tweet text)
  and structural features, plus optional ID embeddings that are dropped for unseen nodes,
  so a new tweet or user gets an embedding from its text and first few edges.

Every model has ``forward() -> (n_nodes, dim)`` node-space embeddings (users first, then
tweets) and ``config() -> dict`` of the constructor's hyper-parameters.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from graph.errors import InputError

log = logging.getLogger(__name__)


def csr_to_torch(m: sp.csr_matrix, device: torch.device | str = "cpu") -> torch.Tensor:
    """SciPy CSR -> torch sparse CSR (float32) on ``device``."""
    m = m.tocsr()
    with warnings.catch_warnings():  # "sparse CSR support is in beta" on every construction
        warnings.simplefilter("ignore", UserWarning)
        t = torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            check_invariants=False,
        )
    return t.to(device)


class Propagation:
    """The LightGCN operator ``P x = sum_l a_l Â^l x`` on a cached sparse ``Â`` (symmetric).

    Each layer is PyTorch Geometric's ``LGConv`` on the cached, already normalised ``Â`` (as a
    sparse ``adj_t``: PyG's fused sparse aggregation, no per-edge messages);
    :meth:`apply_reference` is the same sum with plain ``torch.sparse.mm``, kept to test against.
    With ``reorder`` the nodes are renumbered once by reverse Cuthill-McKee, which puts
    neighbours close together in memory: the sparse products (a gather of neighbour rows)
    run about 1.6x faster on gowalla. ``apply`` takes and returns the original order.
    """

    def __init__(
        self,
        adj: sp.csr_matrix,
        n_layers: int,
        device: torch.device | str = "cpu",
        *,
        reorder: bool = True,
        layer0_weight: float | None = None,
        normalize_inputs: bool = False,
    ):
        if adj.shape[0] != adj.shape[1]:
            raise InputError(f"adjacency must be square, got {adj.shape}")
        if n_layers < 0:
            raise InputError(f"n_layers must be >= 0, got {n_layers}")
        if layer0_weight is not None and not 0.0 <= layer0_weight <= 1.0:
            raise InputError(f"layer0_weight must be in [0, 1], got {layer0_weight}")
        self.n_layers = n_layers
        self.shape = adj.shape
        self.normalize_inputs = bool(normalize_inputs)
        adj = adj.tocsr()
        self.symmetric = abs(adj - adj.T).max() <= 1e-6 if adj.nnz else True
        self.perm = self.inv = None
        if reorder and adj.shape[0] > 1 and adj.nnz:
            from scipy.sparse.csgraph import reverse_cuthill_mckee

            perm = reverse_cuthill_mckee(adj, symmetric_mode=True).astype(np.int64)
            adj = adj[perm][:, perm].tocsr()
            self.perm = torch.from_numpy(perm).to(device)
            self.inv = torch.from_numpy(np.argsort(perm)).to(device)
        self.adj = csr_to_torch(adj, device)
        # the backward of a layer multiplies by the transpose (the same matrix when symmetric)
        self.adj_t = self.adj if self.symmetric else csr_to_torch(adj.T.tocsr(), device)
        if layer0_weight is None or n_layers == 0:  # uniform layer combination, as the paper
            self.weights = [1.0 / (n_layers + 1)] * (n_layers + 1)
        else:  # LightGCN++'s gamma: the ego layer's share, the rest split evenly
            self.weights = [float(layer0_weight)] + [(1.0 - layer0_weight) / n_layers] * n_layers
        from torch_geometric.nn import LGConv

        self.conv = LGConv(normalize=False)  # Â is normalised once, here, not per layer

    @property
    def self_adjoint(self) -> bool:
        """True when ``P`` is linear and symmetric, so its backward is one more forward pass."""
        return self.symmetric and not self.normalize_inputs

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(x, lambda h: self._conv_product(self.adj, h))

    def apply_differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` for autograd when ``P`` is not self-adjoint: each layer's backward is
        one product with the cached transpose; the input normalisation is left to autograd."""
        return self._apply(x, lambda h: _CachedSpmm.apply(h, self.adj, self.adj_t, self._conv_product))

    def _conv_product(self, m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, m)

    def apply_reference(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`apply` with ``torch.sparse.mm`` in place of PyG's layer (the reference)."""
        return self._apply(x, lambda h: torch.sparse.mm(self.adj, h))

    def _apply(self, x: torch.Tensor, layer) -> torch.Tensor:
        if self.perm is not None:
            x = x.index_select(0, self.perm)
        out = x * self.weights[0]
        h = x
        for i in range(self.n_layers):
            # LightGCN++: unit-length messages, so a node's pull does not grow with its norm
            h = layer(torch.nn.functional.normalize(h, dim=1, eps=1e-12) if self.normalize_inputs else h)
            out = out + self.weights[i + 1] * h
        if self.inv is not None:
            out = out.index_select(0, self.inv)
        return out

    def to(self, device) -> Propagation:
        same = self.adj_t is self.adj
        self.adj = self.adj.to(device)
        self.adj_t = self.adj if same else self.adj_t.to(device)
        if self.perm is not None:
            self.perm, self.inv = self.perm.to(device), self.inv.to(device)
        return self


class _Propagate(torch.autograd.Function):
    """``y = P x`` with ``dL/dx = P dL/dy`` (P is symmetric), skipping autograd's sparse transpose."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, prop: Propagation) -> torch.Tensor:  # type: ignore[override]
        ctx.prop = prop
        return prop.apply(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.prop.apply(grad.contiguous()), None


def spectral_init(
    adj: sp.csr_matrix, dim: int, *, seed: int = 0, scale: float = 0.1, tol: float = 1e-4
) -> np.ndarray:
    """Warm start: the ``dim`` top eigenvectors of ``Â``, scaled by sqrt(eigenvalue).

    For the bipartite user-tweet graph these are the top singular vectors of the normalised
    engagement matrix (the ideal low-pass filter of GF-CF), and the product of a user and a
    tweet row approximates that filter before any training. Rows are rescaled so the mean
    row norm is ``scale``.
    """
    from scipy.sparse.linalg import eigsh

    n = adj.shape[0]
    k = min(dim, n - 2)
    out = np.zeros((n, dim), np.float32)
    if k <= 0 or adj.nnz == 0:
        return out
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(n)
    vals, vecs = eigsh(adj.astype(np.float64), k=k, which="LA", v0=v0, tol=tol)
    order = np.argsort(-vals)
    vals, vecs = vals[order], vecs[:, order]
    # eigenvector signs are arbitrary; fix them so the init is a function of the graph alone
    signs = np.sign(vecs[np.abs(vecs).argmax(axis=0), np.arange(k)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    emb = vecs * np.sqrt(np.maximum(vals, 0.0))
    norm = np.sqrt((emb**2).sum(axis=1)).mean()
    out[:, :k] = emb * (scale / max(norm, 1e-12))
    return out


class LightGCN(nn.Module):
    """LightGCN over the joint graph: one embedding table for users and tweets, propagated by ``Â``.

    The adjacency is passed in (see :func:`gnn.data.joint_adjacency`) and cached as a
    torch sparse matrix; :meth:`set_adjacency` swaps it (e.g. to put validation edges back
    for the final embeddings). ``init`` is an optional ``(n_nodes, dim)`` warm start.
    """

    kind = "lightgcn"

    def __init__(
        self,
        n_users: int,
        n_tweets: int,
        adj: sp.csr_matrix,
        *,
        dim: int = 64,
        n_layers: int = 3,
        init: np.ndarray | None = None,
        seed: int = 0,
        layer0_weight: float | None = None,
        normalize_inputs: bool = False,
    ):
        super().__init__()
        n = n_users + n_tweets
        if adj.shape != (n, n):
            raise InputError(
                f"adjacency shape {adj.shape} does not match {n_users} users + {n_tweets} tweets"
            )
        if dim < 1:
            raise InputError(f"dim must be >= 1, got {dim}")
        self.n_users, self.n_tweets, self.dim, self.n_layers = n_users, n_tweets, dim, n_layers
        if init is None:
            gen = torch.Generator().manual_seed(seed)
            weight = torch.randn(n, dim, generator=gen) * 0.1
        else:
            if init.shape != (n, dim):
                raise InputError(f"init shape {init.shape} != ({n}, {dim})")
            weight = torch.from_numpy(np.ascontiguousarray(init, np.float32)).clone()
        self.embedding = nn.Parameter(weight)
        self.layer0_weight, self.normalize_inputs = layer0_weight, bool(normalize_inputs)
        self.prop = self._propagation(adj)

    def _propagation(self, adj: sp.csr_matrix) -> Propagation:
        return Propagation(
            adj,
            self.n_layers,
            self.embedding.device,
            layer0_weight=self.layer0_weight,
            normalize_inputs=self.normalize_inputs,
        )

    def config(self) -> dict:
        return {
            "n_users": self.n_users,
            "n_tweets": self.n_tweets,
            "dim": self.dim,
            "n_layers": self.n_layers,
            "layer0_weight": self.layer0_weight,
            "normalize_inputs": self.normalize_inputs,
        }

    def set_adjacency(self, adj: sp.csr_matrix) -> None:
        self.prop = self._propagation(adj)

    def _apply(self, fn, *args, **kwargs):  # keep the cached adjacency on the parameters' device
        out = super()._apply(fn, *args, **kwargs)
        self.prop.to(self.embedding.device)
        return out

    def forward(self) -> torch.Tensor:
        if self.prop.self_adjoint:
            return _Propagate.apply(self.embedding, self.prop)
        return self.prop.apply_differentiable(self.embedding)


# ---------------------------------------------------------------------------
# inductive heterogeneous GraphSAGE

#: Relations of the heterogeneous graph, as PyG edge types (reverse types let messages flow both ways).
EDGE_TYPES = [
    ("user", "engaged", "tweet"),
    ("tweet", "engaged_by", "user"),
    ("user", "follows", "user"),
    ("user", "followed_by", "user"),
    ("user", "posted", "tweet"),
    ("tweet", "posted_by", "user"),
]


class _CachedSpmm(torch.autograd.Function):
    """``y = M x`` for a sparse ``M`` whose transpose is cached: the backward is one more spmm
    (torch's own backward of a CSR product rebuilds the transpose on every call). ``product(m,
    x)`` computes the products (default ``torch.sparse.mm``; LightGCN passes PyG's ``LGConv``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, m: torch.Tensor, mt: torch.Tensor, product=None) -> torch.Tensor:  # type: ignore[override]
        ctx.mt, ctx.product = mt, product or torch.sparse.mm
        return ctx.product(m, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return ctx.product(ctx.mt, grad.contiguous()), None, None, None


def _mean_sage_conv_class():
    from torch_geometric.nn import SAGEConv

    class MeanSAGEConv(SAGEConv):
        """PyG ``SAGEConv`` (mean aggregation) fed a row-normalised sparse adjacency ``adj_t``
        (destinations x sources) that carries its transpose as ``adj_t.graphrec_t``."""

        def message_and_aggregate(self, adj_t, x):
            src = x[0] if isinstance(x, tuple) else x
            return _CachedSpmm.apply(src, adj_t, adj_t.graphrec_t)

    return MeanSAGEConv


class HeteroSAGE(nn.Module):
    """Inductive GraphSAGE on users and tweets (PyG ``HeteroConv`` of ``SAGEConv``, mean aggregation).

    Inputs per node type: a sparse content matrix (tweets: hashed TF-IDF of the text;
    users: none), dense structural features, and an ID embedding for nodes seen in
    training. ``forward(graph)`` takes a :class:`gnn.features.HeteroGraph`; its
    ``known_user`` / ``known_tweet`` index arrays say which rows of the ID tables each node
    uses (-1 for a node unseen in training, which then relies on content and edges only).
    Layers are residual (``x + sum over relations of W_rel mean(neighbours)``), initialised as
    a LightGCN-like smoother; the output is the mean of the input and every layer's output
    (as LightGCN's layer combination), users first then tweets.
    """

    kind = "sage"

    def __init__(
        self,
        n_users: int,
        n_tweets: int,
        *,
        n_text: int,
        n_user_struct: int,
        n_tweet_struct: int,
        dim: int = 64,
        n_layers: int = 2,
        id_embeddings: bool = True,
        dropout: float = 0.0,
        seed: int = 0,
    ):
        from torch_geometric.nn import HeteroConv

        super().__init__()
        torch.manual_seed(seed)
        conv_cls = _mean_sage_conv_class()
        self.n_users, self.n_tweets, self.dim, self.n_layers = n_users, n_tweets, dim, n_layers
        self.n_text, self.n_user_struct, self.n_tweet_struct = n_text, n_user_struct, n_tweet_struct
        self.id_embeddings, self.dropout = id_embeddings, dropout
        self.text_proj = nn.Linear(max(n_text, 1), dim, bias=False)
        self.user_struct = nn.Linear(n_user_struct, dim)
        self.tweet_struct = nn.Linear(n_tweet_struct, dim)
        # structural terms start at zero: they learn corrections (popularity, activity) rather
        # than add a random offset that swamps the content and ID signal
        for lin in (self.user_struct, self.tweet_struct):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        if id_embeddings:
            self.user_id = nn.Embedding(n_users, dim)
            self.tweet_id = nn.Embedding(n_tweets, dim)
            nn.init.normal_(self.user_id.weight, std=0.1)
            nn.init.normal_(self.tweet_id.weight, std=0.1)
        self.convs = nn.ModuleList(
            HeteroConv(
                {
                    et: conv_cls((dim, dim), dim, aggr="mean", root_weight=False, bias=False)
                    for et in EDGE_TYPES
                },
                aggr="sum",
            )
            for _ in range(n_layers)
        )
        # Start as a LightGCN-like smoother: each relation adds the mean of its neighbours with
        # weight 1/(relations into the node type), so the warm-started inputs are propagated,
        # not scrambled, and training learns per-relation transforms from there.
        n_in = {
            "user": sum(et[2] == "user" for et in EDGE_TYPES),
            "tweet": sum(et[2] == "tweet" for et in EDGE_TYPES),
        }
        with torch.no_grad():
            for conv in self.convs:
                for et in EDGE_TYPES:
                    lin = conv.convs[et].lin_l
                    lin.weight.copy_(torch.eye(dim) / n_in[et[2]])

    def config(self) -> dict:
        return {
            "n_users": self.n_users,
            "n_tweets": self.n_tweets,
            "n_text": self.n_text,
            "n_user_struct": self.n_user_struct,
            "n_tweet_struct": self.n_tweet_struct,
            "dim": self.dim,
            "n_layers": self.n_layers,
            "id_embeddings": self.id_embeddings,
            "dropout": self.dropout,
        }

    def _inputs(self, g) -> dict[str, torch.Tensor]:
        xu = self.user_struct(g.user_struct)
        xt = self.tweet_struct(g.tweet_struct)
        if self.n_text and g.text is not None:
            xt = xt + _CachedSpmm.apply(self.text_proj.weight.T, g.text, g.text_t)
        if self.id_embeddings:
            xu = xu + _masked_lookup(self.user_id, g.known_user)
            xt = xt + _masked_lookup(self.tweet_id, g.known_tweet)
        return {"user": xu, "tweet": xt}

    def forward(self, g) -> torch.Tensor:
        g = g.to(self.user_struct.weight.device)
        x = self._inputs(g)
        out = dict(x)
        edges = {et: adj for et, adj in g.adj.items() if adj._nnz() > 0}
        for conv in self.convs:
            h = conv(x, edges)
            # residual: a node keeps its own representation and adds its neighbourhoods'
            x = {nt: x[nt] + h[nt] if nt in h else x[nt] for nt in x}
            if self.dropout > 0:
                x = {nt: nn.functional.dropout(v, self.dropout, self.training) for nt, v in x.items()}
            out = {nt: out[nt] + x[nt] for nt in x}
        scale = 1.0 / (self.n_layers + 1)
        return torch.cat([out["user"], out["tweet"]], dim=0) * scale


def _masked_lookup(table: nn.Embedding, known: torch.Tensor) -> torch.Tensor:
    """ID embeddings for nodes with ``known >= 0``; zeros for unseen nodes."""
    mask = (known >= 0).unsqueeze(1).to(table.weight.dtype)
    return table(known.clamp(min=0)) * mask
