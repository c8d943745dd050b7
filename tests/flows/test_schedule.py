"""The nightly deployment on a real local Prefect server: registered with its cron, run once."""
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from models.params import load_settings
from tests.ports import free_port

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

REPO = Path(__file__).resolve().parents[2]



def wait_for(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def test_serve_registers_the_cron_deployment_and_runs_it(project: Path, tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": api, "PREFECT_RUNNER_POLL_FREQUENCY": "2",
           "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    settings = load_settings(REPO / "params.yaml")
    (project / "params.yaml").write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    serving = None
    try:
        wait_for(lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200, 120, "the Prefect server")
        log = open(project / "serve.log", "w")
        serving = subprocess.Popen(["genie", "serve", "--until", "prepare"], cwd=project, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deployment = wait_for(
            lambda: (r := httpx.get(f"{api}/deployments/name/genie-nightly/nightly", timeout=2)).status_code == 200
            and r.json(), 120, "the deployment")
        [schedule] = deployment["schedules"]
        assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["schedule"]["timezone"] == "UTC"

        # a server still busy registering the deployment can answer the first request with an error
        run = wait_for(
            lambda: (r := httpx.post(f"{api}/deployments/{deployment['id']}/create_flow_run", json={}, timeout=5))
            .status_code in (200, 201) and r.json(), 60, "the flow run to be created")
        state = wait_for(
            lambda: (s := httpx.get(f"{api}/flow_runs/{run['id']}", timeout=2).json()["state"]["type"])
            in ("COMPLETED", "FAILED", "CRASHED") and s, 240, "the flow run")
        assert state == "COMPLETED", (project / "serve.log").read_text()[-3000:]
        assert (project / "artifacts/digits/split/split.csv").is_file() and (project / "data.dvc").is_file()
    finally:
        for process in (serving, server):
            if process is not None:
                os.killpg(process.pid, 15)
                process.wait(30)
