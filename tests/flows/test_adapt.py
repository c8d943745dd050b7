"""`genie benchmark adapt` through the real flow and CLI on tiny budgets: a class held out of the generator, then
taught back to it."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

runner = CliRunner()
TINY = ["generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=2", "classifier.epochs=1",
        "generator.adapter.steps=2", "benchmark.adapt.samples=1", "benchmark.adapt.pairs=2",
        "benchmark.adapt.kinds=[lora]", "benchmark.adapt.held_out=3"]


def test_a_held_out_class_is_taught_back_to_the_generator(project):
    result = runner.invoke(app, ["benchmark", "adapt", *(a for kv in TINY for a in ("--set", kv))])
    assert result.exit_code == 0, result.output
    out = project / "artifacts/digits/benchmark/adapt"
    table = pd.read_csv(out / "table.csv")
    assert list(table["adapter"]) == ["none", "lora"]
    assert list(table["prompt"]) == ["a photo of a three.", "a photo of a <3>."]
    assert table.loc[1, "seconds"] > 0 and table.loc[1, "of_retrain"] > 0
    for column in ("txt2img.held_out", "txt2img.others", "genie.held_out", "genie.others"):
        assert table[column].between(0, 1).all(), column
    base = (out / "base/tokenizer/vocab.json").read_text()
    assert '"three</w>"' not in base and '"two</w>"' in base  # the base generator never saw the held-out class
    assert (out / "lora/pytorch_lora_weights.safetensors").is_file()
    facts = json.loads((out / "results.json").read_text())
    assert facts["held_out"] == "3" and facts["retrain_seconds"] > 0 and facts["run_id"]
    report = runner.invoke(app, ["report"])  # the adapters' rows alone make a report
    assert report.exit_code == 0, report.output
    page = (out.parent / "report.html").read_text()
    assert "Adapters: teaching the generator a class it never saw" in page and "a photo of a &lt;3&gt;." in page
    unknown = runner.invoke(app, ["benchmark", "adapt", "--set", "benchmark.adapt.held_out=x"])
    assert unknown.exit_code == 1 and unknown.output.strip().endswith(
        "error: benchmark.adapt.held_out: class 'x' is not in the data (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)")


def test_adapt_none_loads_no_adapter_left_by_an_earlier_run(tmp_path):
    from flows.stages import current_adapters
    from models.adapters import CARD
    from models.digests import model_identity
    from models.params import load_settings

    generator = tmp_path / "generator"
    generator.mkdir()
    (generator / "weights.bin").write_bytes(b"w")
    settings = load_settings(tmp_path / "none.yaml", [f"generator.model={generator}", f"paths.artifacts={tmp_path}"])
    card = settings.workdir / "adapters/3" / CARD
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"base_digest": model_identity(generator.as_posix())}))
    assert [folder for folder, _ in current_adapters(settings, ["3", "4"])] == [card.parent.as_posix()]
    off = settings.model_copy(update={"generator": settings.generator.model_copy(update={"adapt": "none"})})
    assert current_adapters(off, ["3", "4"]) == ()
