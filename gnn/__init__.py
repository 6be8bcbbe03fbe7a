"""Graph embeddings on PyTorch Geometric: LightGCN and an inductive heterogeneous GraphSAGE,
a trainer separate from the models, versioned artifacts and the batch embedding job.

Modules: :mod:`gnn.models`, :mod:`gnn.features`, :mod:`gnn.data`, :mod:`gnn.trainer`,
:mod:`gnn.losses`, :mod:`gnn.negatives`, :mod:`gnn.checkpoints`,
:mod:`gnn.pipeline`, :mod:`gnn.artifacts`, :mod:`gnn.job`, :mod:`gnn.cli` (the evaluation adapters live in :mod:`evaluation.embedding_methods`).
"""
