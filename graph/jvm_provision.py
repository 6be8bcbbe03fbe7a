"""Run a Java server from Maven Central jars: find a JDK, copy a launcher's dependencies, compile it.

A *launcher* is a directory holding a ``pom.xml`` (its dependencies, packaging ``pom``, the
``maven-dependency-plugin`` version pinned in ``pluginManagement``) and one ``Launcher.java``.
:func:`provision` copies the pom into ``<cache>/<name>-<version>/build``, runs
``dependency:copy-dependencies`` into ``lib/`` (offline first, so a populated ``~/.m2`` needs no
network), compiles the launcher into ``launcher.jar``, writes the class path into a java
``@argfile`` and records all of it in ``provisioned.json``. Later calls hash two small files and
return. A file lock serialises concurrent provisioning (parallel test sessions).

Used by :mod:`graph.kafka_local`. (:mod:`graph.neo4j_local` has its own copy of the same steps,
with Neo4j's class-data-sharing extras.)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from graph.errors import GraphRecError

log = logging.getLogger(__name__)

STAMP_NAME = "provisioned.json"
STAMP_FORMAT = 1  # bump when provision() lays out the cache differently
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def default_cache_root() -> Path:
    """``$GRAPHREC_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphrec``, else ``~/.cache/graphrec``."""
    if os.environ.get("GRAPHREC_CACHE_DIR"):
        return Path(os.environ["GRAPHREC_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "graphrec"


@dataclass(frozen=True)
class Launcher:
    """What to provision: ``name`` (cache directory prefix, messages), the launcher directory, the
    pom property that holds the version, a jar-name prefix that proves the copy worked, the
    error class to raise and a hint for users (what to set instead)."""

    name: str
    directory: Path
    version_property: str
    marker_jar: str
    error: type[GraphRecError]
    hint: str
    supported_java: tuple[int, ...] = (17, 21)

    def facts(self) -> tuple[str, str]:
        """(version, maven-dependency-plugin version), read from the launcher's pom.xml."""
        pom = self.directory / "pom.xml"
        try:
            root = ET.parse(pom).getroot()
        except (OSError, ET.ParseError) as exc:
            raise self.error(f"cannot read the {self.name} launcher's {pom}: {exc}") from exc
        version = root.findtext(f"m:properties/m:{self.version_property}", namespaces=_POM_NS)
        plugin = None
        for p in root.iterfind(".//m:plugin", _POM_NS):
            if p.findtext("m:artifactId", namespaces=_POM_NS) == "maven-dependency-plugin":
                plugin = p.findtext("m:version", namespaces=_POM_NS)
        if not version or not plugin:
            raise self.error(
                f"{pom}: {self.version_property} or the maven-dependency-plugin version is missing"
            )
        return version.strip(), plugin.strip()


# -- Java ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jdk:
    java: Path
    javac: Path
    jar: Path
    major: int


def java_major(java: Path) -> int | None:
    """The feature version of a ``java`` binary (17, 21, ...), or None if it does not run."""
    try:
        out = subprocess.run(
            [str(java), "-XshowSettings:properties", "-version"], capture_output=True, text=True, timeout=60
        ).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"java\.specification\.version = (\d+)", out)
    return int(m.group(1)) if m else None


def _jdk_at(home: Path) -> Jdk | None:
    java, javac, jar = (home / "bin" / n for n in ("java", "javac", "jar"))
    if not (java.is_file() and javac.is_file() and jar.is_file()):
        return None
    major = java_major(java)
    return None if major is None else Jdk(java, javac, jar, major)


def _java_homes() -> Iterator[Path]:
    """JDK homes in order of preference: JAVA_HOME, the javac on PATH, then /usr/lib/jvm."""
    if os.environ.get("JAVA_HOME"):
        yield Path(os.environ["JAVA_HOME"])
    on_path = shutil.which("javac")
    if on_path:
        yield Path(on_path).resolve().parents[1]
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        yield from sorted(p for p in jvm.iterdir() if p.is_dir() and not p.is_symlink())


def find_jdk(spec: Launcher) -> Jdk:
    """``GRAPHREC_JAVA_HOME`` as is, else the first JDK of a supported version; a newer one only
    as a last resort (with a warning)."""
    if os.environ.get("GRAPHREC_JAVA_HOME"):
        home = Path(os.environ["GRAPHREC_JAVA_HOME"])
        found = _jdk_at(home)
        if found is None:
            raise spec.error(f"GRAPHREC_JAVA_HOME={home} is not a JDK (needs bin/java, bin/javac, bin/jar)")
        return found
    fallback = None
    seen = set()
    for home in _java_homes():
        if home.resolve() in seen:
            continue
        seen.add(home.resolve())
        found = _jdk_at(home)
        if found is None:
            continue
        if found.major in spec.supported_java:
            return found
        if found.major > max(spec.supported_java) and fallback is None:
            fallback = found
    if fallback is not None:
        log.warning(
            "no Java %s JDK found; trying Java %d", " or ".join(map(str, spec.supported_java)), fallback.major
        )
        return fallback
    raise spec.error(
        f"no JDK {' or '.join(map(str, spec.supported_java))} found for {spec.name} (needs java, javac and jar; "
        f"looked at GRAPHREC_JAVA_HOME, JAVA_HOME, PATH and /usr/lib/jvm). Install OpenJDK 17, or {spec.hint}."
    )


