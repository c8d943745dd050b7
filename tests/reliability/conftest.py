"""Faults and hostile inputs driven through the `genie` command line, as a user meets them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

GENIE = Path(sys.executable).parent / "genie"
TINY = ["generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=4",
        "generator.batch_size=4", "classifier.epochs=1", "finetune.epochs=1", "select.per_target=2"]


@pytest.fixture(scope="session", autouse=True)
def _prefect(prefect_server):
    yield


@pytest.fixture
def genie(project, prefect_server):
    """Run `genie ARGS` in the project folder (tiny budgets), on the session's Prefect API; returns the process."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server}

    def run(*args, background: bool = False, tiny: bool = True):
        command = [str(GENIE), *args, *(a for kv in (TINY if tiny else []) for a in ("--set", kv))]
        if background:
            return subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)

    return run
