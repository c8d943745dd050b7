"""Faults and hostile inputs driven through the `genie` command line, as a user meets them. Each module
shares one project folder (its tests build on one another in file order), which saves the process starts."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

GENIE = Path(sys.executable).parent / "genie"
TINY = ["generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=4",
        "generator.batch_size=4", "generator.adapter.steps=4", "classifier.epochs=1", "finetune.epochs=1",
        "select.per_target=2"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, mlflow_template, prefect_server):
    """A project folder as cwd with its own MLflow store, for the whole module."""
    folder = tmp_path_factory.mktemp("project")
    shutil.copy(mlflow_template, folder / "mlflow.db")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("PREFECT_API_URL", prefect_server)
        yield folder


@pytest.fixture(scope="module")
def genie(project):
    """Run `genie ARGS` in the project folder (tiny budgets, plus the module's `extra` settings)."""
    extra: list[str] = []

    def run(*args, background: bool = False):
        command = [str(GENIE), *args, *(a for kv in TINY + extra for a in ("--set", kv))]
        if background:
            return subprocess.Popen(command, cwd=project, env=os.environ.copy(), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
        return subprocess.run(command, cwd=project, env=os.environ.copy(), capture_output=True, text=True,
                              timeout=600)

    run.extra = extra
    return run
