"""``graphrec serve --compact-every S``: the supervisor runs ``graphrec compact`` in a child
process every S seconds and serves its output through the ordinary reload.

The child reads the events topic from where the previous compaction stopped, folds it into the
next snapshot and model (:mod:`graphrec.compact`) and exits; the supervisor then asks for a
reload of the new paths: the new workers start with empty live segments and their feeds start
at the compaction's offsets, so the live segments stay bounded by what arrives between two
compactions, and nothing is skipped or applied twice. The work runs in a separate process (not a
fork of the supervisor: it fits with the parallel kernels) at a lower CPU priority than the
workers. A failed compaction is logged and retried at the next interval; the served model stays.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from graphrec.compact import OFFSETS_FILE, read_offsets
from graphrec.serve.settings import ModelPaths

log = logging.getLogger(__name__)

#: Compaction outputs kept: the one served and the one before it (a worker still draining).
KEEP = 2


@dataclass(frozen=True)
class Compacted:
    """A finished compaction, ready to be served."""

    paths: ModelPaths
    offsets: dict[int, int]
    seconds: float


class Compactor:
    """Starts a compaction every ``every_s`` seconds (one at a time) into ``directory/gen-N``."""

    def __init__(self, every_s: float, directory: Path, live, nice: int = 10):
        self.every_s, self.directory, self.live, self.nice = float(every_s), Path(directory), live, nice
        self.directory.mkdir(parents=True, exist_ok=True)
        existing = sorted(int(p.name[4:]) for p in self.directory.glob("gen-*") if p.name[4:].isdigit())
        self._gen = existing[-1] if existing else 0
        self._proc: subprocess.Popen | None = None
        self._out: Path | None = None
        self._started = 0.0
        self._due = time.monotonic() + self.every_s
        self.ok = self.failed = 0

    def poll(self, serving: ModelPaths) -> Compacted | None:
        """Start a compaction of ``serving`` when one is due; a finished one when it is ready."""
        if self._proc is None:
            if time.monotonic() >= self._due:
                self._start(serving)
            return None
        code = self._proc.poll()
        if code is None:
            return None
        self._proc, out = None, self._out
        self._due = time.monotonic() + self.every_s
        seconds = time.monotonic() - self._started
        if code != 0 or out is None or not (out / OFFSETS_FILE).is_file():
            self.failed += 1
            log.error(
                "compaction into %s failed (exit code %s); serving on, next try in %gs",
                out,
                code,
                self.every_s,
            )
            return None
        self.ok += 1
        return Compacted(
            ModelPaths(out / "snapshot", out / "model"), read_offsets(out, self.live.topic) or {}, seconds
        )

    def _start(self, serving: ModelPaths) -> None:
        self._gen += 1
        out = self.directory / f"gen-{self._gen}"
        previous = serving.snapshot.parent if (serving.snapshot.parent / OFFSETS_FILE).is_file() else None
        cmd = [
            sys.executable,
            "-m",
            "graphrec",
            "compact",
            "--bootstrap",
            self.live.bootstrap,
            "--topic",
            self.live.topic,
            "--snapshot",
            str(serving.snapshot),
            "--out",
            str(out),
            "--start",
            self.live.start,
        ]
        if serving.model is not None:
            cmd += ["--model", str(serving.model)]
        else:
            cmd += ["--config", str(serving.config)] if serving.config is not None else []
            cmd += ["--embeddings", str(serving.embeddings)] if serving.embeddings is not None else []
        if previous is not None:
            cmd += ["--from", str(previous)]
        log.info("compaction %d: %s", self._gen, " ".join(cmd[2:]))
        self._out, self._started = out, time.monotonic()
        self._proc = subprocess.Popen(cmd, preexec_fn=lambda: os.nice(self.nice))

    def prune(self, serving: ModelPaths) -> None:
        """Drop compaction outputs older than the last ``KEEP`` (never the one served)."""
        gens = sorted(
            (p for p in self.directory.glob("gen-*") if p.name[4:].isdigit()), key=lambda p: int(p.name[4:])
        )
        for old in gens[:-KEEP]:
            if old != serving.snapshot.parent:
                shutil.rmtree(old, ignore_errors=True)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
