"""Races and faults of a team's nights on real servers, each machine a folder with its own Prefect home: two nights
of one dataset at once, a promote racing a night, a night killed -9 while it holds the dataset, the servers
restarted mid-night. A tier of its own (`make test-faults`): the champion always agrees with the decision log, and
no checkpoint is registered twice."""
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
import pytest
from mlflow.tracking import MlflowClient

from tasks.champion import decision_log
from tests.servers.team import GENIE, finished, genie, night_args, stack_command, summary
from tests.webhook import endpoint

pytestmark = [pytest.mark.servers, pytest.mark.faults]
MODEL = "digits-classifier"


@dataclass
class Machine:
    folder: Path
    env: dict

    def genie(self, *args: str, background: bool = False):
        return genie(*args, cwd=self.folder, env=self.env, background=background)


@pytest.fixture(scope="module")
def team(servers, tmp_path_factory):
    """The servers up and a maker of machines that use them, all pushing to one shared DVC remote."""
    assert stack_command(servers, "up").returncode == 0
    remote = servers.folder.parent / "dvc-remote"
    remote.mkdir(exist_ok=True)
    admin = servers.environment()
    reads = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    os.environ.update({key: admin[key] for key in reads})  # this process reads the log

    def machine(name: str) -> Machine:
        folder = tmp_path_factory.mktemp(name)
        return Machine(folder, os.environ | servers.environment() | {"PREFECT_HOME": str(folder / ".prefect")})

    machine.remote = f"dvc.remote.url={remote}"
    machine.database = admin["GENIE_DATABASE_URL"]  # the nights' role: the holders table is the stack's
    yield machine
    for key in reads:
        os.environ.pop(key)


def query(url: str, sql: str) -> list[tuple]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        rows = cursor.fetchall()
    connection.close()
    return rows


def holder(url: str) -> int | None:
    """The pid that last took the dataset (it holds it while that process runs)."""
    rows = query(url, "SELECT holder FROM genie_holders WHERE key = 'dataset digits'")
    return json.loads(rows[0][0])["pid"] if rows else None


def waiters(url: str) -> int:
    return query(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0]


def wait_for(condition, timeout: float = 300) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def succeeded(process) -> subprocess.CompletedProcess:
    done = finished(process)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_registry_is_whole():
    """Each checkpoint registered once; the champion where the last logged decision put it, each decision replacing
    the version the one before it crowned."""
    client = MlflowClient()
    digests = [v.tags["checkpoint_sha256"] for v in client.search_model_versions(f"name = '{MODEL}'")]
    assert len(digests) == len(set(digests)), digests
    log = decision_log(MODEL, last=100, moves_only=True)  # a refused challenger's row moves nothing
    assert client.get_model_version_by_alias(MODEL, "champion").version == log[0]["version"]
    assert all(newer["replaced"] == older["version"] for newer, older in zip(log, log[1:])), log


def test_two_machines_run_one_dataset_one_at_a_time_and_a_promote_waits_for_a_night(team):
    a, b = team("a"), team("b")
    first = a.genie(*night_args(team.remote), background=True)
    wait_for(lambda: holder(team.database) == first.pid)
    second = b.genie(*night_args(team.remote), background=True)
    one, two = summary(succeeded(first)), succeeded(second)
    assert f"waiting for dataset digits: in use by pid {first.pid}" in two.stderr
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("digits").experiment_id],
                                      "tags.pipeline = 'genie-run'", order_by=["attributes.start_time ASC"])
    assert len(runs) == 2 and runs[0].info.end_time <= runs[1].info.start_time  # one night at a time
    two = summary(two)
    # the same data and configuration on the same machine kind: the second night makes the same bytes, finds them
    # registered, and has nothing to decide
    assert two["challenger_version"] == one["challenger_version"] and two["promoted"] is False
    assert_registry_is_whole()

    night = a.genie(*night_args(team.remote, "select.seed=1"), background=True)  # other sources: new work
    wait_for(lambda: holder(team.database) == night.pid)
    by_hand = b.genie("promote", one["baseline_version"])
    assert by_hand.returncode == 0, by_hand.stderr
    assert f"waiting for dataset digits: in use by pid {night.pid}" in by_hand.stderr
    succeeded(night)
    assert MlflowClient().get_model_version_by_alias(MODEL, "champion").version == one["baseline_version"]
    assert decision_log(MODEL)[0]["action"] == "promoted by hand"
    assert_registry_is_whole()


