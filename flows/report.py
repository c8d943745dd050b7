"""`genie report`: the benchmarks' results as one self-contained HTML page, logged to MLflow."""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from flows.benchmark import benchmark_dir
from models.config import Settings
from models.fewshot import mean_ci
from models.report import figure, image, mean_pm, page, table
from tasks.tracking import configure


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def load(folder: Path) -> dict | None:
    """A benchmark's results.json and its CSV tables, or None when it has not run."""
    if not (folder / "results.json").is_file():
        return None
    results = {"facts": json.loads((folder / "results.json").read_text())}
    for csv in folder.glob("*.csv"):
        results[csv.stem] = pd.read_csv(csv, dtype={"source_class": str, "label": str, "target": str, "judged": str}) \
            if csv.stat().st_size > 1 else pd.DataFrame()
    return results


def paired(episodes: pd.DataFrame, shots: int, a: str, b: str) -> tuple[float, float] | None:
    """Mean and 95% half-width of accuracy(a) - accuracy(b) over the same episodes."""
    rows = episodes[episodes["shots"] == shots].pivot(index="episode", columns="variant", values="accuracy")
    if a not in rows or b not in rows:
        return None
    return mean_ci(rows[a] - rows[b])


def verdict(diff: tuple[float, float] | None, a: str, b: str) -> str:
    if diff is None:
        return ""
    mean, ci = diff
    word = "better than" if mean - ci > 0 else "worse than" if mean + ci < 0 else "not distinguishable from"
    return f"<b>{html.escape(a)}</b> is {word} <b>{html.escape(b)}</b>: {mean * 100:+.1f} ± {ci * 100:.1f} points"


def few_shot_sections(r: dict) -> list[tuple[str, str]]:
    facts, scores = r["facts"], r["table"]
    order = facts["variants"]
    wide = scores.assign(cell=[mean_pm(m, c) for m, c in zip(scores["mean"], scores["ci95"])]).pivot(
        index="variant", columns="shots", values="cell").reindex(order)
    wide.columns = [f"{k}-shot (% ± 95% CI)" for k in wide.columns]
    extra = scores.pivot(index="variant", columns="shots", values="extra_images_per_episode").reindex(order)
    wide["extra images / episode"] = [" / ".join(f"{v:.0f}" for v in row) for row in extra.values]
    lines = []
    for shots in facts["shots"]:
        genie_rows = scores[(scores["shots"] == shots) & scores["variant"].str.startswith("genie r=")]
        best = genie_rows.loc[genie_rows["mean"].idxmax(), "variant"] if len(genie_rows) else None
        pairs = [("genie-ada", "txt2img"), (best, "txt2img"), ("genie-ada", "none"), ("genie-ada", "traditional"),
                 ("genie-ada", best), (best, "img2img r=0.7")]
        said = [verdict(paired(r["episodes"], shots, a, b), a, b) for a, b in pairs if a]
        lines.append(f"<li>{shots}-shot<ul>" + "".join(f"<li>{s}</li>" for s in said if s) + "</ul></li>")
    summary = (f"<p>Paired over the same episodes (difference in accuracy, 95% interval). The best fixed r is picked "
               f"on the test episodes themselves, so it is an optimistic reference.</p><ul>{''.join(lines)}</ul>")
    return [
        ("Few-shot: accuracy", table(wide.reset_index()) + summary + r_plot(scores, facts)),
        ("Few-shot: label consistency of the generated images", consistency_html(r.get("consistency"), (
            "Judge: the baseline classifier trained on real train images of <i>all</i> classes (it has seen the novel "
            "classes, which a few-shot user could not do, so it serves the analysis only). 'as source': the edit did "
            "not take; 'neither': a failure."))),
        ("GeNIe-Ada: the chosen noise ratio r*", ada_html(r.get("ada_choices"), facts["ada_ratios"])),
        ("Source → candidates across r → Ada's choice", grids_html(facts.get("grids", []))),
        ("Failure cases", failures_html(facts.get("failures", []))),
    ]


