"""The nights at a glance (tasks/history.py reads them): one line per night for the terminal, and one
self-contained HTML page with accuracy over nights (promotions marked), per-class accuracy as a heatmap and the
images and edits of each night."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

PROMOTIONS = ("first", "promoted", "promoted by hand")


def shown(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads: dates to the minute, accuracies to 4 places, counts as integers."""
    out = frame.drop(columns=["run_id"]).copy()
    out["night"] = out["night"].dt.strftime("%Y-%m-%d %H:%M")
    for column in ("champion", "challenger", "few_shot", "worst_group"):
        out[column] = out[column].map(lambda v: "-" if pd.isna(v) else f"{v:.4f}")
    for column in ("images", "new_images", "edits", "seconds"):
        out[column] = out[column].map(lambda v: "-" if pd.isna(v) else f"{v:+.0f}" if column == "new_images"
                                      else f"{v:.0f}")
    out["decision"] = [f"{d} v{v}" if v else d or "-" for d, v in zip(frame["decision"], frame["version"])]
    return out.drop(columns=["version"])


def lines(frame: pd.DataFrame) -> str:
    return shown(frame).to_string(index=False) if len(frame) else "no nights recorded"


def _accuracy_plot(plt, frame: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(10, 3.6))
    x = np.arange(len(frame))
    for column, style in (("champion", "-o"), ("challenger", "--s"), ("few_shot", ":^"), ("worst_group", ":v")):
        if frame[column].notna().any():
            ax.plot(x, frame[column], style, markersize=4, label=column.replace("_", "-"))
    for i in np.flatnonzero(frame["decision"].isin(PROMOTIONS).to_numpy()):
        ax.axvline(i, color="#2a2", alpha=0.35)
        ax.annotate(f"v{frame['version'].iloc[i]}", (i, 1.0), fontsize=7, ha="center", va="bottom",
                    xycoords=("data", "axes fraction"))
    _night_axis(ax, frame)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _night_axis(ax, frame: pd.DataFrame) -> None:
    step = max(1, len(frame) // 15)
    ax.set_xticks(np.arange(0, len(frame), step))
    days = frame["night"].dt.strftime("%m-%d")
    labels = days if days.is_unique else frame["night"].dt.strftime("%m-%d %H:%M")  # several nights a day
    ax.set_xticklabels(labels[::step], rotation=45, fontsize=7)


def _heatmap(plt, per_class: pd.DataFrame, frame: pd.DataFrame):
    nights = frame.set_index("run_id").loc[[run for run in frame["run_id"] if run in per_class.columns]]
    values = per_class[nights.index]
    fig, ax = plt.subplots(figsize=(10, 0.8 + 0.22 * len(values)))
    image = ax.imshow(values.to_numpy(dtype=float), aspect="auto", cmap="RdYlGn", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_yticks(np.arange(len(values)))
    ax.set_yticklabels(values.index, fontsize=7)
    _night_axis(ax, nights.reset_index())
    fig.colorbar(image, ax=ax, label="champion's class accuracy")
    return fig


def _volume_plot(plt, frame: pd.DataFrame):
    fig, ax = plt.subplots(figsize=(10, 2.8))
    x = np.arange(len(frame))
    ax.bar(x - 0.2, frame["new_images"].fillna(0), 0.4, label="new images")
    ax.bar(x + 0.2, frame["edits"].fillna(0), 0.4, label="edits made")
    _night_axis(ax, frame)
    ax.legend(fontsize=8)
    return fig


def render(frame: pd.DataFrame, per_class: pd.DataFrame, title: str) -> str:
    from models.benchmarks.report import figure_uri, pyplot  # matplotlib: for the page only
    from models.benchmarks.results import table

    plt = pyplot()
    plots = [{"title": "Accuracy over nights (promotions marked)", "uri": figure_uri(_accuracy_plot(plt, frame))}]
    if not per_class.empty:
        plots.append({"title": "Per-class accuracy of the champion, night by night",
                      "uri": figure_uri(_heatmap(plt, per_class, frame))})
    plots.append({"title": "Images and edits per night", "uri": figure_uri(_volume_plot(plt, frame))})
    moves = frame["decision"].isin(PROMOTIONS).sum()
    summary = (f"{len(frame)} nights from {frame['night'].min():%Y-%m-%d} to {frame['night'].max():%Y-%m-%d}; "
               f"{moves} moves of champion")
    environment = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("history.html.j2").render(title=title, summary=summary, plots=plots,
                                                              table=table(shown(frame)))
