"""Offline, isolated test environment: temporary Prefect home, telemetry off, one migrated MLflow DB."""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="genie-tests-"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # workers share the cores: one torch thread each, children included
    os.environ["OMP_NUM_THREADS"] = "1"
from flows.environment import QUIET  # noqa: E402  (it imports neither Prefect nor MLflow)

os.environ.update(
    QUIET | {
        "PREFECT_HOME": str(_HOME / "prefect"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(_HOME / "prefect" / "storage"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "HF_HUB_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
)
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # this process's Prefect home and results

import pytest  # noqa: E402

# The longest files first (measured with --durations), so that the two workers of `make test` (which keeps files in
# collection order: --no-loadscope-reorder) end together instead of one waiting out the last long file alone.
LONGEST_FIRST = ("flows/test_benchmark.py", "reliability/test_nights.py", "reliability/test_generation_faults.py",
                 "flows/test_pipeline.py", "flows/test_incremental.py", "reliability/test_inputs.py",
                 "servers/test_stack.py", "flows/test_generate.py", "flows/test_dvc.py", "flows/test_dask.py",
                 "flows/test_schedule.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0].removeprefix("tests/"), len(rank)))  # stable


@pytest.fixture(scope="session")
def prefect_server():
    """One temporary Prefect API for the whole session (each start costs seconds); yields its URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory) -> Path:
    """A migrated MLflow SQLite DB, copied per test (migrating a fresh one costs seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "template.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_template) -> Path:
    """An empty project folder as cwd, with its own MLflow store (MLflow reads the variable on every call)."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


@pytest.fixture(scope="session")
def digits(tmp_path_factory) -> Path:
    """The embedded digits exported once, read-only for tests."""
    from models.dataset import export_digits

    root = tmp_path_factory.mktemp("digits") / "digits"
    export_digits(root)
    return root
