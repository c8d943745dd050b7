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
    assert sorted(p.name for p in secrets.folder.rglob("*")) == ["ana.env", "members", "stack.ini"]  # no temporaries


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


def test_a_nights_parameters_are_data_changing_only_what_it_learns(tmp_path, monkeypatch):
    pool = SimpleNamespace(name="genie", base_job_template=ProcessWorker.get_default_base_job_template())
    deployment = SimpleNamespace(name="nightly", entrypoint=ENTRYPOINT, pull_steps=None, job_variables={})
    monkeypatch.setenv("GENIE_PROJECT", str(tmp_path))

    def run(params="params.yaml", *overrides):
        return refusal(deployment, SimpleNamespace(job_variables={}, parameters={
            "params": params, "overrides": list(overrides)}), pool)

    assert run() is None and run("nights/weekly.yaml", "finetune.epochs=3", "generator.embedded.unet_steps=9") is None
    for key, value in [("runner.kind", "dask"), ("runner.dask_address", "tcp://127.0.0.1:8786"),
                       ("dvc.remote.url", "s3://elsewhere"), ("generator.model", "/tmp/weights"),
                       ("generator.allow_pickle", "true"), ("paths.artifacts", "/etc"), ("notify.urls", "[x]"),
                       ("dataset.path", "/mnt"), ("classifier.pretrained", "true"), ("promote.min_improvement", "-1"),
                       ("retention.keep_nights", "1")]:
        why = run("params.yaml", "finetune.epochs=3", f"{key}={value}")
        assert why.startswith(f"override {key}: a scheduled night may change only what it learns"), (key, why)
    assert run("/etc/genie.yaml") == f"params /etc/genie.yaml: not a file inside the project {tmp_path.resolve()}"
    assert run("../elsewhere/params.yaml").startswith("params ../elsewhere/params.yaml: not a file inside")


def test_each_database_role_reaches_its_own_databases_and_the_superuser_only_loopback(tmp_path):
    lines = Stack(tmp_path / "a", host="0.0.0.0").hba("scram-sha-256").splitlines()[1:]
    rules = {tuple(line.split()[1:4]) for line in lines}
    assert all(line.startswith("host ") and line.endswith(" scram-sha-256") for line in lines)
    assert {(db, net) for db, role, net in rules if role == "genie"} == {("all", "127.0.0.1/32"), ("all", "::1/128")}
    assert {(role, db) for db, role, _ in rules if role != "genie"} == {
        ("mlflow", "mlflow,mlflow_auth"), ("prefect", "prefect"), ("genie_lock", "genie")}
    assert "all" not in {role for _, role, _ in rules}
    team = Stack(tmp_path / "b", host="0.0.0.0")
    team.secrets.create()
    assert team.database_url("genie", role="genie").split("@")[1].startswith("127.0.0.1:")  # the stack's own, loopback
    assert not team.database_url("genie", role="genie_lock").split("@")[1].startswith("127.0.0.1:")


def test_a_roles_password_reaches_postgresql_as_a_scram_verifier_only():
    import base64
    import hashlib
    import hmac
    import re

    from flows.servers.stack_secrets import scram_verifier

    verifier = scram_verifier("s3cret-pass")
    match = re.fullmatch(r"SCRAM-SHA-256\$4096:([^$]+)\$([^:]+):(.+)", verifier)
    assert match and "s3cret" not in verifier and scram_verifier("s3cret-pass") != verifier  # salted afresh
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret-pass", base64.b64decode(match[1]), 4096)
    client = hmac.new(salted, b"Client Key", "sha256").digest()
    assert base64.b64decode(match[2]) == hashlib.sha256(client).digest()  # what a client's proof is checked against


def test_a_deployment_hands_its_nights_only_what_they_learn(tmp_path):
    import pytest

    from models.config import ConfigError
    from models.params import night_overrides

    given = ['notify.urls=["json://127.0.0.1:9/hook"]', "notify.late_minutes=0.5", "schedule.cron=0 3 * * *",
             "classifier.epochs=1", "generator.embedded.vae_steps=4"]
    assert night_overrides(given, "params.yaml", tmp_path) == ["classifier.epochs=1", "generator.embedded.vae_steps=4"]
    with pytest.raises(ConfigError, match="--set: override dvc.remote.url: a scheduled night may change only"):
        night_overrides([*given, "dvc.remote.url=/elsewhere"], "params.yaml", tmp_path)
