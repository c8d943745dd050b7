"""Only the team gets in: the stack's servers ask for a password, each member's role is enforced by the servers
(MLflow's permissions) or by genie's worker, and no generated password is left anywhere a night writes. Traffic to
loopback only. A tier of its own with the races (`make test-faults`)."""
import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psycopg2
import pytest

from flows.servers.stack import PG_BIN, USER
from tests.servers.team import finished, genie, night_args, stack_command, summary

pytestmark = [pytest.mark.servers, pytest.mark.faults]
MODEL = "digits-classifier"


def status(url: str, method: str = "GET", body: dict | None = None, login: str | None = None) -> int:
    headers = {"Content-Type": "application/json"} | (
        {"Authorization": "Basic " + base64.b64encode(login.encode()).decode()} if login else {})
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def team(servers, tmp_path_factory):
    """The servers up with authentication (the default), and one member of each role."""
    assert stack_command(servers, "up").returncode == 0
    for name, role in (("rita", "reader"), ("wanda", "worker"), ("walt", "worker"), ("ada", "admin")):
        added = genie("stack", "user", "add", name, "--role", role, "--folder", str(servers.root),
                      cwd=servers.root.parent)
        assert added.returncode == 0, added.stderr
    home = tmp_path_factory.mktemp("homes")

    def member(name: str) -> dict:
        return os.environ | servers.environment(name) | {"PREFECT_HOME": str(home / name)}

    return member


