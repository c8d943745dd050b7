"""The nights at a glance: one row per pipeline run, read from MLflow with two searches (the nights and the
decision log), so that hundreds of nights answer in seconds, on a laptop's store as through the team's server."""
from __future__ import annotations

import os

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from models.promotion import DECISIONS

PAGE = 1000  # runs per search request (MLflow's page size)
COLUMNS = ["night", "run_id", "data", "images", "new_images", "edits", "champion", "challenger", "few_shot",
           "worst_group", "decision", "version", "seconds"]


def newest_runs(experiment: str, query: str, last: int | None) -> list:
    """The runs of `experiment` matching `query`, newest first (the last `last`; None: all), page by page."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    runs, token = [], None
    while last is None or len(runs) < last:
        page = client.search_runs([found.experiment_id], query, order_by=["attributes.start_time DESC"],
                                  max_results=PAGE if last is None else min(PAGE, last - len(runs)), page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def nights(dataset: str, model: str, last: int | None = 30) -> pd.DataFrame:
    """The last `last` nights of `dataset` (None: all), oldest first. champion: the champion's test accuracy that
    night, before its decision (none on a night whose data gained a class it cannot be scored on); challenger, few_shot and worst_group: the night's
    challenger; decision: what the decision log says the night did to `champion`."""
    decided = {run.data.tags.get("run_id"): run.data.tags for run in newest_runs(f"{model}-{DECISIONS}", "", None)}
    rows = []
    for run in newest_runs(dataset, "tags.pipeline = 'genie-run'", None if last is None else last + 1):
        m, info = run.data.metrics, run.info
        decision = decided.get(info.run_id, {})
        rows.append({
            "night": pd.Timestamp(info.start_time, unit="ms"), "run_id": info.run_id,
            "data": run.data.tags.get("dataset_md5", "")[:8], "images": m.get("data.images"),
            "edits": m.get("generated.generated"),
            "champion": m.get("champion.test.accuracy"),  # none when the data gained a class it cannot score
            "challenger": m.get("challenger.test.accuracy"),
            "few_shot": m.get("challenger.test.accuracy.few"),
            "worst_group": m.get("challenger.test.accuracy.worst_group"),
            "decision": decision.get("action") or ("failed" if info.status == "FAILED" else ""),
            "version": decision.get("version", ""),
            "seconds": (info.end_time - info.start_time) / 1000 if info.end_time else None,
        })
    frame = pd.DataFrame(rows, columns=COLUMNS).iloc[::-1].reset_index(drop=True)
    numbers = ["images", "edits", "champion", "challenger", "few_shot", "worst_group", "seconds"]
    frame[numbers] = frame[numbers].astype(float)
    frame["new_images"] = frame["images"].diff()  # the night before the first shown counts its new images
    return frame.iloc[-last:].reset_index(drop=True) if last is not None else frame


def night_tables(run_ids: list[str], artifact_path: str, strict: bool = False) -> dict[str, pd.DataFrame]:
    """One small CSV artifact of each run (`champion/per_class.csv`, `generated/used.csv`); a run without it (a
    night that stopped before writing it) is left out. `strict`: only a run that lists no such file is left out, and
    any other error is raised (what gc keeps must not rest on a read that failed)."""
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # one small file a night: no bar for each
    tables, client = {}, MlflowClient()
    for run_id in run_ids:
        if strict and artifact_path not in {f.path for f in client.list_artifacts(run_id, os.path.dirname(artifact_path))}:
            continue
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path)
        except (MlflowException, OSError):
            if strict:
                raise
            continue
        tables[run_id] = pd.read_csv(path, dtype={"class": str})
    return tables


def class_accuracy(run_ids: list[str]) -> pd.DataFrame:
    """Each night's per-class test accuracy of its champion (rows: classes in natural order, columns: runs); a night
    that did not evaluate its champion (stopped early, or its data gained a class) is left out."""
    frame = pd.DataFrame({run_id: table.set_index("class")["accuracy"]
                          for run_id, table in night_tables(run_ids, "champion/per_class.csv").items()})
    return frame.loc[sorted(frame.index, key=lambda c: (len(c), c))] if len(frame) else frame
