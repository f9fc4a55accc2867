"""pytest fixtures for the compat suites (compat/python, compat/kcat).

Each pytest run starts one `nerve serve` on a free port with its own temporary data directory and stops it
with SIGTERM at the end, asserting a clean exit. Tests never share a topic: each asks `new_topic()` for a
unique name, so tests may run in any order or in parallel (one broker per pytest-xdist worker) and never
depend on what else the broker holds.

NERVE_LOG sets the broker's RUST_LOG (default `info`); NERVE_COMPAT_KEEP_LOGS=1 keeps its log and data
directory after a passing run (they are always kept after a failing one).
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from nerve_compat import Nerve, unique_name


@pytest.fixture(scope="session")
def nerve(request):
    """One broker for the whole pytest run (each xdist worker gets its own)."""
    workdir = Path(tempfile.mkdtemp(prefix="nerve-compat-"))
    broker = Nerve(workdir / "data", workdir / "nerve.log")
    broker.start()
    yield broker
    code = broker.stop()
    failed = request.session.testsfailed
    if failed or code != 0:
        print(f"\n--- nerve log ({broker.log_path}) ---\n{broker.log_tail()}\n---")
    elif os.environ.get("NERVE_COMPAT_KEEP_LOGS") == "1":
        print(f"\nnerve log kept in {broker.log_path}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    assert code == 0, f"nerve exited with {code} after SIGTERM (log kept in {workdir})"


@pytest.fixture
def bootstrap(nerve) -> str:
    return nerve.bootstrap


@pytest.fixture
def new_topic(request):
    """Returns a function that makes a topic name no other test uses."""
    def make(suffix: str = "") -> str:
        return unique_name(request.node.name + suffix)

    return make


SECURED_USERS = {"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="session")
def secured(request):
    """One secured broker for the security tests (see nerve_compat.SecuredNerve): users admin, alice and
    bob; alice may read and write topics and groups starting with `secure-`, the client certificate
    `CN=carol,O=Acme` may read and write topics starting with `mtls-`."""
    from nerve_compat import SecuredNerve

    workdir = Path(tempfile.mkdtemp(prefix="nerve-compat-secured-"))
    broker = SecuredNerve(workdir, SECURED_USERS)
    broker.start()
    for operation in ("read", "write"):
        broker.admin("acl", "add", "--allow", "--principal", "User:alice", "--operation", operation,
                     "--topic", "secure-", "--prefixed")
        broker.admin("acl", "add", "--allow", "--principal", "User:CN=carol,O=Acme",
                     "--operation", operation, "--topic", "mtls-", "--prefixed")
    broker.admin("acl", "add", "--allow", "--principal", "User:alice", "--operation", "read",
                 "--group", "secure-", "--prefixed")
    broker.carol = broker.pki.client("carol", "/O=Acme/CN=carol")
    yield broker
    code = broker.stop()
    if request.session.testsfailed or code != 0:
        print(f"\n--- secured nerve log ({broker.log_path}) ---\n{broker.log_tail()}\n---")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    assert code == 0, f"nerve exited with {code} after SIGTERM (log kept in {workdir})"
