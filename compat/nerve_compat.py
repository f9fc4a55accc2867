"""Helpers shared by the compat suites: a `nerve serve` child process and a bounded wait.

Nothing here asserts on timing: waits are bounded only so that a broken broker fails a test instead of
hanging the run.
"""

import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NERVE_BIN = Path(os.environ.get("NERVE_BIN", REPO / "target" / "debug" / "nerve"))

# Generous bound for anything that should happen "soon". Not a performance promise: a guard against hangs.
PATIENCE_S = 60


class Nerve:
    """A `nerve serve` child process listening on 127.0.0.1:<port>."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = None
        self.registry_port = None
        self.http_port = None
        self.process = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}"

    @property
    def http_url(self) -> str:
        """The HTTP server's base URL: /metrics, /healthz, /readyz, /v1/."""
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, port=None):
        """Starts nerve on `port` (a free one if None) and waits until it accepts connections. Restarting on
        the same data directory and port is how tests check what survives a restart."""
        if not NERVE_BIN.exists():
            pytest.exit(f"{NERVE_BIN} does not exist: run `cargo build -p nerve` (compat/run does)", 2)
        # A port picked free can be taken by someone else before nerve binds it; then nerve exits and we
        # try another.
        for _attempt in range(1 if port else 5):
            self.port = port or free_port()
            # A restart keeps the registry's port too, so clients that cached the URL still reach it.
            if not (port and self.registry_port):
                self.registry_port = free_port()
            if not (port and self.http_port):
                self.http_port = free_port()
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen(
                [
                    str(NERVE_BIN),
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--kafka-listen",
                    self.bootstrap,
                    "--registry-listen",
                    f"127.0.0.1:{self.registry_port}",
                    "--http-listen",
                    f"127.0.0.1:{self.http_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "RUST_LOG": os.environ.get("NERVE_LOG", "info")},
            )
            log.close()
            if self._wait_until_accepting():
                return
        raise RuntimeError(f"nerve did not start; its log:\n{self.log_tail()}")

    def _wait_until_accepting(self) -> bool:
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                for port in (self.port, self.registry_port, self.http_port):
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        pass
                return True
            except OSError:
                time.sleep(0.05)
        self.process.kill()
        self.process.wait()
        return False

    def stop(self) -> int:
        """SIGTERM, then wait; returns the exit code (killing after PATIENCE_S if it never exits)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=PATIENCE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return -9

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique_name(stem: str) -> str:
    """A topic name no other test uses: the test's name (sanitized) plus a random suffix."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-")[:60]
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate, what: str, timeout_s: float = PATIENCE_S, interval_s: float = 0.1):
    """Polls `predicate` until it returns something truthy and returns it; fails the test if it never does."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(interval_s)
