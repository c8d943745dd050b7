"""`genie benchmark long-tail` on the embedded scenes through the real flow, CLI and report, on tiny budgets:
worst-group accuracy, the context kept by each method, the verdicts and the report's context section."""
import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

runner = CliRunner()
TINY = ["dataset=scenes", "generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=4",
        "classifier.epochs=1", "finetune.epochs=1", "benchmark.generator_seeds=[0]", "benchmark.long_tail.per_target=2",
        "benchmark.long_tail.methods=[real, txt2img, genie, genie-ada]", "genie.ada_ratios=[0.5, 0.8]"]


def test_scenes_benchmark_reports_worst_groups_and_kept_context(project):
    result = runner.invoke(app, ["benchmark", "long-tail", *(a for kv in TINY for a in ("--set", kv))])
    assert result.exit_code == 0, result.output
    out = project / "artifacts/scenes/benchmark/long-tail"
    assert (project / "data/scenes/metadata.csv").is_file()
    per_seed = pd.read_csv(out / "per_seed.csv").set_index("variant")
    assert list(per_seed.index) == ["baseline (no fine-tuning)", "real", "txt2img", "genie r=0.5", "genie r=0.8",
                                    "genie-ada"]
    predictions = pd.read_csv(out / "predictions.csv")
    worst = predictions.groupby(["variant", "context_group"])["correct"].mean().groupby("variant").min()
    assert (per_seed["accuracy.worst_group"] == worst[per_seed.index]).all()  # 16 groups of 25 test images
    assert predictions.groupby("variant")["context_group"].nunique().eq(16).all()
    context = pd.read_csv(out / "context.csv").set_index("variant")
    assert list(context.index) == ["txt2img", "genie r=0.5", "genie r=0.8", "genie-ada"]
    assert context.loc["txt2img", "kept_context"] != context.loc["txt2img", "kept_context"]  # no source: nan
    assert context.loc["genie r=0.8", "kept_context"] >= 0 and (context["images"] == 8).all()
    assert "worst group %" in result.output and "keeps source's context %" in result.output
    assert "worst group: genie r=0.8 is " in result.output and "average: genie-ada is " in result.output
    report = runner.invoke(app, ["report", "--set", "dataset=scenes"])
    assert report.exit_code == 0, report.output
    page = (out.parent / "report.html").read_text()
    for words in ("Context: the worst groups", "Context: do the generated images keep it?", "worst group: <b>"):
        assert words in page, words
    assert page.count("<tr><td>") >= 6 + 4 + 4  # groups, kept shares, grids of four tail targets
