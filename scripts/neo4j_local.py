"""Run a real Neo4j Community 5.26 server locally, without Docker (jars from Maven Central).

Needs a JDK 17 (or 21) and Maven; the first `provision` downloads about 125 MB into ~/.m2.
The server listens on 127.0.0.1 only, with authentication disabled (connect with auth=None).
When NEO4J_URI is set, `run` uses that server instead of starting one (e.g. `docker compose up -d`).

Examples:
  python scripts/neo4j_local.py provision
  export NEO4J_URI=$(python scripts/neo4j_local.py start)     # background server, prints its URI
  python scripts/neo4j_local.py status
  python scripts/neo4j_local.py stop
  python scripts/neo4j_local.py run -- python -m pytest -q    # server just for this command
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.errors import GraphRecError  # noqa: E402
from graph.neo4j_local import (  # noqa: E402
    LocalNeo4j,
    default_cache_root,
    is_launcher_process,
    neo4j_uri_from_env,
    neo4j_version,
    process_create_time,
    provision,
    stop_pid,
)

log = logging.getLogger("neo4j_local")


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "graphrec" / "neo4j"


def _read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _running(state: dict | None) -> bool:
    return bool(state) and is_launcher_process(state["pid"], state.get("create_time"))


def cmd_provision(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    target = provision(args.cache_dir)
    print(f"Neo4j {neo4j_version()} ready to start from {target} ({time.monotonic() - t0:.1f} s)")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    state = _read_state(args.state_file)
    if _running(state):
        log.warning(
            "already running (pid %d, data %s); `stop` it first to change settings",
            state["pid"],
            state["data_dir"],
        )
        print(state["uri"])
        return 0
    data_dir = Path(args.data_dir).expanduser() if args.data_dir else _default_data_dir()
    server = LocalNeo4j(args.cache_dir).start(
        data_dir=data_dir,
        port=args.port,
        heap=args.heap,
        pagecache=args.pagecache,
        timeout=args.timeout,
        detach=True,
    )
    state = {
        "pid": server.pid,
        "create_time": process_create_time(server.pid),
        "uri": server.uri,
        "data_dir": str(server.data_dir),
        "log": str(server.log_path),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.state_file.parent.mkdir(parents=True, exist_ok=True)
    args.state_file.write_text(json.dumps(state, indent=1) + "\n")
    log.info("started Neo4j (pid %d, data %s); state in %s", server.pid, server.data_dir, args.state_file)
    print(server.uri)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    state = _read_state(args.state_file)
    if not state:
        log.info("no local Neo4j recorded in %s", args.state_file)
        return 0
    if stop_pid(state["pid"], timeout=args.timeout, create_time=state.get("create_time")):
        log.info("stopped Neo4j (pid %d)", state["pid"])
    else:
        log.info("Neo4j (pid %d) was not running", state["pid"])
    args.state_file.unlink(missing_ok=True)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = _read_state(args.state_file)
    if not _running(state):
        print("stopped")
        if state:
            args.state_file.unlink(missing_ok=True)  # stale: the process is gone
        return 3
    import neo4j

    try:
        with neo4j.GraphDatabase.driver(state["uri"], auth=None, connection_timeout=5) as driver:
            driver.verify_connectivity()
        answer = "answering"
    except Exception as exc:  # noqa: BLE001 - reported as is
        answer = f"NOT answering ({exc})"
    print(
        f"running {state['uri']} pid={state['pid']} data={state['data_dir']} log={state['log']} bolt {answer}"
    )
    return 0 if answer == "answering" else 1


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


def cmd_run(args: argparse.Namespace) -> int:
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
            )
            log.info("running %s with NEO4J_URI=%s", command, server.uri)
            return _call(command, env={**os.environ, "NEO4J_URI": server.uri})
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="neo4j_local.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cache-dir", type=Path, help=f"where provisioned jars live (default {default_cache_root()})"
    )
    p.add_argument(
        "--state-file",
        type=Path,
        default=default_cache_root() / "neo4j-local.json",
        help="where `start` records the background server (default %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = sub.add_parser(
        "provision", help="download the jars and compile the launcher (once; later runs are instant)"
    )
    s.set_defaults(func=cmd_provision)

    def server_options(s: argparse.ArgumentParser, data_help: str) -> None:
        s.add_argument("--data-dir", help=data_help)
        s.add_argument("--port", type=int, help="Bolt port on 127.0.0.1 (default: a free one)")
        s.add_argument("--heap", default="1g", help="JVM heap (default %(default)s)")
        s.add_argument("--pagecache", default="256m", help="Neo4j page cache (default %(default)s)")
        s.add_argument(
            "--timeout", type=float, default=180.0, help="seconds to wait for Bolt (default %(default)s)"
        )

    s = sub.add_parser("start", help="start a background server; prints its bolt:// URI")
    server_options(s, f"Neo4j home: store and logs (default {_default_data_dir()}, kept across restarts)")
    s.set_defaults(func=cmd_start)

    s = sub.add_parser("stop", help="stop the background server (SIGTERM, SIGKILL after --timeout)")
    s.add_argument("--timeout", type=float, default=60.0, help="seconds before SIGKILL (default %(default)s)")
    s.set_defaults(func=cmd_stop)

    s = sub.add_parser(
        "status", help="is the background server running and answering? (exit 0 yes, 3 stopped)"
    )
    s.set_defaults(func=cmd_status)

    s = sub.add_parser(
        "run",
        help="run a command against NEO4J_URI, or a server started just for it",
        description="Run CMD with NEO4J_URI set. Uses NEO4J_URI when already set; otherwise starts a local "
        "server (fresh temporary store unless --data-dir), runs CMD, stops the server and exits with CMD's code.",
        usage="%(prog)s [options] -- CMD [ARGS...]",
    )
    server_options(s, "Neo4j home (default: a temporary directory, deleted afterwards)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    s.set_defaults(func=cmd_run)

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
    sys.exit(main())
