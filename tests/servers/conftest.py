"""The team's servers for a test run: started from the project's own code (`genie stack`) on free ports, in a
folder the `postgres` user can reach (pytest's own are private to their owner)."""
import shutil
import tempfile
from pathlib import Path

import pytest

from flows.servers.stack import Stack
from tests.ports import free_port


@pytest.fixture(scope="module")
def servers():
    folder = Path(tempfile.mkdtemp(prefix="genie-stack-"))
    folder.chmod(0o755)
    stack = Stack(folder / "servers", "127.0.0.1", free_port(), free_port(), free_port())
    yield stack
    stack.remove()
    shutil.rmtree(folder, ignore_errors=True)