def test_a_night_killed_while_it_holds_the_dataset_frees_it_for_the_next_at_once(team):
    c, d = team("c"), team("d")
    victim = c.genie(*night_args(team.remote, "classifier.seed=3"), background=True)
    wait_for(lambda: holder(team.database) == victim.pid)
    children = psutil.Process(victim.pid).children(recursive=True)
    after = d.genie(*night_args(team.remote, "classifier.seed=3"), "--until", "prepare", background=True)
    wait_for(lambda: waiters(team.database) == 1)
    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)  # as the OOM killer does: that process alone
    wait_for(lambda: holder(team.database) == after.pid, timeout=30)
    freed = time.monotonic() - killed
    victim.wait()
    print(f"kill -9 of the holding night -> the waiting night holds the dataset: {freed:.2f} s")
    assert freed < 5
    succeeded(after)
    assert not psutil.wait_procs(children, timeout=10)[1]  # nothing of the killed night left running
    assert_registry_is_whole()


def test_the_servers_restarted_mid_night_lose_nothing_and_register_nothing_twice(team, servers):
    e = team("e")
    client = MlflowClient()
    before = len(client.search_model_versions(f"name = '{MODEL}'"))
    night = e.genie(*night_args(team.remote, "classifier.seed=5"), background=True)
    wait_for(lambda: len(client.search_model_versions(f"name = '{MODEL}'")) > before)  # its baseline registered
    assert stack_command(servers, "down").returncode == 0
    assert stack_command(servers, "up").returncode == 0
    across = finished(night)
    if across.returncode == 0:  # it rode out the restart, but it no longer holds the dataset: it promotes nothing
        outcome = summary(across)
        assert outcome["promoted"] is False, outcome
        print(f"the night across the restart finished: {outcome['decision']}")
    else:  # or it stops with one line naming what went away
        said = across.stderr
        assert said.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in said, said[-3000:]
        print(f"the night across the restart stopped: {said.strip().splitlines()[-1]}")
    again = e.genie(*night_args(team.remote, "classifier.seed=5"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert_registry_is_whole()


def test_a_night_that_never_starts_and_a_night_killed_under_its_worker_each_reach_the_channel(team):
    """What only the server sees, sent by the automations `genie deploy` makes: a scheduled night no worker takes,
    and a night whose process is killed -9 while its worker lives."""
    m = team("alerts")
    with endpoint() as (url, received):
        deployed = m.genie("deploy", "--pool", "alerts", "--cron", "0 3 * * *", "--set", f'notify.urls=["{url}"]',
                           "--set", "notify.late_minutes=0.5", *night_args()[1:])
        assert deployed.returncode == 0, deployed.stderr[-3000:]
        assert json.loads(deployed.stdout)["automations"] == [
            "genie-nightly/nightly: crashed (digits)", "genie-nightly/nightly: late (digits)",
            "genie-nightly/nightly: unresponsive (digits)"]
        prefect = str(GENIE.with_name("prefect"))
        due = time.monotonic()
        ran = subprocess.run([prefect, "deployment", "run", "genie-nightly/nightly"], env=m.env, capture_output=True,
                             text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        late = wait_for(lambda: any("did not start" in r["title"] for r in received), timeout=180)
        print(f"a night due now and no worker: the 'did not start' alert after {time.monotonic() - due:.0f} s "
              f"(late_minutes 0.5)")
        [message] = [r for r in received if "did not start" in r["title"]]
        assert "has not started after 0.5 minutes" in message["message"] and "--pool alerts" in message["message"]

        before = holder(team.database)
        worker = m.genie("worker", "--pool", "alerts", "--project", str(m.folder), background=True)
        try:  # the worker takes the late night; it is killed as the OOM killer would, its worker alive
            wait_for(lambda: holder(team.database) not in (None, before), timeout=300)
            assert not [r for r in received if "crashed" in r["title"]]
            killed = time.monotonic()
            os.kill(holder(team.database), signal.SIGKILL)
            wait_for(lambda: any("crashed" in r["title"] for r in received), timeout=180)
            print(f"a night killed -9 under its worker: the 'crashed' alert after {time.monotonic() - killed:.1f} s")
        finally:
            worker.terminate()
            finished(worker, timeout=60)
    [message] = [r for r in received if "crashed" in r["title"]]
    print(message["message"])
    assert message["title"] == "genie-flow: a night crashed (digits)" and "of nightly crashed" in message["message"]
    assert late < 180
