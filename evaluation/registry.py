"""Every method the project has, by name, imported lazily.

A method is a class following the method contract (docs/CONTRIBUTING-helpers.md): ``name``,
``tasks``, ``__init__(**params)`` with defaults (``seed`` among them), ``fit(train, task)`` and
``recommend(users, k) -> (ids, scores)``. Optional: ``param_grid`` / ``grid(train, task)`` for
``--tune``, ``timings`` (seconds spent scoring), ``max_eval_users`` (the runner then evaluates a
seeded sample of users). New methods plug in by adding one line here; the runner never changes.
"""

from __future__ import annotations

import importlib

from graph.errors import InputError

#: method name -> "module:ClassName"
METHODS: dict[str, str] = {
    # baselines (evaluation/baselines.py)
    "popular": "evaluation.baselines:PopularMethod",
    "itemknn": "evaluation.baselines:ItemKNNMethod",
    "userknn": "evaluation.baselines:UserKNNMethod",
    "als": "evaluation.baselines:ALSMethod",
    "bpr": "evaluation.baselines:BPRMethod",
    "common-neighbors": "evaluation.baselines:CommonNeighborsMethod",
    "adamic-adar": "evaluation.baselines:AdamicAdarMethod",
    "ppr-networkx": "evaluation.baselines:PPRNetworkxMethod",
    # graph walks, each a catalogue source alone (evaluation/adapters.py)
    "pixie": "evaluation.adapters:PixieMethod",
    "ppr": "evaluation.adapters:PPRMethod",
    "salsa": "evaluation.adapters:SalsaMethod",
    "fof": "evaluation.adapters:FriendsOfFriendsMethod",
    "spectral": "evaluation.adapters:SpectralMethod",
    # embeddings (evaluation/embedding_methods.py)
    "lightgcn": "evaluation.embedding_methods:LightGCNMethod",
    "sage": "evaluation.embedding_methods:SageMethod",
    # the served recommender: as configured, or tuned on a validation carve first
    "recommender": "evaluation.adapters:RecommenderMethod",
    "hybrid": "evaluation.adapters:HybridMethod",
}

#: methods the baseline script runs, per task
BASELINES: dict[str, tuple[str, ...]] = {
    "tweets": ("popular", "itemknn", "userknn", "als", "bpr"),
    "follows": (
        "popular",
        "itemknn",
        "userknn",
        "als",
        "bpr",
        "common-neighbors",
        "adamic-adar",
        "ppr-networkx",
    ),
}


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> type:
    """The method class registered as ``name``; :class:`InputError` if unknown or not importable."""
    if name not in METHODS:
        raise InputError(
            f"unknown method {name!r}; available methods: {', '.join(METHODS)} "
            "(new methods are registered in evaluation/registry.py)"
        )
    target = METHODS[name]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only "the module itself (or its package) is not there yet" gets the friendly message;
        # a missing dependency inside an existing module is reported as such.
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise InputError(
                f"method {name!r} is registered as {target}, but module {module_name} is not in this "
                f"checkout yet; pick another method ({', '.join(available_methods())})"
            ) from None
        raise InputError(
            f"method {name!r} ({target}) needs the package {missing!r}, which is not installed"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise InputError(
            f"method {name!r}: module {module_name} has no class {class_name} (see evaluation/registry.py)"
        )
    return cls


def available_methods() -> list[str]:
    """Names whose module imports in this checkout (imports every module once)."""
    out = []
    for name, target in METHODS.items():
        try:
            importlib.import_module(target.partition(":")[0])
        except ImportError:
            continue
        out.append(name)
    return out
