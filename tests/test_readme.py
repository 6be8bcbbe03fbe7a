"""The README's Python snippets run as written, against both stores (paths and the Bolt URI
pointed at this test's stores; the data is a small synthetic graph)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from graph.ingest import GraphColumns, ingest
from graph.synthetic import generate

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_the_snippets_this_test_runs():
    blocks = _python_blocks()
    assert len(blocks) == 2 and "Recommender(snap)" in blocks[0] and "store.cypher" in blocks[1]


@pytest.mark.neo4j
@pytest.mark.parametrize("which", ["local", "neo4j"])
def test_readme_python_snippets_run(which, request, tmp_path, monkeypatch):
    store = request.getfixturevalue(f"{which}_store")
    ingest(store, GraphColumns.from_synthetic(generate(300, seed=4)), progress=False)
    target = str(tmp_path / "store") if which == "local" else request.getfixturevalue("neo4j_uri")
    if which == "local":
        store.close()  # the snippet opens it again
    monkeypatch.chdir(tmp_path)  # the snippets write under .graphrec/
    main, cypher = _python_blocks()
    main = main.replace('open_store(".graphrec/flickr")', f"open_store({target!r})")
    exec(compile(main, "README.md (Python API)", "exec"), {})
    assert (tmp_path / ".graphrec" / "flickr-model" / "model.pkl").is_file()
    if which == "neo4j":  # Cypher exploration is Neo4j-only, as the README says
        uri = request.getfixturevalue("neo4j_uri")
        exec(compile(cypher.replace("bolt://127.0.0.1:7687", uri), "README.md (Cypher)", "exec"), {})
