"""The team's servers, real and started by the project: PostgreSQL, the MLflow tracking server on it with proxied
artifacts, the Prefect server on it. A night runs through them; down and up again, they still hold it."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from flows.servers.stack import Stack
from models.locks import server_locked
from tests.servers.team import GENIE, genie, night_args, stack_command, summary

pytestmark = [pytest.mark.servers, pytest.mark.nights]


def test_a_night_runs_through_the_team_servers_and_they_keep_it(servers, tmp_path, monkeypatch):
    up = stack_command(servers, "up")
    assert up.returncode == 0, up.stderr
    admin = servers.secrets.member_file("admin")
    assert up.stdout.strip() == f". {admin}" and admin.stat().st_mode & 0o077 == 0  # the operator's, theirs alone
    exports = servers.environment()
    assert exports["MLFLOW_TRACKING_USERNAME"] == "admin" and exports["PREFECT_API_AUTH_STRING"]
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):  # this process reads the registry too
        monkeypatch.setenv(key, exports[key])
    assert all(s["running"] for s in json.loads(stack_command(servers, "status").stdout).values())

    # a machine of the team: its own folder and Prefect home, the servers' URLs from `eval "$(genie stack up)"`
    machine, remote = tmp_path / "machine", servers.folder.parent / "dvc-remote"  # the team's shared DVC folder
    machine.mkdir()
    remote.mkdir(exist_ok=True)
    env = os.environ | exports | {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    night = genie(*night_args(f"dvc.remote.url={remote}"), cwd=machine, env=env)
    assert night.returncode == 0, night.stderr[-3000:]
    challenger = summary(night)["challenger_version"]
    client = MlflowClient(exports["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("digits-classifier", "champion")

    # anyone on the team, in a folder of their own with nothing in it but the servers' URLs, makes it again
    other = tmp_path / "another-machine"
    other.mkdir()
    made = genie("reproduce", f"digits-classifier@{challenger}", cwd=other, env=env | {
        "PREFECT_HOME": str(tmp_path / "prefect-home-2")})
    assert made.returncode == 0, made.stderr[-3000:]
    again = json.loads(made.stdout)
    assert again["verdict"] == "identical", again
    for part in ("data", "baseline", "generator", "generated", "weights"):
        assert again[part]["check"] == "identical" and again[part]["registered"] == again[part]["reproduced"], part
    assert again["weights"]["registered"] == client.get_model_version("digits-classifier", challenger).tags[
        "checkpoint_sha256"] and again["generated"]["images"] > 0
    assert (other / ".genie/reproduce" / f"digits-classifier-v{challenger}/data/digits").is_dir()
    assert not (other / "mlflow.db").exists() and not (other / "artifacts").exists()  # only its own folder
    generator = client.get_model_version_by_alias("digits-generator", "current")
    assert generator.source.startswith("mlflow-artifacts:/")  # through the server, into its artifact folder
    stored = servers.folder / "mlartifacts"
    assert any(stored.rglob("weights.safetensors")) and any(stored.rglob("unet/*.safetensors"))
    assert not (machine / "mlruns").exists() and not (machine / "mlflow.db").exists()
    lineage = json.loads(genie("lineage", "digits-classifier@champion", cwd=machine, env=env).stdout)
    assert lineage["model"] == f"digits-classifier version {champion.version}" and lineage["dataset_md5"]
    with psycopg2.connect(servers.database_url("prefect")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT flow.name, flow_run.state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id")
        assert ("genie-run", "COMPLETED") in cursor.fetchall()  # the Prefect server's own store is PostgreSQL
    connection.close()

    down = stack_command(servers, "down")
    assert down.returncode == 0, down.stderr
    assert not any(s["running"] for s in json.loads(stack_command(servers, "status").stdout).values())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", servers.mlflow_port), timeout=2)
    assert stack_command(servers, "up").returncode == 0  # the same data, served again
    assert MlflowClient(exports["MLFLOW_TRACKING_URI"]).get_model_version_by_alias(
        "digits-classifier", "champion").version == champion.version


HOLD = """
import sys, time
from flows.servers.stack import Stack
from models.locks import server_locked
with server_locked(sys.argv[1], "dataset digits", "genie_run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_one_night_per_dataset_across_machines_and_a_killed_holder_frees_it_at_once(servers, tmp_path):
    assert stack_command(servers, "up").returncode == 0
    url = servers.environment()["GENIE_DATABASE_URL"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, url], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"  # another machine's night holds the dataset
    env = os.environ | servers.environment() | {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    second = genie("run", "--no-wait", cwd=tmp_path, env=env)  # its own folder: only the server lock can stop it
    assert second.returncode == 1
    assert second.stderr.strip().splitlines()[-1].startswith(
        f"error: dataset digits is in use by pid {holder.pid} on {socket.gethostname()} (genie_run, since ")
    holder.kill()  # kill -9: its session ends with it
    holder.wait()
    started = time.monotonic()
    with server_locked(url, "dataset digits", "test", wait=False):
        freed = time.monotonic() - started
    assert freed < 5, freed


def test_a_worker_on_another_machine_runs_the_deployed_night(servers, tmp_path):
    assert stack_command(servers, "up").returncode == 0
    project = tmp_path / "project"  # the worker machine's checkout; the worker itself runs from elsewhere
    project.mkdir()
    env = os.environ | servers.environment() | {"PREFECT_HOME": str(tmp_path / "prefect-home")}
    deployed = genie("deploy", "--pool", "genie-test", "--cron", "0 3 * * *", cwd=project, env=env)
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(deployed.stdout)["deployment"] == "genie-nightly/nightly"
    prefect = str(GENIE.with_name("prefect"))
    run = subprocess.run([prefect, "deployment", "run", "genie-nightly/nightly", "--param", "until=prepare"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    worker = genie("worker", "--pool", "genie-test", "--project", str(project), "--run-once", cwd=tmp_path, env=env)
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "refused" not in worker.stdout + worker.stderr  # genie's own deployment: it runs
    assert (project / "data.dvc").is_file() and (project / "artifacts/digits/split").is_dir()  # prepared there
    with psycopg2.connect(servers.database_url("prefect")) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT d.entrypoint, s.schedule FROM deployment d "
                       "JOIN deployment_schedule s ON s.deployment_id = d.id WHERE d.name = 'nightly'")
        entrypoint, schedule = cursor.fetchone()
        cursor.execute("SELECT state_type FROM flow_run JOIN deployment ON deployment.id = flow_run.deployment_id")
        states = [row[0] for row in cursor.fetchall()]
    connection.close()
    assert entrypoint == "flows.pipeline.genie_nightly" and schedule["cron"] == "0 3 * * *"
    assert states.count("COMPLETED") == 1 and set(states) == {"COMPLETED", "SCHEDULED"}  # the cron's next nights


def test_the_restore_drill_brings_the_stack_back_in_a_new_folder(servers, tmp_path):
    """After the nights above: `genie stack backup`, `genie stack down --remove`, `genie stack restore` into a new
    folder; the history, the decisions and the champion's lineage read the same, and the champion reproduces."""
    assert stack_command(servers, "up").returncode == 0
    machine = tmp_path / "machine"
    machine.mkdir()
    reads = [("history",), ("decisions",), ("lineage", "digits-classifier@champion")]

    def read(env: dict) -> dict:
        done = {words: genie(*words, cwd=machine, env=env) for words in reads}
        assert all(d.returncode == 0 for d in done.values()), [d.stderr[-2000:] for d in done.values()]
        return {words: d.stdout for words, d in done.items()}

    before = read(os.environ | servers.environment() | {"PREFECT_HOME": str(tmp_path / "prefect-home")})
    backup, started = servers.folder.parent / "backup", time.monotonic()
    made = genie("stack", "backup", str(backup), "--folder", str(servers.root), cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    backed_up = time.monotonic() - started
    secrets = tmp_path / "secrets"
    shutil.copytree(servers.folder / "secrets", secrets)  # the operator's own copy: not in the backup
    assert not any("stack.ini" in p.name or p.suffix == ".env" for p in backup.rglob("*"))
    removed = genie("stack", "down", "--remove", "--folder", str(servers.root), cwd=tmp_path)
    assert removed.returncode == 0 and not servers.folder.exists(), removed.stderr

    new, started = servers.folder.parent / "restored", time.monotonic()
    restored = genie("stack", "restore", str(backup), "--folder", str(new), "--secrets", str(secrets), cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr[-3000:]
    restore_seconds = time.monotonic() - started
    again = Stack.load(new)
    try:
        env = os.environ | again.environment() | {"PREFECT_HOME": str(tmp_path / "prefect-home-2")}
        assert read(env) == before
        other = tmp_path / "another-machine"
        other.mkdir()
        made = genie("reproduce", "digits-classifier@champion", cwd=other, env=env)
        assert made.returncode == 0, made.stderr[-3000:]
        assert json.loads(made.stdout)["verdict"] == "identical"
        size = sum(p.stat().st_size for p in backup.rglob("*") if p.is_file())
        print(f"restore drill: backup {backed_up:.1f} s, {size / 1e6:.1f} MB; restore {restore_seconds:.1f} s")
    finally:
        again.remove()