def test_no_server_lets_in_a_process_without_credentials(servers, team):
    mlflow, prefect = servers.urls()["MLFLOW_TRACKING_URI"], servers.urls()["PREFECT_API_URL"]
    assert status(f"{mlflow}/api/2.0/mlflow/registered-models/search") == 401
    assert status(f"{mlflow}/api/2.0/mlflow/registered-models/alias", "POST",
                  {"name": MODEL, "alias": "champion", "version": "1"}) == 401
    assert status(f"{prefect}/deployments/filter", "POST", {}) == 401
    assert status(f"{prefect}/deployments/", "POST", {"name": "x", "flow_id": "00000000-0000-0000-0000-000000000000"}
                  ) == 401
    assert status(f"{prefect}/deployments/filter", "POST", {}, login="genie:not-the-password") == 401
    for url in (f"postgresql://{USER}@127.0.0.1:{servers.postgres_port}/genie",
                f"postgresql://{USER}:wrong@127.0.0.1:{servers.postgres_port}/genie"):
        with pytest.raises(psycopg2.OperationalError, match="password"):
            psycopg2.connect(url, connect_timeout=10)
    # each server's own role reaches its own databases only: pg_hba.conf has no line for another's
    with pytest.raises(psycopg2.OperationalError, match='no pg_hba.conf entry for host "127.0.0.1", user "prefect", '
                       'database "mlflow"'):
        psycopg2.connect(servers.database_url("mlflow", role="prefect"), connect_timeout=10)

    # genie's commands stop at once with one line naming the server and what is missing
    bare = {k: v for k, v in team("rita").items() if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    said = genie("lineage", f"{MODEL}@champion", cwd=servers.root.parent, env=bare)
    assert said.returncode == 1 and said.stderr.strip().splitlines()[-1] == (
        f"error: the MLflow server at {mlflow} asks for a login (401): set MLFLOW_TRACKING_USERNAME/PASSWORD "
        "(your file from `genie stack user add`)"), said.stderr
    wrong = team("rita") | {"MLFLOW_TRACKING_PASSWORD": "not-hers"}
    said = genie("lineage", f"{MODEL}@champion", cwd=servers.root.parent, env=wrong)
    assert said.returncode == 1 and said.stderr.strip().splitlines()[-1] == (
        f"error: the MLflow server at {mlflow} refused user 'rita' (401): check MLFLOW_TRACKING_USERNAME/PASSWORD")
    said = genie(*night_args(), cwd=servers.root.parent, env=team("wanda") | {"PREFECT_API_AUTH_STRING": "genie:x"})
    assert said.returncode == 1 and said.stderr.strip().splitlines()[-1] == (
        f"error: the Prefect server at {prefect} refused the credential (401): check PREFECT_API_AUTH_STRING")


def test_each_role_may_do_what_it_is_for_and_nothing_more(servers, team, tmp_path):
    machine = tmp_path / "worker-machine"
    machine.mkdir()
    night = genie(*night_args(), cwd=machine, env=team("wanda"))  # a worker's night: runs, registers, crowns
    assert night.returncode == 0, night.stderr[-3000:]
    outcome = summary(night)
    reader = team("rita")
    log = json.loads(genie("decisions", cwd=tmp_path, env=reader).stdout)
    assert log and all(row["who"].startswith("wanda@") for row in log)
    champion = next(row["version"] for row in log if row["action"] not in ("refused", "waiting"))
    other = next(v for v in (outcome["baseline_version"], outcome["challenger_version"]) if v != champion)

    assert "PREFECT_API_AUTH_STRING" not in reader and "GENIE_DATABASE_URL" not in reader
    lineage = genie("lineage", f"{MODEL}@champion", cwd=tmp_path, env=reader)
    assert lineage.returncode == 0 and json.loads(lineage.stdout)["model"].startswith(MODEL), lineage.stderr
    moved = genie("promote", other, cwd=tmp_path, env=reader)
    assert moved.returncode == 1 and moved.stderr.strip().splitlines()[-1] == (
        f"error: the MLflow server at {servers.urls()['MLFLOW_TRACKING_URI']} refused user 'rita' (403): the reader "
        "role lacks the permission to move champion"), moved.stderr
    login = f"rita:{reader['MLFLOW_TRACKING_PASSWORD']}"
    assert status(f"{servers.urls()['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/registered-models/alias", "POST",
                  {"name": MODEL, "alias": "champion", "version": other}, login=login) == 403
    assert status(f"{servers.urls()['PREFECT_API_URL']}/deployments/filter", "POST", {}, login=login) == 401

    admin = team("ada")
    by_hand = genie("promote", other, cwd=tmp_path, env=admin)
    assert by_hand.returncode == 0, by_hand.stderr
    # MLflow's EDIT covers moving aliases, not deleting: a worker cannot delete a version (the worker whose night
    # created the registered model can: MLflow gives every creator MANAGE)
    walt = f"walt:{team('walt')['MLFLOW_TRACKING_PASSWORD']}"
    assert status(f"{servers.urls()['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/model-versions/delete", "DELETE",
                  {"name": MODEL, "version": other}, login=walt) == 403
    back = genie("rollback", "--reason", "test", cwd=tmp_path, env=admin)
    assert back.returncode == 0, back.stderr
    log = json.loads(genie("decisions", cwd=tmp_path, env=reader).stdout)
    assert [row["action"] for row in log[:2]] == ["rolled back", "promoted by hand"]
    assert log[0]["who"].startswith("ada@") and log[0]["version"] == champion


FOREIGN = """
import sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
with get_client(sync_client=True) as client:
    try:
        client.create_work_pool(WorkPoolCreate(name="genie", type="process"))
    except ObjectAlreadyExists:
        pass
    flow_id = client.create_flow_from_name("not-a-night")
    deployment = client.create_deployment(flow_id=flow_id, name="foreign", work_pool_name="genie",
        entrypoint="flows.pipeline.genie_nightly",
        pull_steps=[{"prefect.deployments.steps.run_shell_script": {"script": "touch " + sys.argv[1]}}])
    print(client.create_flow_run_from_deployment(deployment).id)
    # genie's own night, steered elsewhere by its parameters: a Dask scheduler of the insider's
    steered = client.create_deployment(flow_id=client.create_flow_from_name("genie-nightly"), name="steered",
        work_pool_name="genie", entrypoint="flows.pipeline.genie_nightly")
    print(client.create_flow_run_from_deployment(steered, parameters={"overrides": [
        "runner.kind=dask", "runner.dask_address=tcp://127.0.0.1:" + sys.argv[2]]}).id)
"""


def test_a_worker_runs_no_deployment_but_genies_own(servers, team, tmp_path):
    written, listener = tmp_path / "owned", socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    args = [sys.executable, "-c", FOREIGN, str(written), str(listener.getsockname()[1])]
    stranger = {k: v for k, v in team("wanda").items() if k != "PREFECT_API_AUTH_STRING"}
    refused = subprocess.run(args, env=stranger, capture_output=True, text=True)
    assert refused.returncode != 0 and "401" in refused.stderr  # no credential: the server refuses the deployment
    holder = team("ada")  # whoever holds the team's Prefect credential can create one: the worker refuses it
    made = subprocess.run(args, env=holder, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr[-2000:]
    run_id, steered_id = made.stdout.strip().splitlines()[-2:]
    project = tmp_path / "project"
    project.mkdir()
    worker = genie("worker", "--pool", "genie", "--project", str(project), "--run-once", cwd=tmp_path,
                   env=team("wanda"), background=True)
    done = finished(worker, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    time.sleep(2)
    assert not written.exists()
    said = done.stdout + done.stderr
    assert "refused flow run" in said and "'foreign'" in said
    assert "'steered': override runner.kind: a scheduled night may change only what it learns" in said
    with pytest.raises(TimeoutError):
        listener.accept()  # the insider's scheduler: no night ever connects
    listener.close()
    with psycopg2.connect(servers.database_url("prefect")) as connection, connection.cursor() as cursor:
        for refused_run in (run_id, steered_id):
            cursor.execute("SELECT state_type, state_name FROM flow_run WHERE id = %s", (refused_run,))
            assert cursor.fetchone()[0] == "CANCELLED"
    connection.close()


def test_no_generated_password_is_left_where_a_night_writes(servers, team, tmp_path):
    machine = tmp_path / "machine"
    machine.mkdir()
    night = genie(*night_args("select.seed=2"), cwd=machine, env=team("wanda"))
    assert night.returncode == 0, night.stderr[-3000:]
    passwords = {value for key, value in servers.secrets._read()["passwords"].items()} | {
        team(name)["MLFLOW_TRACKING_PASSWORD"] for name in ("rita", "wanda", "ada")}
    dumps = b""
    for database in ("mlflow", "mlflow_auth", "prefect", "genie"):
        dumps += subprocess.run([str(PG_BIN / "pg_dump"), servers.database_url(database, role=USER)],
                                capture_output=True, check=True).stdout
    places = [path for folder in (machine, servers.folder) for path in folder.rglob("*")
              if path.is_file() and servers.secrets.folder not in path.parents and "postgres" not in path.parts]
    assert len(places) > 20 and any(path.suffix == ".log" for path in places)
    for password in passwords:
        assert password.encode() not in dumps
        for path in places:
            assert password.encode() not in path.read_bytes(), path
    for command in (["stack", "status", "--folder", str(servers.root)], ["stack", "user", "list", "--folder",
                                                                          str(servers.root)]):
        shown = genie(*command, cwd=servers.root.parent)
        assert shown.returncode == 0 and not any(p in shown.stdout + shown.stderr for p in passwords)
    for command in (["config"], ["lineage", f"{MODEL}@champion"], ["decisions"]):
        shown = genie(*command, cwd=machine, env=team("wanda"))
        assert shown.returncode == 0 and not any(p in shown.stdout + shown.stderr for p in passwords), command
    readable = [path for path in [servers.folder, *servers.folder.rglob("*")]
                if not path.is_symlink() and path.stat().st_mode & 0o044]
    assert not readable, readable[:10]  # the stack's folder, logs, databases and artifacts: their owner's alone
    assert any((servers.folder / "mlartifacts").rglob("*.safetensors"))  # the night's artifacts were looked at
