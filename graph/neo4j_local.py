"""A real Neo4j Community 5.26 server on machines without Docker.

The server is Neo4j's embedded DBMS (``org.neo4j:neo4j`` from Maven Central) with the Bolt
connector enabled on ``127.0.0.1``, started by a small Java launcher
(``graph/neo4j_launcher/Launcher.java`` and its ``pom.xml``, package data of ``graph``, so
installed copies carry them). It is the same kernel, Cypher runtime and Bolt server as the
Neo4j Community server, minus the HTTP API and the browser.

* :func:`provision` downloads the jars once (Maven, into ``~/.m2``), copies them into a cache
  directory (``~/.cache/graphrec/neo4j-<version>/``) and compiles the launcher. Later calls
  return at once; with ``~/.m2`` populated it works offline.
* :class:`LocalNeo4j` starts a server (a fresh temporary store unless ``data_dir`` is given),
  waits until Bolt answers and stops it again. The first server started from a cache records
  a class-data-sharing archive when it exits (``neo4j.jsa``, JDK dynamic AppCDS); later
  servers map Neo4j's classes from it instead of loading them from 200 jars, which cuts
  about a third off start-up.
* :func:`neo4j_uri_from_env` returns ``NEO4J_URI``: when it is set (e.g. a ``docker compose``
  server), callers use that server instead of starting one.
* :func:`main` is the command line (``scripts/neo4j_local.py``, ``python -m graph.neo4j_local``):
  ``provision``, ``run -- CMD``, and background servers keyed by data directory (``start``,
  ``status``, ``stop``).

Authentication is on: user ``neo4j``, with a password generated once per user account into
an owner-only file (:mod:`graph.neo4j_auth`; ``~/.config/graphrec/neo4j-password``) and set on
each store before it first accepts connections. :class:`~graph.neo4j_store.Neo4jStore` finds
it by itself for localhost URIs; ``run`` exports it to its command as ``NEO4J_USER`` /
``NEO4J_PASSWORD``; ``LocalNeo4j(...).start().auth`` holds it. ``start(auth=False)`` (CLI
``--no-auth``) turns authentication off, with a warning.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from graph.errors import GraphRecError, InputError, StoreAuthError, StoreUnavailableError
from graph.neo4j_auth import (
    DEFAULT_USER,
    Credentials,
    ensure_local_password,
    forget_server,
    read_local_password,
    remember_server,
)

log = logging.getLogger(__name__)

# The launcher's sources ship inside the package (package data of ``graph``), so an installed
# copy finds them next to this module; GRAPHREC_NEO4J_LAUNCHER_DIR points elsewhere (development).
LAUNCHER_DIR = Path(
    os.environ.get("GRAPHREC_NEO4J_LAUNCHER_DIR") or Path(__file__).resolve().parent / "neo4j_launcher"
)
MAIN_CLASS = "io.graphrec.neo4j.Launcher"
# graphrec's own Neo4j plugin (server-side procedures, graph/neo4j_plugin/): also package data,
# built by provision() into <cache>/neo4j-<version>/plugins/ and loaded by every local server.
PLUGIN_DIR = Path(
    os.environ.get("GRAPHREC_NEO4J_PLUGIN_SRC") or Path(__file__).resolve().parent / "neo4j_plugin"
)
PLUGIN_JAR = "graphrec-neo4j-plugin.jar"
#: "0" starts local servers without graphrec's plugin (a stock server, as a managed Neo4j is).
PLUGIN_ENV = "GRAPHREC_NEO4J_PLUGIN"
READY_PREFIX = "NEO4J_READY "
FAILED_PREFIX = "NEO4J_FAILED "
STAMP_NAME = "provisioned.json"
#: neo4j.conf settings every local server starts with (a ``config`` passed to ``start`` may
#: override them): Cypher cannot read local files or fetch URLs (LOAD CSV), and no
#: transaction runs longer than 5 minutes, however it was started.
HARDENED_SETTINGS = {
    "dbms.security.allow_csv_import_from_file_urls": "false",
    "internal.dbms.cypher_ip_blocklist": "0.0.0.0/0,::/0",
    "db.transaction.timeout": "300s",
}
STAMP_FORMAT = 3  # bump when provision() lays out the cache differently
CDS_ARCHIVE = "neo4j.jsa"
# Java versions Neo4j 5.26 supports; others are tried only when nothing supported is found.
SUPPORTED_JAVA = (17, 21)
_SIZE_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")

# What Neo4j's own server script passes to the JVM (conf/neo4j.conf, server.jvm.additional),
# minus -XX:+AlwaysPreTouch (it would touch the whole heap before start-up) and the
# profiling-only flags. The --add-opens give Netty and the page cache the NIO internals they
# use; without java.nio, vector index population can stall.
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Djdk.tls.ephemeralDHKeySize=2048",
    "-Djdk.tls.rejectClientInitiatedRenegotiation=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dlog4j.layout.jsonTemplate.maxStringLength=32768",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--enable-native-access=ALL-UNNAMED",
)


def neo4j_uri_from_env() -> str | None:
    """The Neo4j server to use instead of a local one (``NEO4J_URI``), or None."""
    return os.environ.get("NEO4J_URI") or None


def default_cache_root() -> Path:
    """``$GRAPHREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphrec``, else ``~/.cache/graphrec``."""
    if os.environ.get("GRAPHREC_CACHE_DIR"):
        return Path(os.environ["GRAPHREC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphrec"


def _pom_facts() -> tuple[str, str]:
    """(Neo4j version, maven-dependency-plugin version), read from the launcher's pom.xml."""
    pom = LAUNCHER_DIR / "pom.xml"
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise StoreUnavailableError(f"cannot read the Neo4j launcher's {pom}: {exc}") from exc
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = root.findtext("m:properties/m:neo4j.version", namespaces=ns)
    plugin = None
    for p in root.iterfind(".//m:plugin", ns):
        if p.findtext("m:artifactId", namespaces=ns) == "maven-dependency-plugin":
            plugin = p.findtext("m:version", namespaces=ns)
    if not version or not plugin:
        raise StoreUnavailableError(f"{pom}: neo4j.version or the maven-dependency-plugin version is missing")
    return version.strip(), plugin.strip()


