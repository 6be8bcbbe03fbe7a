# graphrec: `docker compose up` builds this image and runs `graphrec serve` next to Neo4j
# (see docker-compose.yml). CPU-only PyTorch keeps the image smaller.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app
COPY pyproject.toml README.md ./
COPY graph ./graph
COPY gnn ./gnn
COPY retrieval ./retrieval
COPY evaluation ./evaluation
COPY graphrec ./graphrec
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[stream]" \
    && useradd --create-home graphrec \
    && mkdir /data && chown graphrec /data

USER graphrec
EXPOSE 8080
ENTRYPOINT ["graphrec"]
CMD ["--help"]