def r_plot(scores: pd.DataFrame, facts: dict) -> str:
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(facts["shots"]), figsize=(5.5 * len(facts["shots"]), 3.8), squeeze=False)
    for ax, shots in zip(axes[0], facts["shots"]):
        rows = scores[scores["shots"] == shots].set_index("variant")
        sweep = rows[rows.index.str.startswith("genie r=")]
        ratios = [float(v.split("=")[1]) for v in sweep.index]
        ax.errorbar(ratios, sweep["mean"] * 100, yerr=sweep["ci95"] * 100, marker="o", capsize=3, label="GeNIe at r")
        images = rows[rows.index.str.startswith("img2img r=")]
        ax.errorbar([float(v.split("=")[1]) for v in images.index], images["mean"] * 100, yerr=images["ci95"] * 100,
                    marker="s", linestyle="none", capsize=3, label="Img2Img at r")
        for name, style in (("none", ":"), ("traditional", "-."), ("txt2img", "--"), ("genie-ada", "-")):
            if name in rows.index:
                ax.axhline(rows.at[name, "mean"] * 100, linestyle=style, color="gray" if name != "genie-ada" else "C3",
                           label=name)
        ax.set_xlabel("noise ratio r")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{facts['ways']}-way {shots}-shot")
        ax.legend(fontsize=7)
    return figure(fig, "few-shot accuracy as a function of the noise ratio r")


def consistency_html(frame: pd.DataFrame | None, note: str) -> str:
    if frame is None or frame.empty:
        return "<p>No generated images.</p>"
    shown = frame.copy()
    for column in ("as label", "as source", "neither"):
        shown[column] = (shown[column] * 100).map("{:.1f}%".format)
    return f"<p>{note}</p>" + table(shown)


def ada_html(choices: pd.DataFrame | None, ratios: list[float]) -> str:
    if choices is None or choices.empty:
        return "<p>GeNIe-Ada was not run.</p>"
    pyplot = plt()
    fig, (left, right) = pyplot.subplots(1, 2, figsize=(11, 4))
    counts = choices["ratio"].value_counts().reindex(ratios, fill_value=0)
    left.bar([str(r) for r in ratios], counts.values)
    left.set_xlabel("r*")
    left.set_ylabel("choices")
    left.set_title(f"r* over {len(choices)} choices")
    means = choices.pivot_table(index="source_class", columns="target", values="ratio", aggfunc="mean")
    shown = right.imshow(means.values, cmap="viridis", vmin=min(ratios), vmax=max(ratios))
    right.set_xticks(range(len(means.columns)), means.columns)
    right.set_yticks(range(len(means.index)), means.index)
    right.set_xlabel("target class")
    right.set_ylabel("source class")
    right.set_title("mean r* per class pair")
    for (i, j), value in np.ndenumerate(means.values):
        if not np.isnan(value):
            right.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(shown, ax=right)
    spread = choices.groupby(["source_class", "target"])["ratio"].agg(["mean", "std", "count"]).reset_index()
    return (f"<p>Ada picks the candidate just after the largest jump towards the target's support-set mean "
            f"(features of the frozen extractor). Mean r* {choices['ratio'].mean():.2f}; the pairs with the lowest "
            f"and highest mean r*:</p>" + figure(fig, "distribution of GeNIe-Ada's r*")
            + table(pd.concat([spread.nsmallest(3, "mean"), spread.nlargest(3, "mean")]).round(3)))


def grids_html(grids: list[dict]) -> str:
    if not grids:
        return "<p>No GeNIe-Ada choices to show.</p>"
    ratios = [r for r, _ in grids[0]["candidates"]]
    head = "<tr><th>pair</th><th>source</th>" + "".join(f"<th>r={r}</th>" for r in ratios) + "</tr>"
    rows = []
    for g in grids:
        cells = "".join(f'<td class="{"chosen" if r == g["chosen"] else ""}">{image(p, f"r={r}")}</td>'
                        for r, p in g["candidates"])
        rows.append(f"<tr><td>{g['source_class']} → {g['target']}<br>r* = {g['chosen']}</td>"
                    f"<td>{image(g['source'], 'source')}</td>{cells}</tr>")
    return ("<p>Each row: a source image, its edits towards the target at every candidate r (same seed), and Ada's "
            "choice outlined in red.</p>" f'<table class="grid">{head}{"".join(rows)}</table>')


def failures_html(failures: list[dict]) -> str:
    if not failures:
        return "<p>No GeNIe edit was judged as its source or as a third class.</p>"
    items = [f"<figure>{image(f['source'], 'source')}{image(f['image'], 'edit')}<figcaption>{f['source_class']} → "
             f"{f['label']} ({html.escape(str(f['variant']))})<br>judged {f['judged']} ({f['outcome']})</figcaption>"
             "</figure>" for f in failures]
    return ("<p>GeNIe and GeNIe-Ada edits the real-data judge assigns to their source class (the edit did not take) "
            "or to a third class (neither: often a stroke shape between the two digits). Left: source, right: edit.</p>"
            f'<div class="gallery">{"".join(items)}</div>')


