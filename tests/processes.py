"""A process under test whose stderr lines are collected as they come, so a test can wait
for the line that says it is ready, and show everything it said when it fails."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
READY_S = 60.0  # a cold Numba cache compiles kernels before a process says it is ready
WAIT_S = 60.0


class Proc:
    """A flowscope (or tool) process; its stderr lines collected as they come."""

    def __init__(self, argv: list[str], name: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                     env=None if env is None else {**os.environ, **env})
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.lines.append("<eof>")
            self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return "\n".join(line for line in self.lines if line != "<eof>")

    def wait_for(self, pattern: str, timeout: float = READY_S) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails at process end or timeout."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    if m := re.search(pattern, line):
                        return m
                if "<eof>" in self.lines:
                    pytest.fail(f"{self.name} ended without {pattern!r}:\n{self.text}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f"{self.name}: no {pattern!r} in {timeout} s:\n{self.text}")
                self.cond.wait(remaining)

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not end within {timeout} s:\n{self.text}")
        self.reader.join(timeout)
        return rc

    def stop(self, sig: int = signal.SIGINT, timeout: float = WAIT_S) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
