"""The champion's policy over the classifier's registered versions (tasks/registry.py registers them): the first
crowned `champion`, a challenger promoted only when it wins on the same test data, promotion and rollback by hand,
each decision tagged on the version it concerns."""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from prefect import get_run_logger, task

from models.config import PromoteConfig
from models.locks import dataset_key, still_held
from models.promotion import DECISIONS, decide
from tasks.caching import Outputs
from tasks.registry import CHAMPION, PREVIOUS, alias_version, tag_version
from tasks.tracking import experiment_id_of, read_spilled


@task(name="crown-first")
def crown_first(name: str, version: str) -> str:
    """With no champion yet, the first registered version of `name` becomes it."""
    current = agree(name)
    if current is None:
        set_champion(name, version, "first", "first model registered")
        tag_version(name, version, {"promotion": "first model registered"})
        get_run_logger().info("%s version %s is the first champion", name, version)
        return version
    return current


@task(name="fetch-champion")
def fetch_champion(name: str, out_dir: Path) -> Outputs | None:
    """The champion's checkpoint, downloaded from its registering run and checked against its recorded sha256."""
    version = alias_version(name)
    if version is None:
        return None
    found = MlflowClient().get_model_version(name, version)
    folder = Path(mlflow.artifacts.download_artifacts(run_id=found.run_id, artifact_path="checkpoint",
                                                      dst_path=str(out_dir)))
    classes = read_spilled(found.run_id, "classes", found.tags.get("classes", ""), lambda text: text.split(","))
    info = {"version": version, "base_version": found.tags.get("base_version"), "role": found.tags.get("role"),
            "classes": classes}
    fetched, recorded = Outputs.of(info, checkpoint=folder / "model.pt"), found.tags.get("checkpoint_sha256")
    if recorded and fetched.digests["checkpoint"] != recorded:  # hashed once, for the check and the outputs
        raise ValueError(f"{name} version {version}: the downloaded checkpoint's sha256 "
                         f"{fetched.digests['checkpoint'][:12]} is not its registered checkpoint_sha256 "
                         f"{recorded[:12]}; its artifacts were changed since, so it is not used")
    return fetched


def move_blocked(name: str, dataset: str, challenger: str, champion: str) -> str | None:
    """Why `champion` must not move to a challenger that won against version `champion`, or None: it was rolled
    back, the night lost its hold on the dataset, or the champion moved since (compare and set: it is read again
    here, a half-done move finished first)."""
    now = agree(name)
    if MlflowClient().get_model_version(name, challenger).tags.get("rolled_back") == "true":
        return f"version {challenger} was rolled back; only `genie promote {challenger}` crowns it"
    if not still_held(dataset_key(dataset)):
        return (f"the night lost its hold on dataset {dataset} (the team's database restarted), so "
                "another night may be deciding; not promoted")
    if now != champion:
        return (f"the champion moved to version {now} after version {challenger} was compared with version "
                f"{champion}; not promoted")
    return None


@task(name="promote")
def promote_if_better(name: str, dataset: str, rules: PromoteConfig, challenger: str, challenger_metrics: dict, champion: str,
                      champion_metrics: dict, run_id: str | None = None,
                      per_class: tuple[dict[str, float], dict[str, float]] | None = None) -> dict:
    """Move `champion` to the challenger only when it passes every gate on the same test data (`per_class`: each
    class's accuracy, challenger's and champion's), and only if the champion is still the version it was compared
    with; record why on the challenger, and the gates' verdicts in the decision log either way."""
    if challenger == champion:
        return {"promoted": False, "reason": "the challenger is the champion", "champion": champion}
    promoted, reason, gates = decide(challenger_metrics, champion_metrics, rules, *(per_class or ()))
    blocked = move_blocked(name, dataset, challenger, champion)
    if promoted and blocked:
        promoted, reason = False, blocked
    tags = {"promotion": "promoted" if promoted else "rejected", "promotion_reason": reason,
            "compared_with_version": champion, "champion_test_accuracy": f"{champion_metrics['accuracy']:.4f}",
            "challenger_test_accuracy": f"{challenger_metrics['accuracy']:.4f}"}
    for group in ("many", "medium", "few"):
        for who, metrics in (("champion", champion_metrics), ("challenger", challenger_metrics)):
            if f"accuracy.{group}" in metrics:
                tags[f"{who}_accuracy_{group}"] = f"{metrics[f'accuracy.{group}']:.4f}"
    tags["gates"] = json.dumps(gates)
    tag_version(name, challenger, tags)
    if promoted:
        set_champion(name, challenger, "promoted", reason, run_id, gates)
    else:
        log_decision(name, "refused", challenger, reason, run_id, gates, replaced=champion)
    get_run_logger().info("%s version %s %s: %s", name, challenger, tags["promotion"], reason)
    return {"promoted": promoted, "reason": reason, "champion": challenger if promoted else champion, "gates": gates}


