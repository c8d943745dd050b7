"""The rules of a team's stack that need no server: what the secrets folder lets others see, and which flow runs
`genie worker` refuses."""
from types import SimpleNamespace

from prefect.workers.process import ProcessWorker

from flows.servers.stack import Stack
from flows.servers.stack_secrets import Secrets
from flows.worker import ENTRYPOINT, refusal


def test_generated_passwords_are_for_their_owner_only_and_written_once(tmp_path):
    secrets = Secrets(tmp_path / "secrets")
    secrets.create()
    first = secrets.password("prefect")
    secrets.create()  # the databases already hold the first passwords: kept
    assert secrets.password("prefect") == first and len(first) >= 30
    assert secrets.folder.stat().st_mode & 0o777 == 0o700 and secrets.file.stat().st_mode & 0o777 == 0o600
    path = secrets.write_member("ana", {"MLFLOW_TRACKING_PASSWORD": "it's $secret", "GENIE_ROLE": "worker"})
    assert path.stat().st_mode & 0o777 == 0o600
    assert secrets.member_environment("ana")["MLFLOW_TRACKING_PASSWORD"] == "it's $secret"  # quoted for the shell
    assert secrets.members() == {"ana": "worker"}


def test_urls_carry_a_password_only_where_a_password_is_asked(tmp_path):
    secure, insecure = Stack(tmp_path / "a"), Stack(tmp_path / "b", secure=False)
    secure.secrets.create()
    assert secure.database_url("prefect") == (
        f"postgresql://prefect:{secure.secrets.password('postgres.prefect')}@127.0.0.1:5433/prefect")
    assert insecure.database_url("prefect") == "postgresql://genie@127.0.0.1:5433/prefect"
    assert "://" in secure.urls()["MLFLOW_TRACKING_URI"] and "@" not in "".join(secure.urls().values())


def test_the_worker_runs_genies_nights_and_refuses_anything_else():
    pool = SimpleNamespace(name="genie", base_job_template=ProcessWorker.get_default_base_job_template())
    run = SimpleNamespace(job_variables={})

    def deployment(**changes):
        return SimpleNamespace(**({"name": "nightly", "entrypoint": ENTRYPOINT, "pull_steps": None,
                                   "job_variables": {}} | changes))

    assert refusal(deployment(), run, pool) is None
    assert "no deployment" in refusal(None, run, pool)
    assert "entrypoint 'evil.py:flow'" in refusal(deployment(entrypoint="evil.py:flow"), run, pool)
    steps = [{"prefect.deployments.steps.run_shell_script": {"script": "touch /tmp/x"}}]
    assert "pull steps (prefect.deployments.steps.run_shell_script)" in refusal(deployment(pull_steps=steps), run,
                                                                                  pool)
    assert "job variables (command)" in refusal(deployment(job_variables={"command": "sh -c id"}), run, pool)
    assert "job variables (env)" in refusal(deployment(), SimpleNamespace(job_variables={"env": {"X": "1"}}), pool)
    changed = SimpleNamespace(name="genie", base_job_template={"job_configuration": {"command": "sh"}, "variables": {}})
    assert "changed job template" in refusal(deployment(), run, changed)
