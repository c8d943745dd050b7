"""The report page from results on disk, without Prefect: every section, images embedded, data escaped."""
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from models.benchmarks.episodes import Variant
from models.benchmarks.few_shot import summarise_episodes
from models.benchmarks.report import render_report
from models.benchmarks.results import load, write_results

ODD = "<b>&"  # a class name that is also markup


@pytest.fixture
def results(tmp_path):
    """Few-shot and long-tail results as the benchmarks write them, on two classes, one named ODD."""
    images = {}
    for name in ("source", "edit"):
        images[name] = tmp_path / f"{name}.png"
        Image.new("RGB", (8, 8), (200, 0, 0)).save(images[name])
    classes, variants = ["7", ODD], ["none", "txt2img", "genie r=0.5", "genie r=0.8", "genie-ada"]
    episodes = pd.DataFrame([{"seed": s, "shots": 1, "episode": e, "variant": v,
                              "accuracy": 0.5 + 0.05 * i + 0.01 * e + 0.02 * s * (v == "txt2img"),
                              "extra_images": 0 if v == "none" else 2}
                             for s in (0, 1) for e in range(4) for i, v in enumerate(variants)])
    table = summarise_episodes(episodes, [Variant(*v.split(" r=")) if " r=" in v else Variant(v) for v in variants])
    common = {"dataset": "mine", "generator": "gen", "generator_digest": "0123456789abcdef", "sampler_steps": 25,
              "guidance": 7.5, "prompt": "a photo of a {name}.", "generation_seed": 0, "classifier": "resnet10t",
              "ada_ratios": [0.5, 0.8], "git_commit": "abc", "device": "cpu float32",
              "machine": "AMD EPYC, 2 CPUs, torch threads: 2, Linux 6", "date": "2026-01-01 00:00"}
    few = common | {
        "benchmark": "few-shot", "generators": {"0": "a", "1": "b"}, "ways": 2, "shots": [1], "episodes": 4, "queries": 2, "episode_seed": 0,
        "base_classes": ["0"], "novel_classes": classes, "extractor_val_accuracy": {"0": 0.9, "1": 0.91},
        "generator_seeds": [0, 1], "variants": variants,
        "grids": [{"source": str(images["source"]), "source_class": "7", "target": ODD, "chosen": 0.8,
                   "candidates": [[0.5, str(images["edit"])], [0.8, str(images["edit"])]], "jumps": [0.1]}],
        "failures": [{"image": str(images["edit"]), "source": str(images["source"]), "source_class": "7",
                      "label": ODD, "variant": "genie r=0.5", "judged": "7", "outcome": "as source"}]}
    choices = pd.DataFrame({"source_class": ["7", "7"], "target": [ODD, ODD], "ratio": [0.5, 0.8],
                            "source": ["a", "b"], "image": ["x", "y"]})
    consistency = pd.DataFrame({"variant": ["genie r=0.5"], "as label": [0.5], "as source": [0.5], "neither": [0.0],
                                "images": [2]})
    cost = pd.DataFrame({"variant": ["genie r=0.8", "genie-ada"], "images": [2, 2], "unet_evals_per_image": [40, 64],
                         "seconds_per_image": [0.02, 0.04]})
    write_results(tmp_path / "few-shot", {"table": table, "episodes": episodes, "ada_choices": choices,
                                          "consistency": consistency, "cost": cost}, few)
    long_variants = ["real", "txt2img", "genie-ada"]
    per_seed = pd.DataFrame([{"seed": s, "variant": v, "generated_images": 0 if v == "real" else 3,
                              "accuracy": 0.5 + 0.25 * i, "accuracy.many": 1.0, "accuracy.medium": np.nan,
                              "accuracy.few": 0.5 * i} for s in (0, 1) for i, v in enumerate(long_variants)])
    # four test images a seed, two of a few-shot class: each variant gets one more right than the one before
    predictions = pd.DataFrame([{"seed": s, "variant": v, "image": k, "group": "few" if k < 2 else "many",
                                 "correct": int(k >= 2 or k < i)} for s in (0, 1) for i, v in enumerate(long_variants)
                                for k in range(4)])
    from models.benchmarks.long_tail import summarise_seeds

    long = common | {"benchmark": "long-tail", "generators": {"0": "a", "1": "b"}, "imbalance_ratio": 10, "seeds": [0, 1], "per_target": 3,
                     "k_confused": 2, "filter_threshold": 0.5, "finetune": {"epochs": 1}, "groups": "many: > 100",
                     "variants": ["real", "txt2img", "genie-ada"]}
    write_results(tmp_path / "long-tail", {"table": summarise_seeds(per_seed, predictions), "per_seed": per_seed,
                                           "predictions": predictions,
                                           "consistency": consistency, "cost": cost}, long)
    return load(tmp_path / "few-shot"), load(tmp_path / "long-tail")


