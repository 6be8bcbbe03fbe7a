"""A real Apache Kafka 4 broker (KRaft, no ZooKeeper) on machines without Docker.

The broker is ``kafka.Kafka`` from Maven Central's ``org.apache.kafka:kafka_2.13`` in KRaft
combined mode (one process is controller and broker), listening on ``127.0.0.1`` only, started
by a small Java launcher (``graph/kafka_launcher/Launcher.java`` and its ``pom.xml``, package
data of ``graph``) that prints a ready line and exits with its parent.

* :func:`provision` resolves the broker's jars with Maven once (about 45 MB into ``~/.m2``,
  copied to ``~/.cache/graphrec/kafka-<version>/lib``) and compiles the launcher; later calls
  return at once (see :mod:`graph.jvm_provision`).
* :class:`LocalKafka` writes a ``server.properties`` for a single node, formats the storage
  (``kafka.tools.StorageTool format``, skipped when already formatted), starts the broker on a
  free loopback port and waits until it answers metadata requests.
* :func:`kafka_bootstrap_from_env` returns ``KAFKA_BOOTSTRAP``: when it is set (e.g. the
  ``docker compose`` broker), callers use that broker instead of starting one.
* :func:`main` is the command line (``scripts/kafka_local.py``, ``python -m graph.kafka_local``):
  ``provision``, ``run -- CMD``, and one background broker (``start``, ``status``, ``stop``).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from graph.errors import GraphRecError, InputError, StreamUnavailableError
from graph.jvm_provision import Launcher, default_cache_root
from graph.jvm_provision import provision as _provision

log = logging.getLogger(__name__)

LAUNCHER_DIR = Path(
    os.environ.get("GRAPHREC_KAFKA_LAUNCHER_DIR") or Path(__file__).resolve().parent / "kafka_launcher"
)
LAUNCHER = Launcher(
    name="kafka",
    directory=LAUNCHER_DIR,
    version_property="kafka.version",
    marker_jar="kafka_2.13-",
    error=StreamUnavailableError,
    hint="set KAFKA_BOOTSTRAP to use an existing Kafka broker",
)
MAIN_CLASS = "io.graphrec.kafka.Launcher"
STORAGE_TOOL = "kafka.tools.StorageTool"
READY_PREFIX = "KAFKA_READY "
FAILED_PREFIX = "KAFKA_FAILED "
#: The environment variable naming an existing broker (``host:port[,host:port...]``).
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP"
#: Set by ``run`` next to KAFKA_BOOTSTRAP: the broker is one this tool started (not, say, Docker's).
LOCAL_BOOTSTRAP_ENV = "GRAPHREC_KAFKA_LOCAL_BOOTSTRAP"
_SIZE_RE = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
# A Java exception's message line, e.g. "org.apache.kafka.common.KafkaException: Socket server failed ..."
_EXCEPTION_RE = re.compile(r"^(Caused by: )?([\w$]+\.)+[\w$]*(Exception|Error): ")

# What kafka-run-class.sh passes (KAFKA_JVM_PERFORMANCE_OPTS), plus an exit on OOM. The broker
# logs through slf4j-simple to stderr (launcher.log); the configuration dumps (9 x 250 lines at
# start-up) are left out.
_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
    "-Dorg.slf4j.simpleLogger.log.org.apache.kafka.common.config.AbstractConfig=warn",
)


def kafka_bootstrap_from_env() -> str | None:
    """The Kafka broker to use instead of a local one (``KAFKA_BOOTSTRAP``), or None."""
    return os.environ.get(BOOTSTRAP_ENV, "").strip() or None


def kafka_version() -> str:
    """The Kafka version the launcher is built against (from its pom.xml)."""
    return LAUNCHER.facts()[0]


def provision(cache_dir: str | os.PathLike | None = None) -> Path:
    """Make a local Kafka runnable; return its directory (``<cache>/kafka-<version>``).

    The first call runs Maven and javac (seconds with a populated ``~/.m2``); later calls only
    hash two small files. Raises :class:`StreamUnavailableError` naming the step that failed.
    """
    return Path(_provision(LAUNCHER, cache_dir)["dir"])


def _check_port_free(port: int) -> None:
    """Fail before starting a JVM when a port asked for is taken: under load the broker can die
    of a timeout before it reports the bind error, so its log is not a reliable witness."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker binds
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise StreamUnavailableError(
                f"cannot start Kafka on 127.0.0.1:{port}: the port is in use ({exc.strerror}); "
                "pick another port or leave it out to get a free one"
            ) from None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_properties(
    data_dir: Path, port: int, controller_port: int, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A single-node KRaft broker on 127.0.0.1: controller and broker in one process, every
    internal topic with one replica and one partition (a local server starts faster that way)."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir / "kraft-logs"),
        # Topics are created on purpose (graphrec stream --create-topics, or an admin tool): a
        # mistyped topic name is an error, not a new empty topic.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # A 2-core machine shared with Neo4j: fewer threads than the defaults (3 network, 8 I/O).
        "num.network.threads": "2",
        "num.io.threads": "2",
    }
    props.update(overrides or {})
    return props


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    # Java properties: backslashes and ':' / '=' in keys would need escaping; values here are
    # paths and lists, so only backslashes matter.
    path.write_text("".join(f"{k}={str(v).replace(chr(92), chr(92) * 2)}\n" for k, v in props.items()))


