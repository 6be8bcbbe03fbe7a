"""Graph storage, ingest, snapshots and walk kernels."""