def test_every_section_renders_with_embedded_images(results):
    page = render_report(*results)
    for heading in ("Few-shot: accuracy", "label consistency", "the chosen noise ratio r*", "Ada's choice",
                    "Failure cases", "Long-tail fine-tuning: accuracy", "Cost per kept image", "does not show"):
        assert heading in page, heading
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 1 + 1 + 3 + 2 + 1  # r plot, Ada plot, grid (source + 2 candidates), failure pair, long tail
    assert all(uri.startswith("data:image/png;base64,") for uri in images)
    # paired verdicts from the episodes, on the interval across the two seeds
    assert re.search(r"<b>genie-ada</b> is better than <b>none</b>:\s+\+20.0 points, ± 0.0 across 2 seeds", page)
    # txt2img gains 2 points in one seed only: no within-seed spread, but no verdict beyond the across-seed one
    assert re.search(r"<b>genie r=0.8</b> is not distinguishable from <b>txt2img</b>:\s+\+9.0 points, ± 12.7 "
                     r"across 2 seeds\s+\(± 0.0 within a seed\)\s*; per seed: \+10.0, \+8.0", page)
    assert re.search(r"few-shot classes: <b>genie-ada</b> is better than <b>real</b>:\s+\+100.0 points", page)


def test_data_is_escaped_everywhere(results):
    page = render_report(*results)
    assert ODD not in page and page.count("&lt;b&gt;&amp;") >= 4  # grid, failures, heatmap table, novel classes
    assert "a photo of a {name}." in page
    assert "Code abc, run on AMD EPYC, 2 CPUs, torch threads: 2, Linux 6." in page


def test_one_benchmark_is_enough(results):
    few, long = results
    assert "Long-tail" not in render_report(few, None)
    assert "Few-shot: accuracy" not in render_report(None, long)


def test_the_adapters_rows(results, tmp_path):
    few, _ = results
    table = pd.DataFrame({"adapter": ["none", "lora"], "seconds": [0.0, 39.2], "of_retrain": [0.0, 0.042],
                          "prompt": ["a photo of a seven.", f"a photo of a <{ODD}>."], "txt2img.held_out": [0.025, 0.95],
                          "txt2img.others": [1.0, 1.0], "genie.held_out": [0.022, 0.978], "genie.others": [0.978, 0.978]})
    facts = few["facts"] | {"benchmark": "adapt", "held_out": ODD, "retrain_seconds": 923.0, "judge_val_accuracy": 0.994,
                            "samples": 40, "pairs": 45, "ratio": 0.8}
    write_results(tmp_path / "adapt", {"table": table}, facts)
    page = render_report(None, None, adapt=load(tmp_path / "adapt"))
    assert "Adapters: teaching the generator a class it never saw" in page and ODD not in page
    assert re.search(r"<td>lora</td><td>a photo of a &lt;&lt;b&gt;&amp;&gt;.</td><td>39.2</td><td>4.2%</td>"
                     r"<td>95.0%</td><td>100.0%</td><td>97.8%</td><td>97.8%</td>", page)
    assert "(923 s)" in page and "val accuracy 0.994" in page
    assert "Adapters" not in render_report(few, None)
