"""Initial bulk load of a graph into a stopped, empty local Neo4j with ``neo4j-admin database import``.

Transactional ``UNWIND`` batches (:mod:`graph.ingest`) are the way to add to a live graph; on
2 cores the server commits about 20-40 thousand relationships per second that way. For the
first load of a large graph Neo4j's own answer is its offline import tool, which writes the
store files directly. :func:`bulk_import` prepares the same graph the batched ingest would
write (duplicates collapsed with the same first-write-wins rules), as CSV files, and runs the
import tool from the provisioned jars (:mod:`graph.neo4j_local`) into a Neo4j home that
:meth:`graph.neo4j_local.LocalNeo4j.start` then serves. Constraints and indexes are created
when the store is first opened (:meth:`graph.neo4j_store.Neo4jStore.ensure_schema`).

Nothing broken is left behind: the columns are validated (:func:`graph.validation.validate_columns`,
the bounds the event parser applies) before the tool starts, and the tool writes into a staging
home inside ``home`` whose database directories are renamed into place only when it succeeded
(the tool itself leaves unusable store files behind when it fails).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from graph.errors import InputError, StoreUnavailableError
from graph.ingest import GraphColumns
from graph.schema import KIND_NAMES, KIND_REL_TYPES
from graph.validation import validate_columns

log = logging.getLogger(__name__)


def _first_rows(keys: list[np.ndarray]) -> np.ndarray:
    """Indices of the first occurrence of each distinct key tuple, in input order."""
    if not len(keys[0]):
        return np.zeros(0, np.int64)
    # np.lexsort's last key is the primary one; the row number last-ranked keeps input order
    order = np.lexsort([np.arange(len(keys[0]))] + keys[::-1])
    stacked = [k[order] for k in keys]
    new = np.ones(len(order), bool)
    new[1:] = np.any([s[1:] != s[:-1] for s in stacked], axis=0)
    return np.sort(order[new])


def _first_valid(ids: np.ndarray, values: np.ndarray, valid: np.ndarray, universe: np.ndarray, fill):
    """Per id in ``universe`` (sorted), the value of the id's first row where ``valid``; else ``fill``."""
    out = np.full(len(universe), fill, dtype=values.dtype)
    sel = np.flatnonzero(valid)
    if len(sel):
        first = sel[_first_rows([ids[sel]])]
        out[np.searchsorted(universe, ids[first])] = values[first]
    return out


def _write_ints(path: Path, header: str, columns: list[np.ndarray]) -> int:
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + "\n")
        lists = [c.tolist() for c in columns]
        for row in zip(*lists):
            f.write(",".join(map(repr, row)) + "\n")
    return len(columns[0])


