"""One exception root for the project, so callers can catch everything we raise, and the
command-line plumbing every entry point shares (its parser, its error handling)."""

from __future__ import annotations

import argparse


class GraphRecError(Exception):
    """Base class of every error the project raises on purpose."""


class InputError(GraphRecError):
    """Bad input data: names the file and line (or the id) that is wrong."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class SnapshotError(GraphRecError):
    """A snapshot or artifact is missing, corrupt or from another graph."""


class StoreUnavailableError(GraphRecError):
    """The store (e.g. a Neo4j server) cannot be reached."""


class StreamUnavailableError(GraphRecError):
    """The event stream (a Kafka broker) cannot be reached, started or written to."""


class StoreAuthError(StoreUnavailableError):
    """The store refused the credentials, or needs some and none were given; the message says
    which were sent and where to put the right ones."""


def command_parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    """A command's parser with ``-v/--verbose`` (read by :func:`run_command`) and its
    sub-command collection: (parser, subparsers)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def run_command(args, label: str) -> int:
    """Run a parsed command line (``args.func(args)``) the way every entry point does: log level
    from ``args.verbose``; a :class:`GraphRecError` becomes ``label: error: ...`` on stderr and
    exit code 2 (no traceback), Ctrl-C exit code 130."""
    import logging
    import sys

    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except GraphRecError as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
