import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from flows.cli import app

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