def prepare_csv(cols: GraphColumns, out_dir: str | os.PathLike) -> dict[str, list]:
    """Write ``cols`` as import-tool CSV files under ``out_dir``; returns {"nodes": [(label, path)],
    "relationships": [(type, path)], "multiline": [paths whose fields span lines]}.

    Same graph as the batched ingest: one node per id, one FOLLOWS per (follower, followee),
    one engagement per (user, tweet, kind), the first row winning for timestamps and weights;
    a tweet's author, creation time and text are the first known ones.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    authors = np.asarray(cols.tweet_authors, np.int64)
    users = np.unique(
        np.concatenate(
            [
                np.asarray(cols.users, np.int64),
                np.asarray(cols.follow_src, np.int64),
                np.asarray(cols.follow_dst, np.int64),
                np.asarray(cols.eng_user, np.int64),
                authors[authors >= 0],
            ]
        )
    )
    t_ids = np.asarray(cols.tweet_ids, np.int64)
    tweets = np.unique(np.concatenate([t_ids, np.asarray(cols.eng_tweet, np.int64)]))
    created = _first_valid(
        t_ids, np.asarray(cols.tweet_created, np.int64), np.asarray(cols.tweet_created) != 0, tweets, 0
    )
    author = _first_valid(t_ids, authors, authors >= 0, tweets, -1)
    texts = list(cols.tweet_texts) if cols.tweet_texts else [None] * len(t_ids)
    has_text = np.array([bool(t) for t in texts], bool) if len(texts) else np.zeros(0, bool)
    text_row = _first_valid(t_ids, np.arange(len(t_ids)), has_text, tweets, -1)

    files: dict[str, list] = {"nodes": [], "relationships": [], "multiline": []}
    _write_ints(out / "users.csv", "id:ID(User)", [users])
    files["nodes"].append(("User", out / "users.csv"))
    with open(out / "tweets.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id:ID(Tweet)", "created_at:long", "text"])
        for tid, c, tr in zip(tweets.tolist(), created.tolist(), text_row.tolist()):
            w.writerow([tid, c if c else "", texts[tr] if tr >= 0 else ""])
    files["nodes"].append(("Tweet", out / "tweets.csv"))
    if any(t and ("\n" in t or "\r" in t) for t in texts):
        files["multiline"].append(out / "tweets.csv")  # the tool must be told (and then reads it slower)

    has_author = author >= 0
    _write_ints(
        out / "posted.csv", ":START_ID(User),:END_ID(Tweet)", [author[has_author], tweets[has_author]]
    )
    files["relationships"].append(("POSTED", out / "posted.csv"))

    src, dst = np.asarray(cols.follow_src, np.int64), np.asarray(cols.follow_dst, np.int64)
    keep = _first_rows([src, dst])
    _write_ints(
        out / "follows.csv",
        ":START_ID(User),:END_ID(User),ts:long",
        [src[keep], dst[keep], np.asarray(cols.follow_ts, np.int64)[keep]],
    )
    files["relationships"].append(("FOLLOWS", out / "follows.csv"))

    eu, et = np.asarray(cols.eng_user, np.int64), np.asarray(cols.eng_tweet, np.int64)
    ek = np.asarray(cols.eng_kind, np.int64)
    keep = _first_rows([eu, et, ek])
    ts, wt = np.asarray(cols.eng_ts, np.int64)[keep], np.asarray(cols.eng_weight, np.float32)[keep]
    eu, et, ek = eu[keep], et[keep], ek[keep]
    for code in np.unique(ek).tolist():
        rel = KIND_REL_TYPES[KIND_NAMES[code]]
        sel = ek == code
        path = out / f"engaged_{rel.lower()}.csv"
        _write_ints(
            path,
            ":START_ID(User),:END_ID(Tweet),ts:long,weight:double",
            [eu[sel], et[sel], ts[sel], wt[sel].astype(np.float64)],
        )
        files["relationships"].append((rel, path))
    return files


def bulk_import(
    cols: GraphColumns,
    home: str | os.PathLike,
    *,
    cache_dir: str | os.PathLike | None = None,
    database: str = "neo4j",
    threads: int | None = None,
    heap: str = "1g",
    schema: bool = True,
) -> dict:
    """Import ``cols`` into the (new, stopped) Neo4j home ``home``; returns timings.

    With ``schema`` (the default) the server is then started once on ``home`` to create the
    constraints and indexes (:data:`graph.cypher.SCHEMA`) and stopped, so the home is complete.

    Fails with :class:`InputError` when ``home`` already holds a database (the import tool only
    creates new stores: add to an existing graph with :func:`graph.ingest.ingest`), or when a
    value is out of bounds (:func:`graph.validation.validate_columns`), before the tool starts.
    If the tool fails, it leaves no database in ``home`` (see the module doc).
    """
    from graph.neo4j_local import _read_stamp, provision

    validate_columns(cols)
    home = Path(home).expanduser().resolve()
    for kind in ("databases", "transactions"):
        if (home / "data" / kind / database).exists():
            raise InputError(
                f"{home} already has a database {database!r} (data/{kind}/{database}): the bulk import only "
                "creates new stores; use `graphrec ingest` (batched transactions) to add to an existing graph, "
                "or pick an empty directory"
            )
    target = provision(cache_dir)
    java = (_read_stamp(target) or {}).get("java", "java")
    (home / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    # The tool writes into a staging home next to the final one (same file system: the renames
    # below are atomic); a failed import is deleted with it and leaves ``home`` as it was.
    staging = Path(tempfile.mkdtemp(prefix=".graphrec-import-", dir=home))
    try:
        (staging / "conf").mkdir()
        (staging / "conf" / "neo4j.conf").touch()
        with tempfile.TemporaryDirectory(prefix="graphrec-import-") as tmp:
            files = prepare_csv(cols, tmp)
            csv_s = time.perf_counter() - t0
            cmd = _import_command(
                java, target, database, files, home / "logs" / "import.report", heap, threads
            )
            env = {**os.environ, "NEO4J_HOME": str(staging), "NEO4J_CONF": str(staging / "conf")}
            log.info("bulk import into %s: %s", home, " ".join(cmd[5:9]))
            t1 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            import_s = time.perf_counter() - t1
        (home / "logs" / "import.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise StoreUnavailableError(
                f"neo4j-admin import into {home} failed (exit {proc.returncode}; nothing was written to "
                f"{home / 'data'}); log {home / 'logs' / 'import.log'}:\n{tail}"
            )
        _move_database(staging / "data", home / "data", database)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    (home / "conf").mkdir(exist_ok=True)
    (home / "conf" / "neo4j.conf").touch()
    result = {"csv_s": csv_s, "import_s": import_s, "total_s": time.perf_counter() - t0, "home": str(home)}
    if schema:
        from graph.neo4j_local import LocalNeo4j
        from graph.neo4j_store import Neo4jStore

        t2 = time.perf_counter()
        with LocalNeo4j(cache_dir).start(data_dir=home) as server:
            store = Neo4jStore.connect(server.uri)
            try:
                store.ensure_schema()
                store.cypher("CALL db.awaitIndexes(300)", write=True)
            finally:
                store.close()
        result["schema_s"] = time.perf_counter() - t2
    return result


def _import_command(
    java: str, target: Path, database: str, files: dict, report: Path, heap: str, threads: int | None
) -> list[str]:
    """The ``neo4j-admin database import full`` command line for the files :func:`prepare_csv` wrote."""
    cmd = [
        java,
        f"-Xmx{heap}",
        "-cp",
        str(target / "lib" / "*"),
        "org.neo4j.cli.AdminTool",
        "database",
        "import",
        "full",
        database,  # before the file options: each of those takes a variable number of files
        "--id-type=integer",
        f"--report-file={report}",
        *(f"--nodes={label}={path}" for label, path in files["nodes"]),
        *(f"--relationships={rel}={path}" for rel, path in files["relationships"]),
    ]
    if files["multiline"]:
        # v2: only the files named are parsed the slow, newline-aware way
        cmd += [
            "--multiline-fields-format=v2",
            "--multiline-fields=" + ",".join(map(str, files["multiline"])),
        ]
    if threads:
        cmd.append(f"--threads={int(threads)}")
    return cmd


def _move_database(src: Path, dst: Path, database: str) -> None:
    """Rename the database's directories (``data/<kind>/<database>``) from ``src`` into ``dst``,
    the store files last: a ``dst`` without them has no database, whatever else it holds."""
    kinds = sorted(p.name for p in src.iterdir() if (p / database).exists())
    if "databases" not in kinds:
        raise StoreUnavailableError(
            f"neo4j-admin import reported success but wrote no {src / 'databases' / database}"
        )
    moved: list[Path] = []
    try:
        for kind in [k for k in kinds if k != "databases"] + ["databases"]:
            (dst / kind).mkdir(parents=True, exist_ok=True)
            os.rename(src / kind / database, dst / kind / database)
            moved.append(dst / kind / database)
    except OSError as exc:
        for path in moved:
            shutil.rmtree(path, ignore_errors=True)
        raise StoreUnavailableError(f"cannot move the imported database into {dst}: {exc}") from exc
