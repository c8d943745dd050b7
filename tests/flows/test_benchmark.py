"""Both benchmarks and the report through the real flows, CLI, MLflow and headless chromium, on tiny budgets."""
import json

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from flows.cli import app
from models.benchmarks.episodes import variants
from models.config import GenieConfig
from models.params import few_shot_variants

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

runner = CliRunner()
TINY = ["generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=4",
        "classifier.epochs=1", "finetune.epochs=1",
        "benchmark.few_shot.ways=3", "benchmark.few_shot.shots=[1, 2]", "benchmark.few_shot.episodes=4",
        "benchmark.few_shot.queries=2", "benchmark.generator_seeds=[0, 1]", "benchmark.long_tail.per_target=2",
        "benchmark.long_tail.imbalance_ratio=10",
        "benchmark.long_tail.methods=[real, img2img, genie, genie-ada+filter]", "benchmark.ada.pairs=6"]


def invoke(*args):
    return runner.invoke(app, [*args, *(a for kv in TINY for a in ("--set", kv))])


def test_benchmarks_then_a_report_that_renders_with_its_images(project):
    missing = invoke("report")
    assert missing.exit_code == 1 and missing.output.startswith("error: no benchmark results under")

    few = invoke("benchmark", "few-shot")
    assert few.exit_code == 0, few.output
    out = project / "artifacts/digits/benchmark/few-shot"
    facts = json.loads((out / "results.json").read_text())
    table, episodes = pd.read_csv(out / "table.csv"), pd.read_csv(out / "episodes.csv")
    assert facts["base_classes"] == list("01234") and facts["novel_classes"] == list("56789")
    plan = variants(few_shot_variants(), GenieConfig(), sweep=True)  # every registered method
    assert facts["variants"] == [v.label for v in plan] and len(table) == 2 * len(plan) and set(table["episodes"]) == {4}
    # two independent replicates: each generator seed trained its own generator; the night's is left alone
    assert facts["generator_seeds"] == [0, 1] and len(set(facts["generators"].values())) == 2
    assert not (project / "artifacts/digits/generator").exists()
    # every variant on the same episodes in every seed; the within-seed interval combines each seed's
    # 1.96 std / sqrt(n) over its episodes, the across-seed one is a t-interval of the seeds' means
    keys = episodes.groupby("variant")[["seed", "shots", "episode"]].apply(lambda g: tuple(map(tuple, g.values)))
    assert keys.nunique() == 1
    row = table[(table["shots"] == 2) & (table["variant"] == "genie r=0.8")].iloc[0]
    accuracies = episodes[(episodes["shots"] == 2) & (episodes["variant"] == "genie r=0.8")].groupby("seed")["accuracy"]
    means, halves = accuracies.mean(), 1.96 * accuracies.std(ddof=0) / 2
    assert np.isclose(row["mean"], means.mean()) and np.isclose(row["ci95"], np.sqrt((halves**2).sum()) / 2)
    assert np.isclose(row["across_ci95"], 12.706 * means.std(ddof=1) / np.sqrt(2), rtol=1e-3) and row["seeds"] == 2
    budget = table.set_index(["shots", "variant"])["extra_images_per_episode"]
    for shots in (1, 2):  # (N-1) * K extra images per class, N classes, for every method but `none`
        assert budget[shots, "none"] == 0
        assert {budget[shots, v] for v in facts["variants"] if v != "none"} == {2 * shots * 3}
    choices = pd.read_csv(out / "ada_choices.csv")
    assert set(choices["ratio"]) <= {0.5, 0.6, 0.7, 0.8, 0.9} and choices["image"].map(lambda p: "/genie/" in p).all()
    assert set(choices["mode"]) == {"exact", "fast"}
    for _, cost in pd.read_csv(out / "cost.csv").groupby("seed"):
        cost = cost.set_index("variant")["unet_evals_per_image"]
        assert cost["genie-ada"] == sum(cost[f"genie r={r}"] for r in (0.5, 0.6, 0.7, 0.8, 0.9))
        probes = 5 * GenieConfig().ada_probe_steps * 2  # 5 candidates, each probe guided (2 UNet passes a step)
        assert probes + cost["genie r=0.5"] <= cost["genie-ada-fast"] <= probes + cost["genie r=0.9"]  # then r*
    assert set(pd.read_csv(out / "consistency.csv")["variant"]) == set(facts["variants"]) - {"none", "traditional"}
    run = MlflowClient().get_run(facts["run_id"])
    assert run.data.tags["benchmark"] == "few-shot" and "few_shot.1shot.genie-ada" in run.data.metrics

    again = invoke("benchmark", "few-shot")  # the generated images come from the content-key cache
    shards = {k: v for k, v in json.loads((out / "results.json").read_text())["step_log"].items() if "shard" in k}
    assert again.exit_code == 0 and shards and set(shards.values()) == {"cached"}
    assert pd.read_csv(out / "table.csv").equals(table)

    ada = invoke("benchmark", "ada")
    assert ada.exit_code == 0, ada.output
    assert "fast picks exact's r* for" in ada.output and "exact at 2x steps picks exact's r*" in ada.output
    assert "few-shot 2-shot over 2 generator seed(s): exact" in ada.output
    out = project / "artifacts/digits/benchmark/ada"
    costs = pd.read_csv(out / "table.csv").set_index("variant")
    assert list(costs.index) == ["genie", "genie-ada exact", "genie-ada fast", "genie-ada exact 2x steps"]
    assert set(costs["images"]) == {6}
    picks = pd.read_csv(out / "choices.csv")
    assert len(picks) == 18 and set(picks["ratio"]) <= {0.5, 0.6, 0.7, 0.8, 0.9}
    fast = picks.loc[picks["mode"] == "fast", "ratio"]  # 5 guided probes, then r* only (4 sampler steps)
    probes = 5 * GenieConfig().ada_probe_steps * 2
    assert costs.loc["genie-ada fast", "unet_evals_per_image"] == probes + (2 * (4 * fast).astype(int)).mean()
    assert costs.loc["genie-ada exact", "unet_evals_per_image"] == 2 * (2 + 2 + 2 + 3 + 3)
    trade = pd.read_csv(out / "trade_off.csv").set_index("variant")  # fixed r at every candidate, then each mode
    assert list(trade.index) == [f"genie r={r}" for r in (0.5, 0.6, 0.7, 0.8, 0.9)] + [
        "genie-ada exact", "genie-ada fast", "fast - exact"] and set(trade["pairs"]) == {6}
    assert trade["distance"].dropna().between(0, 1).all() and "default supported: " in ada.output
    assert len(pd.read_csv(out / "few_shot.csv")) == 2  # 1 and 2 shots, from the few-shot episodes

    long = invoke("benchmark", "long-tail")
    assert long.exit_code == 0, long.output
    per_seed = pd.read_csv(project / "artifacts/digits/benchmark/long-tail/per_seed.csv")
    assert set(per_seed["seed"]) == {0, 1} and len(per_seed) == 2 * 6  # baseline + 5 variants
    generated = per_seed.pivot(index="seed", columns="variant", values="generated_images")
    assert (generated["real"] == 0).all() and (generated["genie r=0.8"] > 0).all()
    for method in ("img2img r=0.3", "img2img r=0.7"):  # equal budgets
        assert (generated[method] == generated["genie r=0.8"]).all()
    assert (generated["genie-ada+filter"] <= generated["genie r=0.8"]).all()
    summary = pd.read_csv(project / "artifacts/digits/benchmark/long-tail/table.csv")
    assert (summary["seeds"] == 2).all()
    assert {"accuracy.few.mean", "accuracy.few.across_ci95", "accuracy.few.ci95"} <= set(summary.columns)
    predictions = pd.read_csv(project / "artifacts/digits/benchmark/long-tail/predictions.csv")
    accuracy = predictions.groupby(["seed", "variant"])["correct"].mean()  # the same test images as the metrics
    assert np.allclose(accuracy[per_seed.set_index(["seed", "variant"]).index], per_seed["accuracy"])

    shown = invoke("report", "--screenshot", str(project / "report.png"))
    assert shown.exit_code == 0, shown.output
    result = json.loads(shown.output[shown.output.index("{"):])
    assert result["images_total"] > 20 and result["images_loaded"] == result["images_total"]
    page = (project / result["report"]).read_text()
    assert page.count('src="data:image/png;base64,') == result["images_total"]  # self-contained
    for words in ("Few-shot: accuracy", "Long-tail fine-tuning", "Cost per kept image", "does not show",
                  "GeNIe-Ada: fast against exact", "fast Ada (r* from short probes) picks"):
        assert words in page
    screenshot = np.asarray(Image.open(project / "report.png").convert("L"))
    assert screenshot.shape == (3000, 1200) and len(np.unique(screenshot)) > 50  # a rendered page, not a blank one
    for run_id in result["mlflow_runs"]:  # the latest few-shot, long-tail and Ada runs
        assert [a.path for a in MlflowClient().list_artifacts(run_id, "report")] == ["report/report.html"]
    assert len(result["mlflow_runs"]) == 3
