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

    def start(self, port=None, extra_args=()):
        """Starts nerve on `port` (a free one if None) and waits until it accepts connections. Restarting on
        the same data directory and port is how tests check what survives a restart. `extra_args` go to
        `nerve serve` (e.g. `--config FILE`)."""
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
                    *extra_args,
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


def run_nerve(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Runs the `nerve` command (a client command, not serve) and returns what it did; fails the test when
    it exits non-zero."""
    done = subprocess.run(
        [str(NERVE_BIN), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )
    if done.returncode != 0:
        pytest.fail(f"nerve {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=PATIENCE_S)


class TestPki:
    """A CA, a server certificate for localhost/127.0.0.1 and client certificates, made with `openssl` as
    docs/security.md shows."""

    __test__ = False

    def __init__(self, directory: Path):
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_cert = directory / "ca.pem"
        self.ca_key = directory / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-days", "3650", "-subj", "/CN=Nerve Compat CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout", str(self.ca_key), "-out", str(self.ca_cert))
        self.server_cert, self.server_key = self.sign(
            "server", "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")

    def client(self, name: str, subject: str):
        return self.sign(name, subject, "extendedKeyUsage=clientAuth\n")

    def sign(self, name: str, subject: str, extensions: str):
        cert, key = self.dir / f"{name}.pem", self.dir / f"{name}.key"
        csr, ext = self.dir / f"{name}.csr", self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\n" + extensions.replace("\\n", "\n"))
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-subj", subject, "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert), "-CAkey", str(self.ca_key),
                "-CAcreateserial", "-days", "3650", "-extfile", str(ext), "-out", str(cert))
        return cert, key


class SecuredNerve(Nerve):
    """A `nerve serve` with PLAINTEXT, SASL_SSL and SSL listeners, the authorizer on and `admin` a super user.
    Users are created with `nerve user create --data-dir` before the start, ACLs with `nerve acl add`
    through the SASL_SSL listener, as an operator sets Nerve up."""

    def __init__(self, workdir: Path, users: dict):
        super().__init__(workdir / "data", workdir / "nerve.log")
        self.workdir = workdir
        self.pki = TestPki(workdir / "pki")
        self.users = users
        self.sasl_ssl_port = None
        self.ssl_port = None

    def start(self, port=None, extra_args=()):
        for user, password in self.users.items():
            run_nerve("user", "create", user, "--password-stdin", "--data-dir", str(self.data_dir),
                      stdin=password + "\n")
        self.sasl_ssl_port, self.ssl_port = free_port(), free_port()
        plaintext = free_port()
        config = self.workdir / "nerve.toml"
        config.write_text(f"""
[kafka]
listeners = "PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{self.sasl_ssl_port},SSL://127.0.0.1:{self.ssl_port}"
authorizer_enabled = true
super_users = ["User:admin"]

[tls]
cert_file = "{self.pki.server_cert}"
key_file = "{self.pki.server_key}"
ca_file = "{self.pki.ca_cert}"
client_auth = "requested"
""")
        super().start(port=plaintext, extra_args=["--config", str(config), *extra_args])

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_ssl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    def sasl(self, user: str, password: str) -> dict:
        """librdkafka settings for `user` on the SASL_SSL listener with SCRAM-SHA-512."""
        return {
            "bootstrap.servers": self.sasl_ssl_bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": password,
            "ssl.ca.location": str(self.pki.ca_cert),
        }

    def admin(self, *args: str) -> subprocess.CompletedProcess:
        """Runs a `nerve` client command as `admin` over SASL_SSL."""
        settings = self.sasl("admin", self.users["admin"])
        bootstrap = settings.pop("bootstrap.servers")
        flags = [f"-X{k}={v}" for k, v in settings.items()]
        return run_nerve(*args, "--bootstrap", bootstrap, *flags)
