"""``graphrec serve``: the recommender over HTTP (FastAPI on uvicorn, pre-fork workers).

One job per module:

* :mod:`~graphrec.serve.settings` what a server is started with (paths, limits, admin token);
* :mod:`~graphrec.serve.model` loading a fitted recommender from those paths;
* :mod:`~graphrec.serve.reload` the reload channel shared by the supervisor and its workers;
* :mod:`~graphrec.serve.runtime` one worker's model, request executor, deadline and reloads;
* :mod:`~graphrec.serve.app` the ASGI app (routes, request and response shapes);
* :mod:`~graphrec.serve.errors` the JSON error body and the exception handlers;
* :mod:`~graphrec.serve.metrics` request counters and latency histograms in shared memory,
  rendered in the Prometheus text format;
* :mod:`~graphrec.serve.workers` the supervisor: binds the socket, loads the recommender once,
  forks the workers (which share the fitted arrays copy-on-write) and refits on reload.
"""