def neo4j_version() -> str:
    """The Neo4j version the launcher is built against (from its pom.xml)."""
    return _pom_facts()[0]


# -- Java ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Java:
    java: Path
    javac: Path
    jar: Path
    major: int


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"java\.specification\.version = (\d+)", out)
    return int(m.group(1)) if m else None


def _java_candidates() -> Iterator[Path]:
    """JDK homes in order of preference: explicit settings, PATH, then /usr/lib/jvm."""
    for var in ("GRAPHREC_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            yield Path(os.environ[var])
    on_path = shutil.which("javac")
    if on_path:
        yield Path(on_path).resolve().parents[1]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        yield from sorted(p for p in jvm.iterdir() if p.is_dir() and not p.is_symlink())


def find_java() -> _Java:
    """A JDK (java, javac and jar) for the launcher, preferring the versions Neo4j 5.26 supports."""
    if os.environ.get("GRAPHREC_JAVA_HOME"):
        home = Path(os.environ["GRAPHREC_JAVA_HOME"])
        found = _jdk_at(home)
        if found is None:
            raise StoreUnavailableError(
                f"GRAPHREC_JAVA_HOME={home} is not a JDK (needs bin/java, bin/javac, bin/jar)"
            )
        return found
    fallback = None
    seen = set()
    for home in _java_candidates():
        key = home.resolve()
        if key in seen:
            continue
        seen.add(key)
        found = _jdk_at(home)
        if found is None:
            continue
        if found.major in SUPPORTED_JAVA:
            return found
        if found.major > 17 and fallback is None:
            fallback = found
    if fallback is not None:
        log.warning(
            "no Java 17 or 21 JDK found; trying Java %d (Neo4j 5.26 does not support it)", fallback.major
        )
        return fallback
    raise StoreUnavailableError(
        "no JDK 17 or 21 found (needs java, javac and jar; looked at GRAPHREC_JAVA_HOME, JAVA_HOME, PATH and "
        "/usr/lib/jvm). Install OpenJDK 17, or set NEO4J_URI to use an existing Neo4j server."
    )


def _jdk_at(home: Path) -> _Java | None:
    java, javac, jar = (home / "bin" / n for n in ("java", "javac", "jar"))
    if not (java.is_file() and javac.is_file() and jar.is_file()):
        return None
    major = _java_major(java)
    return None if major is None else _Java(java, javac, jar, major)


# -- provisioning ----------------------------------------------------------------------------


def _sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _read_stamp(target: Path) -> dict | None:
    try:
        return json.loads((target / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _stamp_is_current(stamp: dict | None, pom_sha: str, launcher_sha: str) -> bool:
    if not stamp or stamp.get("format") != STAMP_FORMAT:
        return False
    if stamp.get("pom_sha") != pom_sha or stamp.get("launcher_sha") != launcher_sha:
        return False
    java = Path(stamp.get("java", ""))
    if os.environ.get("GRAPHREC_JAVA_HOME") and not java.is_relative_to(
        Path(os.environ["GRAPHREC_JAVA_HOME"])
    ):
        return False
    files = [java, Path(stamp.get("argfile", "")), *map(Path, stamp.get("classpath", []))]
    return all(p.is_file() for p in files)


def provision(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make a local Neo4j runnable; return its directory (``<cache>/neo4j-<version>``).

    The first call runs Maven (``dependency:copy-dependencies``; about 125 MB from Maven Central
    unless ``~/.m2`` already has the jars) and compiles the launcher with ``javac``. Later calls
    only hash two small files. Safe to call from several processes at once (a file lock
    serialises them). Raises :class:`StoreUnavailableError` naming the step that failed.
    """
    version, plugin_version = _pom_facts()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    target = root / f"neo4j-{version}"
    pom, launcher = LAUNCHER_DIR / "pom.xml", LAUNCHER_DIR / "Launcher.java"
    pom_sha, launcher_sha = _sha(pom), _sha(pom, launcher)
    plugin_sha = _plugin_sha()
    stamp = _read_stamp(target)
    if _stamp_is_current(stamp, pom_sha, launcher_sha) and _plugin_is_current(stamp, plugin_sha):
        return target

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".neo4j-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be provisioning right now
        stamp = _read_stamp(target)
        if _stamp_is_current(stamp, pom_sha, launcher_sha):
            if not _plugin_is_current(stamp, plugin_sha):  # only the plugin changed: keep the rest
                jdk = _jdk_at(Path(stamp["java"]).parents[1]) or find_java()
                _write_stamp(target, {**stamp, **_build_plugin(jdk, target, plugin_sha)})
            return target
        t0 = time.monotonic()
        target.mkdir(parents=True, exist_ok=True)
        jdk = find_java()
        log.info("provisioning Neo4j %s into %s (Java %d at %s)", version, target, jdk.major, jdk.java)
        lib = target / "lib"
        if not (stamp and stamp.get("pom_sha") == pom_sha and lib.is_dir()):
            _copy_dependencies(pom, plugin_version, target)
        jar = _compile_launcher(jdk, launcher, target)
        classpath = [str(jar)] + sorted(str(p) for p in lib.glob("*.jar"))
        # The 200-jar class path goes into a java @argfile, so `ps` and logs stay readable.
        argfile = target / "classpath.args"
        argfile.write_text('-cp "' + os.pathsep.join(classpath).replace("\\", "\\\\") + '"\n')
        stamp = {
            "format": STAMP_FORMAT,
            "neo4j_version": version,
            "pom_sha": pom_sha,
            "launcher_sha": launcher_sha,
            "java": str(jdk.java),
            "java_major": jdk.major,
            "classpath": classpath,
            "argfile": str(argfile),
            **_build_plugin(jdk, target, plugin_sha),
        }
        _write_stamp(target, stamp)
        log.info("Neo4j %s provisioned in %.1f s", version, time.monotonic() - t0)
    return target


def _write_stamp(target: Path, stamp: dict) -> None:
    tmp = target / (STAMP_NAME + ".tmp")
    tmp.write_text(json.dumps(stamp, indent=1))
    os.replace(tmp, target / STAMP_NAME)


def _run_tool(
    cmd: list[str], what: str, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    except FileNotFoundError:
        raise StoreUnavailableError(f"{what}: {cmd[0]} not found; install it or set NEO4J_URI") from None
    except subprocess.TimeoutExpired:
        raise StoreUnavailableError(f"{what}: `{' '.join(cmd)}` took more than {timeout:.0f} s") from None


def _copy_dependencies(pom: Path, plugin_version: str, target: Path) -> None:
    """Copy org.neo4j:neo4j and its runtime dependencies into ``target/lib`` with Maven."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StoreUnavailableError("provisioning Neo4j needs Maven (`mvn`) on PATH; or set NEO4J_URI")
    build = target / "build"
    build.mkdir(exist_ok=True)
    shutil.copyfile(pom, build / "pom.xml")  # keep Maven's output out of the source tree
    staging = target / "lib.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    goal = f"org.apache.maven.plugins:maven-dependency-plugin:{plugin_version}:copy-dependencies"
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(build / "pom.xml"),
        goal,
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    # Offline first: when ~/.m2 already has everything this needs no network at all.
    result = _run_tool([*cmd[:2], "-o", *cmd[2:]], "Maven (offline)", 600, cwd=build)
    if result.returncode != 0:
        log.info("downloading Neo4j's jars from Maven Central (first run only, about 125 MB)")
        result = _run_tool(cmd, "Maven", 3600, cwd=build)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise StoreUnavailableError(f"Maven could not fetch Neo4j's jars (`{' '.join(cmd)}`):\n{tail}")
    jars = list(staging.glob("*.jar"))
    if not any(j.name.startswith("neo4j-kernel-") for j in jars):
        raise StoreUnavailableError(f"Maven ran but {staging} holds no neo4j-kernel jar")
    shutil.rmtree(target / "lib", ignore_errors=True)
    os.replace(staging, target / "lib")
    log.info("copied %d jars into %s", len(jars), target / "lib")


def _compile_launcher(jdk: _Java, source: Path, target: Path) -> Path:
    """Compile Launcher.java into ``target/launcher.jar`` (a jar, as class-data sharing needs)."""
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        classes = Path(tmp) / "classes"
        cmd = [
            str(jdk.javac),
            "--release",
            "17",
            "-cp",
            str(target / "lib" / "*"),
            "-d",
            str(classes),
            str(source),
        ]
        result = _run_tool(cmd, "javac", 300)
        if result.returncode != 0:
            raise StoreUnavailableError(f"javac could not compile {source}:\n{result.stdout}{result.stderr}")
        staged = Path(tmp) / "launcher.jar"
        result = _run_tool([str(jdk.jar), "cf", str(staged), "-C", str(classes), "."], "jar", 120)
        if result.returncode != 0:
            raise StoreUnavailableError(f"jar failed:\n{result.stdout}{result.stderr}")
        os.replace(staged, target / "launcher.jar")
    # A class-data archive records the jars it was made from; a new launcher jar invalidates it.
    for old in target.glob(CDS_ARCHIVE + "*"):
        old.unlink(missing_ok=True)
    return target / "launcher.jar"


# -- graphrec's Neo4j plugin (graph/neo4j_plugin) -------------------------------------------


def _plugin_sources() -> list[Path]:
    return [PLUGIN_DIR / "pom.xml", *sorted((PLUGIN_DIR / "src" / "main" / "java").rglob("*.java"))]


def _plugin_sha() -> str:
    h = hashlib.sha256()
    for p in _plugin_sources():
        h.update(str(p.relative_to(PLUGIN_DIR)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _plugin_is_current(stamp: dict | None, plugin_sha: str) -> bool:
    return (
        bool(stamp) and stamp.get("plugin_sha") == plugin_sha and Path(stamp.get("plugin_jar", "")).is_file()
    )


def _build_plugin(jdk: _Java, target: Path, plugin_sha: str) -> dict:
    """Build the plugin with Maven from its pom.xml (``mvn package``: Maven Central's compiler and
    jar plugins, pinned there, and the Neo4j jars already fetched for the server; offline first,
    so once ``~/.m2`` has them no network is needed) in a copy of its sources under ``target``
    (Maven's output stays out of the source tree, which may be read-only), and install the jar
    into ``target/plugins/``. Returns the stamp's plugin fields."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StoreUnavailableError("building graphrec's Neo4j plugin needs Maven (`mvn`) on PATH")
    plugins = target / "plugins"
    plugins.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        build = Path(tmp) / "neo4j_plugin"
        for src in _plugin_sources():
            dst = build / src.relative_to(PLUGIN_DIR)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        env = {**os.environ, "JAVA_HOME": str(Path(jdk.javac).resolve().parents[1])}
        cmd = [mvn, "-B", "-q", "-f", str(build / "pom.xml"), "package", "-DskipTests"]
        result = _run_tool([*cmd[:3], "-o", *cmd[3:]], "Maven (graphrec plugin, offline)", 600, build, env)
        if result.returncode != 0:
            log.info("building graphrec's Neo4j plugin: fetching Maven's build plugins (first run only)")
            result = _run_tool(cmd, "Maven (graphrec plugin)", 1800, build, env)
        jar = build / "target" / PLUGIN_JAR
        if result.returncode != 0 or not jar.is_file():
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
            raise StoreUnavailableError(f"Maven could not build {PLUGIN_DIR} (`{' '.join(cmd)}`):\n{tail}")
        staged = plugins / (PLUGIN_JAR + ".tmp")
        shutil.copyfile(jar, staged)
        os.replace(staged, plugins / PLUGIN_JAR)
    log.info("built graphrec's Neo4j plugin with Maven: %s", plugins / PLUGIN_JAR)
    return {"plugin_sha": plugin_sha, "plugin_jar": str(plugins / PLUGIN_JAR)}


def plugin_settings(target: Path) -> dict[str, str]:
    """neo4j.conf settings that load graphrec's plugin from a provisioned ``target`` directory.

    The procedures work on the kernel API, so their namespace must be unrestricted."""
    return {
        "server.directories.plugins": str(target / "plugins"),
        "dbms.security.procedures.unrestricted": "graphrec.*",
    }


# -- the server ------------------------------------------------------------------------------


def _check_size(name: str, value: str) -> str:
    if not isinstance(value, str) or not _SIZE_RE.match(value):
        raise InputError(f"{name}={value!r}: expected a size such as 512m or 2g")
    return value


def _tail(path: Path, lines: int = 40, offset: int = 0) -> str:
    """The end of a launcher log, led by the root cause of a failure when there is one."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    all_lines = text.rstrip().splitlines()
    causes = [ln for ln in all_lines if ln.startswith((FAILED_PREFIX, "Caused by:"))]
    summary = f"{causes[0]}\n  root cause: {causes[-1]}\n" if len(causes) > 1 else ""
    return summary + "\n".join(ln[:1000] for ln in all_lines[-lines:])


class LocalNeo4j:
    """One local Neo4j server process.

    ``LocalNeo4j().start()`` returns the (started) instance; use ``.uri``, ``.pid`` and
    ``.stop()``, or ``with LocalNeo4j().start() as server: ...``.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self._cache_dir = cache_dir
        self._target: Path | None = None
        self._stamp: dict | None = None
        self._proc: subprocess.Popen | None = None
        self._owned_dir: Path | None = None
        self._cds_staging: Path | None = None
        self._log_offset = 0
        self.uri: str | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None
        #: The credentials clients need (user neo4j and the local password); None without auth.
        self.auth: Credentials | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalNeo4j({self.uri or '-'}, pid={self.pid}, {state}, data_dir={self.data_dir})"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(
        self,
        data_dir: Path,
        port: int,
        heap: str,
        pagecache: str,
        *,
        watch_stdin: bool,
        config_file: Path | None = None,
        record_cds: bool = False,
        password_file: Path | None = None,
        reset_password: bool = False,
    ) -> list[str]:
        """The java command line that starts the server (provisions first if needed).

        Authentication is on with the password in ``password_file`` (the launcher reads it,
        so it never appears on a command line), off when that is None. Uses the
        class-data-sharing archive when there is one; otherwise, with ``record_cds``, asks the
        JVM to write one when it exits (see :meth:`_finish_cds`).
        """
        self._target = provision(self._cache_dir)
        self._stamp = _read_stamp(self._target)
        if self._stamp is None:
            raise StoreUnavailableError(f"{self._target / STAMP_NAME} is missing after provisioning")
        cmd = [self._stamp["java"], f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS]
        archive = self._target / CDS_ARCHIVE
        self._cds_staging = None
        if os.environ.get("GRAPHREC_NEO4J_CDS", "1") == "0":
            pass  # to measure or debug start-up without class-data sharing
        elif archive.is_file():
            # -Xshare:auto (the default) falls back to normal class loading if the archive does not
            # match the jars (the JVM then logs a warning into launcher.log).
            cmd.append(f"-XX:SharedArchiveFile={archive}")
        elif record_cds:
            _remove_stale_cds_staging(self._target)
            self._cds_staging = self._target / f"{CDS_ARCHIVE}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
            cmd.append(f"-XX:ArchiveClassesAtExit={self._cds_staging}")
        cmd += ["@" + self._stamp["argfile"], MAIN_CLASS]
        cmd += ["--home", str(data_dir), "--port", str(port), "--pagecache", pagecache]
        if config_file is not None:
            cmd += ["--config", str(config_file)]
        if password_file is None:
            cmd.append("--no-auth")
        else:
            cmd += ["--password-file", str(password_file)]
            if reset_password:
                cmd.append("--reset-password")
        if watch_stdin:
            cmd.append("--exit-on-stdin-eof")
        return cmd

    def start(
        self,
        data_dir: str | os.PathLike | None = None,
        port: int | None = None,
        heap: str = "1g",
        pagecache: str = "256m",
        timeout: float = 180.0,
        *,
        config: Mapping[str, str] | None = None,
        detach: bool = False,
        auth: bool = True,
        reset_password: bool = False,
        plugin: bool | None = None,
    ) -> LocalNeo4j:
        """Start the server and wait until Bolt answers; return ``self``.

        ``data_dir`` is the Neo4j home (store under ``data/``, logs under ``logs/``, this
        wrapper's log in ``logs/launcher.log``); None means a fresh temporary directory that
        :meth:`stop` deletes. ``port`` None lets the OS pick a free loopback port. Without
        ``detach`` the server also exits when this Python process dies (it watches its
        stdin); with ``detach`` it runs in its own session and outlives us (the CLI's
        ``start``). ``config`` adds neo4j.conf settings (e.g. ``{"db.transaction.timeout": "60s"}``)
        over :data:`HARDENED_SETTINGS`; the connector, authentication and page-cache settings
        above always win. ``plugin`` (default: unless ``GRAPHREC_NEO4J_PLUGIN=0``) loads graphrec's
        own procedures (graph/neo4j_plugin); False gives a stock server.

        Authentication is on: user ``neo4j`` with the password of
        :func:`graph.neo4j_auth.password_file` (generated on first use), which a new store gets
        before it first accepts connections (see ``Launcher.java``); ``self.auth`` holds it.
        ``reset_password`` sets it again on an existing store (after the file was replaced).
        ``auth=False`` starts without authentication and says so loudly. Raises
        :class:`StoreUnavailableError` with the end of the server's log if it exits or does not
        answer within ``timeout`` seconds, :class:`StoreAuthError` if it refuses the password.
        """
        if self.is_running():
            raise StoreUnavailableError(f"{self!r} is already running")
        heap, pagecache = _check_size("heap", heap), _check_size("pagecache", pagecache)
        if port is not None and not (0 <= int(port) < 65536):
            raise InputError(f"port={port!r}: expected 0..65535")
        if data_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="graphrec-neo4j-"))
            data_dir = self._owned_dir
        self.data_dir = Path(data_dir).expanduser().resolve()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "logs" / "launcher.log"
        conf = self.data_dir / "conf" / "neo4j.conf"
        conf.parent.mkdir(exist_ok=True)
        conf.write_text("".join(f"{k}={v}\n" for k, v in {**HARDENED_SETTINGS, **(config or {})}.items()))
        try:
            password_file = None
            self.auth = None
            if auth:
                password_file = ensure_local_password()
                self.auth = Credentials(
                    DEFAULT_USER, read_local_password(password_file) or "", str(password_file)
                )
            else:
                log.warning(
                    "AUTHENTICATION IS OFF for the Neo4j server in %s (auth=False / --no-auth): any process "
                    "on this machine can read and change its graph",
                    self.data_dir,
                )
            # A detached server outlives us, so nobody would be there to move its archive into place.
            cmd = self.command(
                self.data_dir,
                int(port or 0),
                heap,
                pagecache,
                watch_stdin=not detach,
                config_file=conf,
                record_cds=not detach,
                password_file=password_file,
                reset_password=reset_password,
            )
            # graphrec's plugin, from the directory provision() built it into (settings in `config` win).
            if plugin if plugin is not None else os.environ.get(PLUGIN_ENV, "1") != "0":
                extra = {k: v for k, v in plugin_settings(self._target).items() if k not in (config or {})}
                with open(conf, "a") as f:
                    f.write("".join(f"{k}={v}\n" for k, v in extra.items()))
        except BaseException:
            self.stop()  # removes a temporary data directory
            raise
        log.info("starting Neo4j in %s (heap %s, page cache %s)", self.data_dir, heap, pagecache)
        log.debug("command: %s", cmd)
        t0 = time.monotonic()
        # Append: a failed second start on the same directory must not wipe the first's log.
        with open(self.log_path, "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            out.flush()
            self._log_offset = out.tell()
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL if detach else subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Detached: own session, outlives us. Otherwise: own process group, so a Ctrl-C
                # meant for the foreground command does not stop the server under it; we stop it.
                start_new_session=detach,
                process_group=None if detach else 0,
            )
        try:
            self.uri = self._wait_ready(t0 + timeout, timeout)
        except BaseException:
            self.stop(timeout=30)
            raise
        remember_server(self.uri, self.auth)  # so this process's clients need no environment
        log.info("Neo4j ready at %s (pid %d) after %.1f s", self.uri, self._proc.pid, time.monotonic() - t0)
        return self

    def _wait_ready(self, deadline: float, timeout: float) -> str:
        import neo4j  # the driver is only needed once a server is starting

        assert self._proc is not None and self.log_path is not None
        uri = None
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                raise StoreUnavailableError(
                    f"local Neo4j exited with code {rc} while starting; {self._log_tail()}"
                )
            if uri is None:
                with open(self.log_path, "rb") as f:
                    f.seek(self._log_offset)
                    for line in f:
                        if line.startswith(READY_PREFIX.encode()):
                            uri = line[len(READY_PREFIX) :].decode().strip()
            if uri is not None:
                auth = self.auth.as_tuple() if self.auth else None
                try:
                    with neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=5) as driver:
                        driver.verify_connectivity()
                    return uri
                except neo4j.exceptions.AuthError as exc:
                    raise StoreAuthError(
                        f"local Neo4j at {uri} (data {self.data_dir}) refused user {DEFAULT_USER!r} with the "
                        f"password in {self.auth.source if self.auth else '(none)'}: "
                        f"{(exc.message or str(exc)).rstrip('.')}. Its store keeps the password it got when it "
                        "was first started (or was given since); start it with reset_password=True "
                        f"(CLI: --reset-password) to set the file's password on it. Log: {self.log_path}"
                    ) from None
                except Exception as exc:  # noqa: BLE001 - any failure means "not yet"; reported on timeout
                    last_error = exc
            time.sleep(0.2)
        why = f"Bolt at {uri} did not answer ({last_error})" if uri else "it never reported ready"
        raise StoreUnavailableError(
            f"local Neo4j did not start within {timeout:.0f} s: {why}; {self._log_tail()}"
        )

    def _log_tail(self) -> str:
        assert self.log_path is not None
        return f"last lines of {self.log_path}:\n{_tail(self.log_path, offset=self._log_offset)}"

    def wait_exit(self, timeout: float | None = None) -> int:
        """Wait for the server process to exit; return its exit code."""
        if self._proc is None:
            raise StoreUnavailableError("this LocalNeo4j was never started")
        try:
            rc = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise StoreUnavailableError(
                f"Neo4j (pid {self._proc.pid}) still running after {timeout} s"
            ) from None
        self._finish_cds(rc)
        return rc

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (a clean shutdown: checkpoint, close the store), SIGKILL after ``timeout`` s.

        Idempotent. Deletes the data directory if :meth:`start` created it. Returns the exit code.
        """
        rc = None
        if self.uri is not None:
            forget_server(self.uri)
        if self._proc is not None:
            rc = _terminate(self._proc, timeout)
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
            self._finish_cds(rc)
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None
        return rc

    def _finish_cds(self, rc: int) -> None:
        """Move the archive the JVM wrote at exit into place, if it exited cleanly and the
        provisioned jars are still the ones it was made from."""
        staging, self._cds_staging = self._cds_staging, None
        if staging is None or self._target is None:
            return
        clean = rc in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
        archive = self._target / CDS_ARCHIVE
        complete = clean and staging.is_file() and staging.stat().st_size > 0
        if complete and not archive.exists() and _read_stamp(self._target) == self._stamp:
            os.replace(staging, archive)
            log.info("recorded a class-data-sharing archive for faster starts: %s", archive)
        else:
            staging.unlink(missing_ok=True)

    def __enter__(self) -> LocalNeo4j:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _remove_stale_cds_staging(target: Path, max_age: float = 600.0) -> None:
    """Delete archives that JVMs wrote at exit but nobody moved into place (the owner died).

    A JVM writes its archive only while exiting, which takes seconds, so one older than
    ``max_age`` is finished or abandoned.
    """
    now = time.time()
    for staging in target.glob(f"{CDS_ARCHIVE}.*.tmp"):
        with contextlib.suppress(OSError):
            if now - staging.stat().st_mtime > max_age:
                staging.unlink()


def _terminate(proc: subprocess.Popen, timeout: float) -> int:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Neo4j (pid %d) did not stop within %.0f s; killing it", proc.pid, timeout)
            proc.kill()
    return proc.wait()


def is_launcher_process(pid: int, create_time: float | None = None) -> bool:
    """Whether ``pid`` is a running local Neo4j launcher (and, if given, the one started at ``create_time``)."""
    import psutil

    try:
        p = psutil.Process(pid)
        if create_time is not None and abs(p.create_time() - create_time) > 1.0:
            return False  # the pid was reused
        return MAIN_CLASS in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def stop_pid(pid: int, timeout: float = 60.0, create_time: float | None = None) -> bool:
    """Stop a detached launcher by pid (SIGTERM, SIGKILL after ``timeout``). False if it was not running."""
    import psutil

    if not is_launcher_process(pid, create_time):
        return False
    p = psutil.Process(pid)
    with contextlib.suppress(psutil.NoSuchProcess):
        p.terminate()
        try:
            p.wait(timeout)
        except psutil.TimeoutExpired:
            log.warning("Neo4j (pid %d) did not stop within %.0f s; killing it", pid, timeout)
            p.kill()
            p.wait(30)
    return True


def process_create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return None


# -- the command line (scripts/neo4j_local.py; python -m graph.neo4j_local) -------------------

CLI_DOC = """Run a real Neo4j Community 5.26 server locally, without Docker (jars from Maven Central).

Needs a JDK 17 (or 21) and Maven; the first `provision` downloads about 125 MB into ~/.m2.
The server listens on 127.0.0.1 only, with authentication on: user neo4j, and a password
generated once into an owner-only file (`password --file` prints where; `password` prints it).
graphrec's clients read that file by themselves for localhost URIs; `run` also exports
NEO4J_USER / NEO4J_PASSWORD to its command. `--no-auth` turns authentication off.
When NEO4J_URI is set, `run` uses that server instead of starting one (e.g. `docker compose up -d`).

Background servers are keyed by data directory: `start` for a directory that already has a
running server prints that server's URI; for another directory it starts another server (on
another free port). `status` lists them; `stop` stops the one server there is, or the one
named by --data-dir, or all of them with --all.

Examples:
  python scripts/neo4j_local.py provision
  export NEO4J_URI=$(python scripts/neo4j_local.py start)     # background server, prints its URI
  python scripts/neo4j_local.py start --data-dir .graphrec/n2 # a second one, for another store
  python scripts/neo4j_local.py status
  python scripts/neo4j_local.py stop --data-dir .graphrec/n2  # or: stop --all
  python scripts/neo4j_local.py run -- python -m pytest -q    # server just for this command
  export NEO4J_PASSWORD=$(python scripts/neo4j_local.py password)  # for other tools (cypher-shell)
"""

STATE_FORMAT = 2
#: Set by ``run`` next to NEO4J_URI: the URI is a server this tool started (not, say, Docker's).
LOCAL_URI_ENV = "GRAPHREC_NEO4J_LOCAL_URI"


def default_data_dir() -> Path:
    """Where ``start`` keeps its Neo4j home: ``$XDG_DATA_HOME/graphrec/neo4j`` (``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphrec" / "neo4j"


def default_state_file() -> Path:
    return default_cache_root() / "neo4j-local.json"


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _load_servers(state_file: Path) -> dict[str, dict]:
    """The recorded background servers, keyed by their (resolved) data directory."""
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    if "pid" in state and "data_dir" in state:  # format 1: one server per state file
        return {state["data_dir"]: state}
    servers = state.get("servers")
    return dict(servers) if isinstance(servers, dict) else {}


def _save_servers(state_file: Path, servers: dict[str, dict]) -> None:
    if not servers:
        state_file.unlink(missing_ok=True)
        return
    tmp = state_file.with_name(state_file.name + ".tmp")
    tmp.write_text(json.dumps({"format": STATE_FORMAT, "servers": servers}, indent=1) + "\n")
    os.replace(tmp, state_file)


def _is_alive(record: dict) -> bool:
    return is_launcher_process(record["pid"], record.get("create_time"))


class _Registry:
    """The background servers `start` left running, in one JSON file.

    Every read-modify-write holds ``<state>.lock``; ``start`` also holds ``<state>.start.lock``
    from its check to its record, so two `start`s for one directory cannot both launch a server,
    while `status` and `stop` never wait for a server to come up.
    """

    def __init__(self, state_file: Path):
        self.path = Path(state_file).expanduser()
        self._lock = self.path.with_name(self.path.name + ".lock")
        self.start_lock = self.path.with_name(self.path.name + ".start.lock")

    def live(self) -> dict[str, dict]:
        """The recorded servers still running; forgets the others."""
        with _flock(self._lock):
            servers = _load_servers(self.path)
            alive = {key: rec for key, rec in servers.items() if _is_alive(rec)}
            if alive != servers:
                _save_servers(self.path, alive)
        return alive

    def add(self, record: dict) -> None:
        with _flock(self._lock):
            servers = _load_servers(self.path)
            servers[record["data_dir"]] = record
            _save_servers(self.path, servers)

    def remove(self, record: dict) -> None:
        with _flock(self._lock):
            servers = _load_servers(self.path)
            if servers.get(record["data_dir"], {}).get("pid") == record["pid"]:
                del servers[record["data_dir"]]
                _save_servers(self.path, servers)


def _data_dir_key(data_dir: str | os.PathLike) -> str:
    return str(Path(data_dir).expanduser().resolve())


def _describe(servers: dict[str, dict]) -> str:
    return "; ".join(f"{key} ({rec['uri']}, pid {rec['pid']})" for key, rec in sorted(servers.items()))


def _cmd_provision(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    target = provision(args.cache_dir)
    print(f"Neo4j {neo4j_version()} ready to start from {target} ({time.monotonic() - t0:.1f} s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    registry = _Registry(args.state_file)
    key = _data_dir_key(args.data_dir or default_data_dir())
    with _flock(registry.start_lock):
        servers = registry.live()
        running = servers.get(key)
        if running is not None:
            log.warning(
                "already running for %s (pid %d); `stop --data-dir %s` first to change its settings",
                key,
                running["pid"],
                key,
            )
            print(running["uri"])
            return 0
        server = LocalNeo4j(args.cache_dir).start(
            data_dir=key,
            port=args.port,
            heap=args.heap,
            pagecache=args.pagecache,
            timeout=args.timeout,
            detach=True,
            auth=not args.no_auth,
            reset_password=args.reset_password,
        )
        record = {
            "pid": server.pid,
            "create_time": process_create_time(server.pid),
            "uri": server.uri,
            "data_dir": str(server.data_dir),
            "log": str(server.log_path),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "auth": server.auth is not None,
        }
        registry.add(record)
    log.info("started Neo4j (pid %d, data %s); state in %s", server.pid, server.data_dir, registry.path)
    if servers:
        log.info("also running: %s", _describe(servers))
    print(server.uri)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    registry = _Registry(args.state_file)
    servers = registry.live()
    if args.all:
        targets = servers
    elif args.data_dir:
        key = _data_dir_key(args.data_dir)
        targets = {key: servers[key]} if key in servers else {}
        if not targets:
            log.info("no local Neo4j running for %s (recorded in %s)", key, registry.path)
            return 0
    elif len(servers) > 1:
        log.error(
            "%d local Neo4j servers are running: %s. Name one with --data-dir DIR, or stop them all with --all",
            len(servers),
            _describe(servers),
        )
        return 2
    else:
        targets = servers
    if not targets:
        log.info("no local Neo4j running (recorded in %s)", registry.path)
        return 0
    for key, rec in sorted(targets.items()):
        if stop_pid(rec["pid"], timeout=args.timeout, create_time=rec.get("create_time")):
            log.info("stopped Neo4j (pid %d, data %s)", rec["pid"], key)
        else:
            log.info("Neo4j (pid %d, data %s) was not running", rec["pid"], key)
        registry.remove(rec)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    import neo4j

    servers = _Registry(args.state_file).live()
    if args.data_dir:
        key = _data_dir_key(args.data_dir)
        servers = {key: servers[key]} if key in servers else {}
    if not servers:
        print(f"stopped {_data_dir_key(args.data_dir)}" if args.data_dir else "stopped")
        return 3
    rc = 0
    for _, rec in sorted(servers.items()):
        password = read_local_password() if rec.get("auth") else None  # older records: started without
        auth = (DEFAULT_USER, password) if password else None
        try:
            with neo4j.GraphDatabase.driver(rec["uri"], auth=auth, connection_timeout=5) as driver:
                driver.verify_connectivity()
            answer = "answering"
        except Exception as exc:  # noqa: BLE001 - reported as is
            answer = f"NOT answering ({exc})"
            rc = 1
        print(
            f"running {rec['uri']} pid={rec['pid']} data={rec['data_dir']} log={rec['log']} "
            f"auth={'on' if rec.get('auth') else 'OFF'} bolt {answer}"
        )
    return rc


def _cmd_password(args: argparse.Namespace) -> int:
    path = ensure_local_password()
    print(path if args.file else read_local_password(path))
    return 0


def _call(command: list[str], env: dict[str, str] | None = None) -> int:
    """Run ``command`` to completion and return a shell-style exit code.

    SIGTERM to this wrapper (a CI timeout) is passed on to the command; Ctrl-C reaches the
    command through the terminal, so we keep waiting for it to finish its own teardown.
    """
    try:
        child = subprocess.Popen(command, env=env)
    except FileNotFoundError:
        log.error("command not found: %s", command[0])
        return 127
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signal.SIGTERM))
    while True:
        try:
            rc = child.wait()
            break
        except KeyboardInterrupt:
            continue
    return 128 - rc if rc < 0 else rc


def _cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("run: give the command after --, e.g. `run -- python -m pytest -q`")
    uri = neo4j_uri_from_env()
    if uri:
        log.info("NEO4J_URI is set; using %s", uri)
        return _call(command)
    server = LocalNeo4j(args.cache_dir)
    with tempfile.TemporaryDirectory(prefix="graphrec-neo4j-run-") as tmp:
        data_dir = Path(args.data_dir).expanduser() if args.data_dir else Path(tmp)
        try:
            server.start(
                data_dir=data_dir,
                port=args.port,
                heap=args.heap,
                pagecache=args.pagecache,
                timeout=args.timeout,
                auth=not args.no_auth,
                reset_password=args.reset_password,
            )
            log.info("running %s with NEO4J_URI=%s", command, server.uri)
            env = {**os.environ, "NEO4J_URI": server.uri, LOCAL_URI_ENV: server.uri}
            # Credentials for the command (other values from the caller's environment, e.g. for a
            # Docker server, would be refused); none without auth, where they would be ignored anyway.
            for name in ("NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_AUTH"):
                env.pop(name, None)
            if server.auth is not None:
                user, password = server.auth.as_tuple()
                env.update(NEO4J_USER=user, NEO4J_PASSWORD=password, NEO4J_AUTH=f"{user}/{password}")
            return _call(command, env=env)
        finally:
            server.stop()


def main(argv: list[str] | None = None, prog: str = "neo4j_local.py") -> int:
    """The command line; ``scripts/neo4j_local.py`` and ``python -m graph.neo4j_local`` run it."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=CLI_DOC.split("\n\n")[0],
        epilog=CLI_DOC.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cache-dir", type=Path, help=f"where provisioned jars live (default {default_cache_root()})"
    )
    p.add_argument(
        "--state-file",
        type=Path,
        default=default_state_file(),
        help="where `start` records its background servers (default %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = sub.add_parser(
        "provision", help="download the jars and compile the launcher (once; later runs are instant)"
    )
    s.set_defaults(func=_cmd_provision)

    def server_options(s: argparse.ArgumentParser, data_help: str) -> None:
        s.add_argument("--data-dir", help=data_help)
        s.add_argument("--port", type=int, help="Bolt port on 127.0.0.1 (default: a free one)")
        s.add_argument("--heap", default="1g", help="JVM heap (default %(default)s)")
        s.add_argument("--pagecache", default="256m", help="Neo4j page cache (default %(default)s)")
        s.add_argument(
            "--timeout", type=float, default=180.0, help="seconds to wait for Bolt (default %(default)s)"
        )
        s.add_argument(
            "--no-auth",
            action="store_true",
            help="authentication OFF (default: on, user neo4j, the password of `password`): any local "
            "process can then read and change the graph",
        )
        s.add_argument(
            "--reset-password",
            action="store_true",
            help="set the password of `password` on this store again (after that file was replaced)",
        )

    s = sub.add_parser(
        "start",
        help="start a background server for a data directory (unless one runs); prints its bolt:// URI",
    )
    server_options(
        s,
        f"Neo4j home: store and logs (default {default_data_dir()}, kept across restarts). "
        "One server per directory: if this one already has a running server, prints its URI",
    )
    s.set_defaults(func=_cmd_start)

    s = sub.add_parser("stop", help="stop background servers (SIGTERM, SIGKILL after --timeout)")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--data-dir", help="stop the server of this directory (default: the only one running)")
    which.add_argument("--all", action="store_true", help="stop every recorded server")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL (default %(default)s)")
    s.set_defaults(func=_cmd_stop)

    s = sub.add_parser(
        "status",
        help="are the background servers running and answering? (exit 0 yes, 1 not answering, 3 stopped)",
    )
    s.add_argument("--data-dir", help="only the server of this directory (default: all)")
    s.set_defaults(func=_cmd_status)

    s = sub.add_parser(
        "run",
        help="run a command against NEO4J_URI, or a server started just for it",
        description="Run CMD with NEO4J_URI set. Uses NEO4J_URI when already set; otherwise starts a local "
        "server (fresh temporary store unless --data-dir), runs CMD, stops the server and exits with CMD's code.",
        usage="%(prog)s [options] -- CMD [ARGS...]",
    )
    server_options(s, "Neo4j home (default: a temporary directory, deleted afterwards)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    s.set_defaults(func=_cmd_run)

    s = sub.add_parser(
        "password",
        help="print the password of user neo4j on the local servers (generated on first use)",
        description="Print the password of user neo4j on servers this tool starts, generating it on first "
        "use (an owner-only file). graphrec's clients read it by themselves for localhost URIs; for other "
        "tools: export NEO4J_PASSWORD=$(python scripts/neo4j_local.py password)",
    )
    s.add_argument("--file", action="store_true", help="print the path of the password file instead")
    s.set_defaults(func=_cmd_password)

    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="neo4j_local: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except GraphRecError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