# -- provisioning ----------------------------------------------------------------------------


def _sha(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def read_stamp(target: Path) -> dict | None:
    """The ``provisioned.json`` of a cache directory, or None."""
    try:
        return json.loads((target / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_current(stamp: dict | None, pom_sha: str, launcher_sha: str) -> bool:
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


def provision(spec: Launcher, cache_dir: str | os.PathLike | None = None) -> dict:
    """Make ``spec``'s launcher runnable; return its stamp (``java``, ``argfile``, ``classpath``,
    ``version``, ``dir``). Raises ``spec.error`` naming the step that failed."""
    version, plugin_version = spec.facts()
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_root()
    target = root / f"{spec.name}-{version}"
    pom, source = spec.directory / "pom.xml", spec.directory / "Launcher.java"
    pom_sha, launcher_sha = _sha(pom), _sha(pom, source)
    stamp = read_stamp(target)
    if _is_current(stamp, pom_sha, launcher_sha):
        return stamp

    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{spec.name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be provisioning right now
        stamp = read_stamp(target)
        if _is_current(stamp, pom_sha, launcher_sha):
            return stamp
        t0 = time.monotonic()
        target.mkdir(parents=True, exist_ok=True)
        jdk = find_jdk(spec)
        log.info(
            "provisioning %s %s into %s (Java %d at %s)", spec.name, version, target, jdk.major, jdk.java
        )
        lib = target / "lib"
        if not (stamp and stamp.get("pom_sha") == pom_sha and lib.is_dir()):
            _copy_dependencies(spec, pom, plugin_version, target)
        jar = _compile(spec, jdk, source, target)
        classpath = [str(jar)] + sorted(str(p) for p in lib.glob("*.jar"))
        argfile = target / "classpath.args"  # keeps `ps` and logs readable
        argfile.write_text('-cp "' + os.pathsep.join(classpath).replace("\\", "\\\\") + '"\n')
        stamp = {
            "format": STAMP_FORMAT,
            "name": spec.name,
            "version": version,
            "dir": str(target),
            "pom_sha": pom_sha,
            "launcher_sha": launcher_sha,
            "java": str(jdk.java),
            "java_major": jdk.major,
            "classpath": classpath,
            "argfile": str(argfile),
        }
        tmp = target / (STAMP_NAME + ".tmp")
        tmp.write_text(json.dumps(stamp, indent=1))
        os.replace(tmp, target / STAMP_NAME)
        log.info("%s %s provisioned in %.1f s", spec.name, version, time.monotonic() - t0)
    return stamp


def run_tool(
    spec: Launcher, cmd: list[str], what: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run a build tool; a missing binary or a timeout raises ``spec.error``."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise spec.error(f"{what}: {cmd[0]} not found; install it or {spec.hint}") from None
    except subprocess.TimeoutExpired:
        raise spec.error(f"{what}: `{' '.join(cmd)}` took more than {timeout:.0f} s") from None


def _copy_dependencies(spec: Launcher, pom: Path, plugin_version: str, target: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise spec.error(f"provisioning {spec.name} needs Maven (`mvn`) on PATH; or {spec.hint}")
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
    result = run_tool(spec, [*cmd[:2], "-o", *cmd[2:]], "Maven (offline)", 600, cwd=build)
    if result.returncode != 0:
        log.info("downloading %s's jars from Maven Central (first run only)", spec.name)
        result = run_tool(spec, cmd, "Maven", 3600, cwd=build)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise spec.error(f"Maven could not fetch {spec.name}'s jars (`{' '.join(cmd)}`):\n{tail}")
    jars = list(staging.glob("*.jar"))
    if not any(j.name.startswith(spec.marker_jar) for j in jars):
        raise spec.error(f"Maven ran but {staging} holds no {spec.marker_jar}* jar")
    shutil.rmtree(target / "lib", ignore_errors=True)
    os.replace(staging, target / "lib")
    log.info("copied %d jars into %s", len(jars), target / "lib")


def _compile(spec: Launcher, jdk: Jdk, source: Path, target: Path) -> Path:
    """Compile the launcher into ``target/launcher.jar``."""
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
        result = run_tool(spec, cmd, "javac", 300)
        if result.returncode != 0:
            raise spec.error(f"javac could not compile {source}:\n{result.stdout}{result.stderr}")
        staged = Path(tmp) / "launcher.jar"
        result = run_tool(spec, [str(jdk.jar), "cf", str(staged), "-C", str(classes), "."], "jar", 120)
        if result.returncode != 0:
            raise spec.error(f"jar failed:\n{result.stdout}{result.stderr}")
        os.replace(staged, target / "launcher.jar")
    return target / "launcher.jar"
