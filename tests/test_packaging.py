"""The installed package is self-contained: a wheel (a non-editable install) carries what the
code reads at run time, and no package module reaches into the repository's ``scripts/``."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("graph", "gnn", "retrieval", "evaluation", "graphrec")
LAUNCHER_FILES = (
    "graph/neo4j_launcher/Launcher.java",
    "graph/neo4j_launcher/pom.xml",
    "graph/kafka_launcher/Launcher.java",
    "graph/kafka_launcher/pom.xml",
    "graph/neo4j_plugin/pom.xml",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "graph/neo4j_plugin/src").rglob("*.java"))),
)


def _build_wheel(tmp_path: Path) -> Path:
    """Build the project's wheel from a copy of the tree (keeps build/ and *.egg-info out of it)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "target", "*.egg-info")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, src / pkg, ignore=ignore)
    dist = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
    result = subprocess.run(
        [*cmd, "-q", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list(dist.glob("graphrec-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_ships_the_neo4j_launcher_and_finds_it_when_installed(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in LAUNCHER_FILES:
            assert name in names, f"{name} is not in {wheel.name}"
            assert zf.read(name) == (ROOT / name).read_bytes()
        assert not any(n.startswith("scripts/") for n in names)
        site = tmp_path / "site"
        zf.extractall(site)  # what installing a pure-Python wheel amounts to

    # A fresh interpreter that sees only the installed copy: -S skips site-packages (and with it
    # the editable install of this checkout), and the working directory is outside the repository.
    code = (
        "import json, graph.neo4j_local as m\n"
        "print(json.dumps({'module': m.__file__, 'launcher': str(m.LAUNCHER_DIR), "
        "'plugin': str(m.PLUGIN_DIR), 'plugin_sha': m._plugin_sha(), 'version': m.neo4j_version()}))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GRAPHREC_NEO4J_LAUNCHER_DIR", "GRAPHREC_NEO4J_PLUGIN_SRC")
    }
    env["PYTHONPATH"] = str(site)
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert Path(found["module"]).resolve().is_relative_to(site.resolve())
    launcher = Path(found["launcher"])
    assert launcher.resolve().is_relative_to(site.resolve()), launcher
    assert (launcher / "Launcher.java").is_file() and (launcher / "pom.xml").is_file()
    assert re.fullmatch(r"5\.26\.\d+", found["version"]), found["version"]
    plugin = Path(found["plugin"])  # graphrec's Neo4j plugin, which provision() compiles
    assert plugin.resolve().is_relative_to(site.resolve()), plugin
    assert (plugin / "pom.xml").is_file() and found["plugin_sha"]


# A path-like string literal (no whitespace) naming the scripts directory: "scripts",
# "scripts/x", "../scripts", "a/scripts/b". Messages that tell a user to run a script (they
# contain spaces) are fine; code that builds a path into scripts/ is not.
_SCRIPTS_PATH = re.compile(r"(^|[/\\])scripts([/\\]|$)")


def _scripts_path_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if text and not re.search(r"\s", text) and _SCRIPTS_PATH.search(text):
                hits.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    return hits


def test_no_package_module_reaches_into_scripts():
    hits = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                hits += _scripts_path_literals(path)
    assert not hits, (
        "package code builds paths into scripts/ (ship the files as package data):\n" + "\n".join(hits)
    )


def test_scripts_path_detector():
    assert _SCRIPTS_PATH.search("scripts")
    assert _SCRIPTS_PATH.search("scripts/neo4j_launcher")
    assert _SCRIPTS_PATH.search("../scripts/x.py")
    assert not _SCRIPTS_PATH.search("transcripts")
    assert not _SCRIPTS_PATH.search("my_scripts_dir")