def _check_size(name: str, value: str) -> str:
    if not isinstance(value, str) or not _SIZE_RE.match(value):
        raise InputError(f"{name}={value!r}: expected a size such as 512m or 2g")
    return value


def _tail(path: Path, offset: int = 0, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    all_lines = text.rstrip().splitlines()
    errors = [ln for ln in all_lines if " ERROR " in ln or ln.startswith(FAILED_PREFIX)]
    causes = [ln for ln in all_lines if _EXCEPTION_RE.match(ln)]
    summary = f"first error: {errors[0][:1000]}\n" if errors else ""
    summary += f"  cause: {causes[0][:1000]}\n" if causes else ""
    return summary + "\n".join(ln[:1000] for ln in all_lines[-lines:])


def _cluster_id() -> str:
    """A new cluster id in Kafka's format (a random UUID, URL-safe base64 without padding)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


class LocalKafka:
    """One local Kafka broker process.

    ``LocalKafka().start()`` returns the (started) instance; use ``.bootstrap``, ``.pid`` and
    ``.stop()``, or ``with LocalKafka().start() as broker: ...``.
    """

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self._cache_dir = cache_dir
        self._proc: subprocess.Popen | None = None
        self._owned_dir: Path | None = None
        self._log_offset = 0
        self.bootstrap: str | None = None
        self.data_dir: Path | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"LocalKafka({self.bootstrap or '-'}, pid={self.pid}, {state}, data_dir={self.data_dir})"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(
        self,
        data_dir: str | os.PathLike | None = None,
        port: int | None = None,
        heap: str = "512m",
        timeout: float = 120.0,
        *,
        config: Mapping[str, str] | None = None,
        detach: bool = False,
    ) -> LocalKafka:
        """Start the broker and wait until it answers; return ``self``.

        ``data_dir`` holds ``server.properties``, the log segments (``kraft-logs/``) and this
        wrapper's log (``logs/launcher.log``); None means a fresh temporary directory that
        :meth:`stop` deletes. A directory formatted by an earlier start is reused as it is.
        ``port`` None picks a free loopback port (the controller's port is always picked).
        Without ``detach`` the broker exits when this Python process dies (it watches its
        stdin); with ``detach`` it runs in its own session and outlives us (the CLI's ``start``).
        ``config`` adds or overrides server properties. Raises :class:`StreamUnavailableError`
        with the end of the broker's log if it exits or does not answer within ``timeout`` s.
        """
        if self.is_running():
            raise StreamUnavailableError(f"{self!r} is already running")
        heap = _check_size("heap", heap)
        if port is not None and not (0 < int(port) < 65536):
            raise InputError(f"port={port!r}: expected 1..65535")
        if port is not None:
            _check_port_free(int(port))
        if data_dir is None:
            self._owned_dir = Path(tempfile.mkdtemp(prefix="graphrec-kafka-"))
            data_dir = self._owned_dir
        self.data_dir = Path(data_dir).expanduser().resolve()
        (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "logs" / "launcher.log"
        deadline = time.monotonic() + timeout
        try:
            stamp = _provision(LAUNCHER, self._cache_dir)
            # Picked ports can be taken by someone else before the broker binds them: try again.
            for attempt in range(3):
                broker_port = int(port) if port else free_port()
                props = server_properties(self.data_dir, broker_port, free_port(), config)
                _write_properties(self.data_dir / "server.properties", props)
                if attempt == 0:
                    self._format(stamp, props, deadline)
                try:
                    self._launch(stamp, f"127.0.0.1:{broker_port}", heap, detach, deadline, timeout)
                    break
                except StreamUnavailableError:
                    if attempt == 2 or port or "Address already in use" not in self._log_text():
                        raise
                    log.info("a picked port was taken meanwhile; starting Kafka again on other ports")
        except BaseException:
            self.stop(timeout=30)
            raise
        return self

    def _java(self, stamp: dict, heap: str, *args: str) -> list[str]:
        return [stamp["java"], f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS, "@" + stamp["argfile"], *args]

    def _format(self, stamp: dict, props: Mapping[str, str], deadline: float) -> None:
        """Format the log directories for KRaft unless an earlier start did."""
        assert self.data_dir is not None and self.log_path is not None
        meta_dir = props.get("metadata.log.dir") or props["log.dirs"].split(",")[0]
        meta = Path(meta_dir.strip()) / "meta.properties"
        if meta.is_file():  # StorageTool's --ignore-formatted would still refuse another cluster id
            with open(self.log_path, "a") as out:
                out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} storage already formatted ({meta})\n")
            return
        config = str(self.data_dir / "server.properties")
        cmd = self._java(stamp, "256m", STORAGE_TOOL, "format", "--config", config)
        cmd[cmd.index("-XX:+UseG1GC")] = "-XX:+UseSerialGC"  # a short-lived tool: the smallest JVM
        # "--cluster-id=ID", not two arguments: an id can start with "-" (1 in 64), which the
        # tool's argument parser would take for an option.
        cmd += [f"--cluster-id={_cluster_id()}", "--ignore-formatted"]
        with open(self.log_path, "ab") as out:
            out.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} formatting: {' '.join(cmd)}\n".encode())
            out.flush()
            offset = out.tell()
            try:
                rc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    timeout=max(1.0, deadline - time.monotonic()),
                ).returncode
            except subprocess.TimeoutExpired:
                rc = None
        if rc != 0:
            raise StreamUnavailableError(
                f"formatting Kafka's storage in {self.data_dir} failed ({'timed out' if rc is None else f'exit code {rc}'}); "
                f"last lines of {self.log_path}:\n{_tail(self.log_path, offset)}"
            )

    def _launch(
        self, stamp: dict, bootstrap: str, heap: str, detach: bool, deadline: float, timeout: float
    ) -> None:
        assert self.data_dir is not None and self.log_path is not None
        props = str(self.data_dir / "server.properties")
        cmd = self._java(stamp, heap, MAIN_CLASS, "--config", props, "--bootstrap", bootstrap)
        if not detach:
            cmd.append("--exit-on-stdin-eof")
        log.info("starting Kafka %s in %s (heap %s)", stamp["version"], self.data_dir, heap)
        log.debug("command: %s", cmd)
        t0 = time.monotonic()
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
                # meant for the foreground command does not stop the broker under it; we stop it.
                start_new_session=detach,
                process_group=None if detach else 0,
            )
        self.bootstrap = self._wait_ready(deadline, timeout)
        log.info(
            "Kafka ready at %s (pid %d) after %.1f s", self.bootstrap, self._proc.pid, time.monotonic() - t0
        )

    def _wait_ready(self, deadline: float, timeout: float) -> str:
        assert self._proc is not None and self.log_path is not None
        while time.monotonic() < deadline:
            rc = self._proc.poll()
            if rc is not None:
                self._proc = None
                raise StreamUnavailableError(
                    f"local Kafka exited with code {rc} while starting; last lines of {self.log_path}:\n"
                    f"{_tail(self.log_path, self._log_offset)}"
                )
            for line in self._log_text().splitlines():
                if line.startswith(READY_PREFIX):
                    return line[len(READY_PREFIX) :].strip()
            time.sleep(0.1)
        raise StreamUnavailableError(
            f"local Kafka did not answer within {timeout:.0f} s; last lines of {self.log_path}:\n"
            f"{_tail(self.log_path, self._log_offset)}"
        )

    def _log_text(self) -> str:
        assert self.log_path is not None
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL after ``timeout`` s. Idempotent. Deletes the data
        directory if :meth:`start` created it. Returns the exit code."""
        rc = None
        if self._proc is not None:
            rc = _terminate(self._proc, timeout)
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None
        return rc

    def __enter__(self) -> LocalKafka:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen, timeout: float) -> int:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Kafka (pid %d) did not stop within %.0f s; killing it", proc.pid, timeout)
            proc.kill()
    return proc.wait()


def broker_accepts(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether the first ``host:port`` of ``bootstrap`` accepts a TCP connection."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


# -- the command line (scripts/kafka_local.py; python -m graph.kafka_local) -------------------

CLI_DOC = """Run a real Apache Kafka 4 broker (KRaft, no ZooKeeper) locally, without Docker.

Needs a JDK 17+ and Maven; the first `provision` downloads about 45 MB into ~/.m2.
The broker listens on 127.0.0.1 only, PLAINTEXT (no TLS, no authentication), and does not
create topics automatically. When KAFKA_BOOTSTRAP is set, `run` uses that broker instead.

Examples:
  python scripts/kafka_local.py provision
  export KAFKA_BOOTSTRAP=$(python scripts/kafka_local.py start)   # background broker; prints host:port
  python scripts/kafka_local.py status
  python scripts/kafka_local.py stop
  python scripts/kafka_local.py run -- python -m pytest -q        # a broker just for this command
"""


def default_data_dir() -> Path:
    """Where ``start`` keeps its broker's data: ``$XDG_DATA_HOME/graphrec/kafka`` (``~/.local/share``)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphrec" / "kafka"


def default_state_file() -> Path:
    return default_cache_root() / "kafka-local.json"


def _is_ours(record: dict) -> bool:
    import psutil

    try:
        p = psutil.Process(record["pid"])
        if abs(p.create_time() - record.get("create_time", 0.0)) > 1.0:
            return False  # the pid was reused
        return MAIN_CLASS in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError):
        return False


def _load_state(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and _is_ours(record) else None


def _cmd_provision(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    target = provision(args.cache_dir)
    print(f"Kafka {kafka_version()} ready to start from {target} ({time.monotonic() - t0:.1f} s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    import psutil

    state = Path(args.state_file).expanduser()
    running = _load_state(state)
    if running is not None:
        log.warning(
            "already running (pid %d, data %s); `stop` first to change its settings",
            running["pid"],
            running["data_dir"],
        )
        print(running["bootstrap"])
        return 0
    broker = LocalKafka(args.cache_dir).start(
        data_dir=args.data_dir or default_data_dir(),
        port=args.port,
        heap=args.heap,
        timeout=args.timeout,
        detach=True,
    )
    assert broker.pid is not None
    record = {
        "pid": broker.pid,
        "create_time": psutil.Process(broker.pid).create_time(),
        "bootstrap": broker.bootstrap,
        "data_dir": str(broker.data_dir),
        "log": str(broker.log_path),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    os.replace(tmp, state)
    log.info("started Kafka (pid %d, data %s); state in %s", broker.pid, broker.data_dir, state)
    print(broker.bootstrap)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    import psutil

    state = Path(args.state_file).expanduser()
    record = _load_state(state)
    if record is None:
        log.info("no local Kafka running (recorded in %s)", state)
        state.unlink(missing_ok=True)
        return 0
    p = psutil.Process(record["pid"])
    with contextlib.suppress(psutil.NoSuchProcess):
        p.terminate()
        try:
            p.wait(args.timeout)
        except psutil.TimeoutExpired:
            log.warning("Kafka (pid %d) did not stop within %.0f s; killing it", record["pid"], args.timeout)
            p.kill()
            p.wait(30)
    state.unlink(missing_ok=True)
    log.info("stopped Kafka (pid %d, data %s)", record["pid"], record["data_dir"])
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    record = _load_state(Path(args.state_file).expanduser())
    if record is None:
        print("stopped")
        return 3
    answering = broker_accepts(record["bootstrap"])
    print(
        f"running {record['bootstrap']} pid={record['pid']} data={record['data_dir']} log={record['log']} "
        f"{'answering' if answering else 'NOT answering'}"
    )
    return 0 if answering else 1


def _call(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` to completion; SIGTERM to us is passed on; returns a shell-style exit code."""
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
            continue  # Ctrl-C reached the command through the terminal; wait for its teardown
    return 128 - rc if rc < 0 else rc


def _cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise SystemExit("run: give the command after --, e.g. `run -- python -m pytest -q`")
    bootstrap = kafka_bootstrap_from_env()
    if bootstrap:
        log.info("%s is set; using %s", BOOTSTRAP_ENV, bootstrap)
        return _call(command, dict(os.environ))
    broker = LocalKafka(args.cache_dir)
    try:
        broker.start(data_dir=args.data_dir, port=args.port, heap=args.heap, timeout=args.timeout)
        log.info("running %s with %s=%s", command, BOOTSTRAP_ENV, broker.bootstrap)
        env = {**os.environ, BOOTSTRAP_ENV: str(broker.bootstrap), LOCAL_BOOTSTRAP_ENV: str(broker.bootstrap)}
        return _call(command, env)
    finally:
        broker.stop()


def main(argv: list[str] | None = None, prog: str = "kafka_local.py") -> int:
    """The command line; ``scripts/kafka_local.py`` and ``python -m graph.kafka_local`` run it."""
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
        help="where `start` records its background broker (default %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = sub.add_parser(
        "provision", help="download the jars and compile the launcher (once; later runs are instant)"
    )
    s.set_defaults(func=_cmd_provision)

    def broker_options(s: argparse.ArgumentParser, data_help: str) -> None:
        s.add_argument("--data-dir", help=data_help)
        s.add_argument("--port", type=int, help="broker port on 127.0.0.1 (default: a free one)")
        s.add_argument("--heap", default="512m", help="JVM heap (default %(default)s)")
        s.add_argument(
            "--timeout",
            type=float,
            default=120.0,
            help="seconds to wait for the broker (default %(default)s)",
        )

    s = sub.add_parser("start", help="start a background broker (unless one runs); prints its host:port")
    broker_options(s, f"data directory (default {default_data_dir()}, kept across restarts)")
    s.set_defaults(func=_cmd_start)

    s = sub.add_parser("stop", help="stop the background broker (SIGTERM, SIGKILL after --timeout)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL (default %(default)s)")
    s.set_defaults(func=_cmd_stop)

    s = sub.add_parser(
        "status",
        help="is the background broker running and answering? (exit 0 yes, 1 not answering, 3 stopped)",
    )
    s.set_defaults(func=_cmd_status)

    s = sub.add_parser(
        "run",
        help="run a command against KAFKA_BOOTSTRAP, or a broker started just for it",
        description=f"Run CMD with {BOOTSTRAP_ENV} set. Uses {BOOTSTRAP_ENV} when already set; otherwise starts a "
        "local broker (fresh temporary data unless --data-dir), runs CMD, stops the broker and exits with CMD's code.",
        usage="%(prog)s [options] -- CMD [ARGS...]",
    )
    broker_options(s, "data directory (default: a temporary directory, deleted afterwards)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    s.set_defaults(func=_cmd_run)

    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="kafka_local: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except GraphRecError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
