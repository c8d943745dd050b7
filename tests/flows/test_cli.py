import logging
import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from flows.cli_options import DEBUG, TracebacksToFile
from tests.ports import free_port

runner = CliRunner()


def test_help_explains_the_commands():
    result = subprocess.run([Path(sys.executable).parent / "genie", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("prepare", "run", "config"):
        assert command in result.stdout


def test_bad_override_stops_with_one_line(project):
    result = runner.invoke(app, ["run", "--set", "classifier.epoch=3"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: params.yaml: classifier.epoch: unknown key"


def test_config_prints_validated_settings(project):
    result = runner.invoke(app, ["config", "--set", "classifier.epochs=7"])
    assert result.exit_code == 0 and "epochs: 7" in result.output


def test_prepare_versions_and_splits(project):
    result = runner.invoke(app, ["prepare"])
    assert result.exit_code == 0, result.output
    assert (project / "data.dvc").is_file() and (project / "artifacts/digits/split/split.csv").is_file()
    assert '"skipped": 0' in result.output


def test_prepare_refuses_a_dataset_with_one_class(project):
    for i in range(3):
        folder = project / "data" / "mine" / "cat"
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 16)).save(folder / f"{i}.png")
    result = runner.invoke(app, ["prepare", "--set", "dataset.path=data/mine", "--set", "dataset.embedded=false"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: dataset folder data/mine: 1 usable class(es)")


def test_a_server_that_does_not_answer_stops_the_night_before_any_work(project, monkeypatch):
    port = free_port()  # nothing listens there
    cases = [
        ("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}", [],
         f"error: the MLflow tracking server at http://127.0.0.1:{port} (MLFLOW_TRACKING_URI) does not answer: "),
        ("PREFECT_API_URL", f"http://127.0.0.1:{port}/api", [],
         f"error: the Prefect server at http://127.0.0.1:{port}/api (PREFECT_API_URL) does not answer: "),
        ("GENIE_DATABASE_URL", f"postgresql://genie:secret@127.0.0.1:{port}/genie", [],
         f"error: the database at postgresql://genie:***@127.0.0.1:{port}/genie (GENIE_DATABASE_URL) does not answer"),
        (None, None, ["--set", f"dvc.remote.url={project / 'no-share'}"],
         f"error: dvc.remote.url: folder {project / 'no-share'} not found"),
    ]
    for variable, value, extra, said in cases:
        with monkeypatch.context() as patch:
            if variable:
                patch.setenv(variable, value)
            result = runner.invoke(app, ["run", *extra])
        assert result.exit_code == 1 and result.output.strip().startswith(said), result.output
        assert len(result.output.strip().splitlines()) == 1 and "secret" not in result.output
    assert not (project / "artifacts").exists() and not (project / "data.dvc").exists()  # nothing started


def test_a_refused_command_in_a_flow_prints_one_line_and_no_traceback(project, prefect_server):
    """An unknown model, a version that records no data: one `error:` line; the traceback only in the log file."""
    client = MlflowClient()
    client.create_registered_model("digits-classifier")
    client.create_model_version("digits-classifier", source=str(project), tags={"role": "baseline"})
    cases = {"other-classifier@champion": "error: other-classifier@champion: Registered Model with name=other-classifier"
                                          " not found",
             "digits-classifier@1": "error: digits-classifier version 1 records no data_dvc_md5 or pipeline run"}
    for reference, said in cases.items():
        result = subprocess.run([Path(sys.executable).parent / "genie", "reproduce", reference], cwd=project,
                                env=os.environ | {"PREFECT_API_URL": prefect_server}, capture_output=True, text=True)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        assert any(line.startswith(said) for line in result.stderr.splitlines()), result.stderr
    assert (project / ".genie" / "logs" / "errors.log").read_text().count("Traceback (most recent call last)") == 2


def test_debug_keeps_the_traceback_on_the_console(project):
    record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "failed", None,
                               (ValueError, ValueError("bad"), None))
    assert not TracebacksToFile().filter(record)
    DEBUG["on"] = True
    try:
        assert TracebacksToFile().filter(record)
    finally:
        DEBUG["on"] = False
    assert TracebacksToFile().filter(logging.LogRecord("prefect", logging.INFO, __file__, 1, "fine", None, None))