def long_tail_sections(r: dict) -> list[tuple[str, str]]:
    facts, scores = r["facts"], r["table"]
    shown = pd.DataFrame({"variant": scores["variant"]})
    for metric, name in (("accuracy", "overall"), ("accuracy.many", "many"), ("accuracy.medium", "medium"),
                         ("accuracy.few", "few")):
        shown[f"{name} (% ± std)"] = [mean_pm(m, s) for m, s in zip(scores[f"{metric}.mean"], scores[f"{metric}.std"])]
    shown["generated images"] = scores["generated_images.mean"].round(0)
    shown["seeds"] = scores["seeds"]
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(10, 3.8))
    x = np.arange(len(scores))
    for offset, (metric, label) in zip((-0.2, 0.2), (("accuracy", "overall"), ("accuracy.few", "few-shot classes"))):
        ax.bar(x + offset, scores[f"{metric}.mean"] * 100, 0.4, yerr=scores[f"{metric}.std"] * 100, capsize=3,
               label=label)
    ax.set_xticks(x, scores["variant"], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    per_seed = r["per_seed"].pivot(index="seed", columns="variant", values="accuracy.few")
    lines = []
    for a in ("genie-ada", "genie r=0.8"):
        for b in ("txt2img", "real"):
            if a in per_seed and b in per_seed:
                d = per_seed[a] - per_seed[b]
                lines.append(f"<li>few-shot classes, <b>{a}</b> − <b>{b}</b>: {d.mean() * 100:+.1f} points "
                             f"(per seed: {', '.join(f'{v * 100:+.1f}' for v in d)})</li>")
    note = (f"<p>Train split subsampled to imbalance ratio {facts['imbalance_ratio']} (classes {facts['groups']}); "
            f"val and test untouched. Each seed draws its own tail classes and trains its own baseline; every variant "
            f"fine-tunes that baseline for {facts['finetune']['epochs']} epochs. Budget: up to {facts['per_target']} "
            f"images per tail class, the same for every method.</p>")
    consistency = consistency_html(r.get("consistency"), (
        f"Judge: each seed's baseline (real long-tailed images only). 'genie-ada+filter' keeps an edit only when "
        f"the judge gives its target at least {facts['filter_threshold']}: the rows show what was kept."))
    return [("Long-tail fine-tuning: accuracy", note + table(shown) + f"<ul>{''.join(lines)}</ul>" +
             figure(fig, "long-tail accuracy per variant")),
            ("Long-tail: label consistency and the filter", consistency)]


def cost_html(few: dict | None, long: dict | None) -> str:
    parts = []
    for name, r in (("few-shot", few), ("long-tail", long)):
        if r is None or r.get("cost") is None or r["cost"].empty:
            continue
        cost = r["cost"].groupby("variant", sort=False)[["images", "unet_evals_per_image", "seconds_per_image"]].mean()
        reference = cost["unet_evals_per_image"].get("genie r=0.8")
        if reference:
            cost["UNet evals vs genie r=0.8"] = (cost["unet_evals_per_image"] / reference).map("{:.2f}x".format)
        cost["seconds_per_image"] = cost["seconds_per_image"].map("{:.4f}".format)
        parts.append(f"<h3>{name}</h3>" + table(cost.reset_index().round(1)))
    device = (few or long)["facts"].get("device", "")
    return (f"<p>Measured while generating ({html.escape(device)}; batched, {(few or long)['facts']['sampler_steps']} "
            "sampler steps, classifier-free guidance doubles each UNet evaluation). In the few-shot benchmark Ada's "
            "candidates are the GeNIe edits at its ratios, so its row is the sum of theirs; in the long-tail benchmark "
            "Ada generates its candidates itself.</p>" + "".join(parts))


def limits_html(few: dict | None, long: dict | None) -> str:
    facts = (few or long)["facts"]
    rows = []
    if few:
        f = few["facts"]
        rows.append(f"Few-shot: {f['ways']}-way, {f['shots']}-shot, {f['episodes']} episodes each, {f['queries']} "
                    f"queries per class, episode seed {f['episode_seed']}; base classes {f['base_classes']} train the "
                    f"extractor ({f['classifier']} from scratch, val accuracy {f['extractor_val_accuracy']:.3f}); novel "
                    f"classes {f['novel_classes']}. Logistic regression (lbfgs, C = 1) on L2-normalised features of "
                    f"support + generated images. Every method sees the same episodes and gets the same number of extra "
                    f"images per class: (N-1) × K. Supports come from train, queries from val + test.")
    if long:
        f = long["facts"]
        rows.append(f"Long-tail: seeds {f['seeds']} (subsample and classifier), imbalance ratio "
                    f"{f['imbalance_ratio']}, confusion-driven sources from the k = {f['k_confused']} most-confused "
                    f"classes of each tail class (from the baseline's confusion on val).")
    rows.append(f"Generator: {html.escape(facts['generator'])} (digest {facts['generator_digest'][:12]}), "
                f"{facts['sampler_steps']} DPM-Solver steps, guidance {facts['guidance']}, prompt "
                f"'{html.escape(facts['prompt'])}', generation seed {facts['generation_seed']}; Ada ratios "
                f"{facts['ada_ratios']}. Code {facts['git_commit']}.")
    limits = [
        "The embedded generator is a ~2M-parameter latent diffusion model trained on this dataset's full train split "
        "(novel and tail classes included). It stands in for Stable Diffusion's web-scale pretraining: like SD in the "
        "paper it already knows every class, but it learnt them from these very images, which a real deployment "
        "would not have.",
        "Digits at 32 × 32 are far simpler than mini-ImageNet or ImageNet-LT: the absolute numbers say nothing about "
        "those datasets, and the ranking of methods may differ there.",
        "The few-shot extractor is trained from scratch on five classes, not a ResNet-18/50 on 64 mini-ImageNet "
        "classes; the best fixed r is chosen on the same episodes it is scored on.",
        "The label-consistency judge of the few-shot analysis has seen the novel classes; it is used for analysis only.",
        "Timings are from one run on the machine named in the cost table; they are not a speed benchmark.",
    ]
    return ("<ul>" + "".join(f"<li>{row}</li>" for row in rows) + "</ul><p class=\"note\">What this report does not "
            "show:</p><ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in limits) + "</ul>")


def results(settings: Settings) -> tuple[dict | None, dict | None]:
    """The few-shot and long-tail results; at least one must be there."""
    folder = benchmark_dir(settings)
    few, long = load(folder / "few-shot"), load(folder / "long-tail")
    if few is None and long is None:
        raise ValueError(f"no benchmark results under {folder}: run `genie benchmark few-shot` and/or "
                         "`genie benchmark long-tail` first")
    return few, long


@flow(name="genie-report")
def genie_report(settings: Settings, out: Path | None = None) -> dict:
    """Render the latest few-shot and long-tail results into one HTML page; log it to their MLflow runs."""
    folder = benchmark_dir(settings)
    few, long = results(settings)
    sections = []
    if few:
        sections += few_shot_sections(few)
    if long:
        sections += long_tail_sections(long)
    sections += [("Cost per kept image", cost_html(few, long)), ("Protocol, seeds and limits", limits_html(few, long))]
    facts = (few or long)["facts"]
    subtitle = html.escape(f"dataset {facts['dataset']} · generator {facts['generator']} · benchmarks run "
                           + ", ".join(f"{r['facts']['benchmark']} {r['facts']['date']}" for r in (few, long) if r))
    out = Path(out or folder / "report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page("GeNIe on " + facts["dataset"] + ": does it beat the simpler alternatives?", subtitle, sections))
    configure()
    runs = [r["facts"]["run_id"] for r in (few, long) if r and r["facts"].get("run_id")]
    for run_id in runs:
        MlflowClient().log_artifact(run_id, str(out), "report")
    get_run_logger().info("report written to %s (%.1f MB) and logged to runs %s", out, out.stat().st_size / 1e6, runs)
    return {"report": out.as_posix(), "bytes": out.stat().st_size, "mlflow_runs": runs}


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("no headless browser found: install Debian's chromium (make browser)")


def render(report: Path, screenshot: Path, width: int = 1200, height: int = 3000) -> dict:
    """Open the page in headless chromium: a screenshot, and how many of its images decoded."""
    common = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={width},{height}", "--virtual-time-budget=5000"]
    with tempfile.TemporaryDirectory() as profile:
        common.append(f"--user-data-dir={profile}")
        url = Path(report).resolve().as_uri()
        subprocess.run([*common, f"--screenshot={Path(screenshot).resolve()}", url], check=True,
                       capture_output=True, timeout=120)
        dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True,
                             timeout=120).stdout
    def attribute(name: str) -> int:
        found = re.search(rf'data-{name}="(\d+)"', dom)
        return int(found.group(1)) if found else -1

    return {"screenshot": Path(screenshot).as_posix(), "images_total": attribute("images-total"),
            "images_loaded": attribute("images-loaded")}
