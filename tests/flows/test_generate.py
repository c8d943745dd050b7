"""train-generator -> generate through the real flows and CLI, on a tiny training budget."""
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from models.edit_folder import edits

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

runner = CliRunner()
TINY = ["--set", "generator.embedded.vae_steps=4", "--set", "generator.embedded.unet_steps=4",
        "--set", "generator.steps=4", "--set", "classifier.epochs=1"]


def invoke(*args):
    return runner.invoke(app, [*args, *TINY])


def test_train_generator_then_generate_incrementally(project):
    first = invoke("train-generator")
    assert first.exit_code == 0, first.output
    folder = project / "artifacts/digits/generator"
    assert (folder / "model_index.json").is_file() and "dataset_md5" in (folder / "README.md").read_text()
    again = invoke("train-generator")
    assert '"train-generator": "reused"' in again.output and "train split +0.0%, below 20%" in again.output
    runs = MlflowClient().search_runs([MlflowClient().get_experiment_by_name("digits").experiment_id])
    assert [r.info.run_name for r in runs] == ["train-generator"]  # logged once, when it trained
    forced = invoke("train-generator", "--force")
    assert '"train-generator": "ran"' in forced.output and '"reason": "forced"' in forced.output

    made = invoke("generate", "--method", "genie", "--per-class", "2")
    assert made.exit_code == 0, made.output
    folder = project / "artifacts/digits/generated/genie"
    manifest = edits(folder).astype(str)
    assert len(manifest) == 20 and (manifest["source_class"] != manifest["target"]).all()
    assert set(manifest["ratio"]) == {"0.8"}
    assert sorted(manifest["file"]) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))

    repeat = invoke("generate", "--method", "genie", "--per-class", "2")
    assert '"generated": 0' in repeat.output and '"existing": 20' in repeat.output
    more = invoke("generate", "--method", "genie", "--per-class", "3")
    assert '"generated": 10' in more.output  # the 2 first of each class are the same draws

    ada = invoke("generate", "--method", "genie-ada", "--per-class", "1")
    assert ada.exit_code == 0, ada.output
    rows = edits(project / "artifacts/digits/generated/genie-ada")
    assert rows["ratio"].isin([0.6, 0.7, 0.8, 0.9]).all() and rows["ada_scores"].str.count(",").eq(3).all()

    # no surprise work: a changed budget would train the generator again (tens of minutes on a slow machine) and
    # replace the current one; generate stops and says so, unless --retrain
    changed = invoke("generate", "--per-class", "1", "--set", "generator.embedded.min_snr_gamma=4")
    assert changed.exit_code == 1 and changed.output.strip().splitlines()[-1].startswith(
        "error: genie generate would train the embedded generator again (recipe changed"), changed.output
    assert "--retrain" in changed.output and "Traceback" not in changed.output
    versions = MlflowClient().search_model_versions("name = 'digits-generator'")
    retrained = invoke("generate", "--per-class", "1", "--set", "generator.embedded.min_snr_gamma=4", "--retrain")
    assert retrained.exit_code == 0, retrained.output
    assert len(MlflowClient().search_model_versions("name = 'digits-generator'")) == len(versions) + 1


def test_bad_generate_input_is_one_line(project):
    assert invoke("prepare").exit_code == 0
    source = next((project / "data/digits/3").glob("*.png"))
    pairs = project / "pairs.csv"
    pairs.write_text(f"source,target\n{source},eleven\n")
    cases = [
        (["--pairs", str(pairs)], "unknown class 'eleven'"),
        (["--ratio", "1.5"], "--ratio 1.5: a noise ratio must be in (0, 1]"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--method", "txt2img", "--ratio", "0.5"], "--ratio does not apply to txt2img"),
        (["--set", "generator.model=missing/model/folder"], "generator model missing/model/folder: folder not found"),
    ]
    for args, message in cases:
        result = invoke("generate", *args)
        assert result.exit_code != 0, args
        last = result.output.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last, (args, last)
    pairs.write_text("source,target\n")
    result = invoke("generate", "--pairs", str(pairs))
    assert "needs a header with columns source,target and at least one row" in result.output
    assert not (project / "artifacts/digits/generated").exists()


def test_quality_is_judged_and_logged(project):
    result = invoke("quality", "--samples-per-class", "2", "--pairs", "6")
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("digits").experiment_id],
                              "attributes.run_name = 'generator-quality'")
    metrics = runs[0].data.metrics
    assert set(metrics) == {"txt2img.label_accuracy"} | {f"genie.{s}_share.r{r}" for s in ("target", "source")
                                                         for r in (0.3, 0.5, 0.8)}
    assert all(0 <= v <= 1 for v in metrics.values())
    assert len(list((project / "artifacts/digits/generated/txt2img").rglob("*.png"))) == 20