STAYS = ("refused", "waiting")  # decisions that leave the champion where it is


def decision_log(name: str, last: int = 20, moves_only: bool = False) -> list[dict]:
    """The champion's decisions, newest first: action, version, the champion it replaced (or was compared with),
    reason, each gate's verdict, who, when, run. `moves_only`: those that moved the alias."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(f"{name}-{DECISIONS}")
    if experiment is None:
        return []
    moves = " and ".join(f"tags.action != '{action}'" for action in STAYS) if moves_only else ""
    runs = client.search_runs([experiment.experiment_id], moves, order_by=["attributes.start_time DESC"],
                              max_results=max(last, 20))
    rows = sorted((run.data.tags for run in runs), key=lambda tags: int(tags["at_ns"]), reverse=True)
    return [{key: tags.get(key, "") for key in ("action", "version", "replaced", "reason", "who", "when", "run_id")}
            | {"gates": json.loads(tags.get("gates") or "{}")} for tags in rows[:last]]


def who() -> str:
    """The team member as the MLflow server knows them (their login), else this machine's user."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser()


def log_decision(name: str, action: str, version: str, reason: str, run_id: str | None = None,
                 gates: dict | None = None, replaced: str | None = None) -> None:
    """One row of the decision log (a run of the `<model>-decisions` experiment, its fields as tags)."""
    client = MlflowClient()
    tags = {"action": action, "version": version, "replaced": replaced or "", "reason": reason,
            "who": f"{who()}@{socket.gethostname()}", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "at_ns": str(time.time_ns()), "run_id": run_id or "", "gates": json.dumps(gates or {})}
    logged = client.create_run(experiment_id_of(f"{name}-{DECISIONS}"), run_name=f"{action} v{version}", tags=tags)
    client.set_terminated(logged.info.run_id)


def set_champion(name: str, version: str, action: str, reason: str, run_id: str | None = None,
                 gates: dict | None = None) -> str | None:
    """Point `champion` at a version, keeping the one it replaces as `previous-champion`: the decision is logged
    first, then the aliases move. After a kill between the two, `agree` finishes the move."""
    MlflowClient().get_model_version(name, version)  # raises for an unknown version
    current = alias_version(name)
    log_decision(name, action, version, reason, run_id, gates, replaced=current)
    _move(name, version, current)
    return current


def _move(name: str, version: str, current: str | None) -> None:
    client = MlflowClient()
    if current is not None and current != version:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, CHAMPION, version)


def agree(name: str) -> str | None:
    """The champion, made to agree with the last logged decision (a move a kill left half done is finished)."""
    current = alias_version(name)
    log = decision_log(name, last=1, moves_only=True)
    if log and log[0]["version"] != current:
        _move(name, log[0]["version"], log[0]["replaced"] or None)
        return log[0]["version"]
    return current


def promote_by_hand(name: str, version: str) -> str | None:
    """`genie promote VERSION`: crown it, clearing a rollback mark."""
    agree(name)
    before = set_champion(name, version, "promoted by hand", "genie promote")
    client = MlflowClient()
    for key in ("rolled_back", "rolled_back_reason"):
        try:
            client.delete_model_version_tag(name, version, key)
        except MlflowException:  # no such tag
            pass
    tag_version(name, version, {"promotion": "promoted by hand"})
    return before


def rollback(name: str, reason: str = "rolled back by hand") -> tuple[str, str]:
    """Give `champion` back to the previous champion; the demoted version is marked so that no night crowns
    it again automatically. Returns (demoted, champion)."""
    current = agree(name)
    previous = alias_version(name, PREVIOUS)
    if previous is None:
        raise ValueError(f"{name}: no previous champion to roll back to")
    tag_version(name, current, {"rolled_back": "true", "rolled_back_reason": reason})
    set_champion(name, previous, "rolled back", reason)
    MlflowClient().delete_registered_model_alias(name, PREVIOUS)
    return current, previous
