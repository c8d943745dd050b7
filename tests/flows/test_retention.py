"""A month of nights under faults, shortened. Twelve tiny nights of the digits and four of a second dataset that
shares the checkout's DVC cache and the team's remote, each ending with `genie gc` keeping one night, all through an
HTTP proxy in front of a real MLflow server that answers 503 or stalls for a seeded share of requests; a night and a
gc killed -9 at seeded moments; the registry refusing one night's gc its deletions. Among the digits' nights: ten
adding images (nights 8 and 12 a class each, whose challengers then wait for a person), night 11 on unchanged data with
another fine-tune budget (its baseline is night 10's); an alias `production` on an old version, and two promotions
by hand: night 9's waiting challenger, then night 11's.
At the end: every version with an alias, the champion's base version and the waiting challenger are kept, every
kept version of both datasets reproduces "identical", each champion agrees with the decision log, the history lists
every night, no version lacks its checkpoint, and one more gc finds nothing orphaned."""
import json
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image, ImageChops

from flows.pipeline import genie_run
from flows.reproduce import genie_reproduce
from models.params import load_settings
from tasks.champion import decision_log, promote_by_hand
from tasks.deletion import collect
from tasks.history import nights
from tasks.retention import logged_model
from tests.proxy import faulty, tracking_server
from tests.servers.team import GENIE
from tests.webhook import endpoint

pytestmark = pytest.mark.faults  # sixteen nights and a reproduce of each kept version: the tier of its own
SEED = 20261208
TINY = ["classifier.epochs=1", "finetune.epochs=1", "select.per_target=2", "generator.steps=4",
        "generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.adapter.steps=4"]
GC = ["retention.keep_nights=1", "retention.generated_days=0", "retention.grace_hours=0", "retention.after_night=true"]
FEW = ["dataset.name=few", "dataset.path=data/few", "dataset.embedded=false"]
FOLDERS = {"work folders": "artifacts", "mlartifacts": "mlartifacts", "DVC cache": ".dvc/cache", "DVC remote": "remote"}


def usage(project: Path) -> dict[str, int]:
    sizes = {name: sum(p.stat().st_size for p in (project / folder).rglob("*") if p.is_file() and not p.is_symlink())
             for name, folder in FOLDERS.items()}
    return sizes | {"all": sum(sizes.values())}


def add_images(data: Path, night: int, classes: int = 10) -> None:
    """Night k's new images: three of class k % classes shifted by k pixels (new bytes); nights 8 and 12 of the
    digits add a class each (10, 11: ones and twos turned)."""
    if night in (8, 12) and classes == 10:
        new, like = ("10", "1") if night == 8 else ("11", "2")
        (data / new).mkdir()
        for path in sorted((data / like).glob("*.png"))[:12]:
            Image.open(path).rotate(90).save(data / new / f"new-{path.name}")
        return
    label = str(night % classes)
    for path in sorted((data / label).glob("*.png"))[:3]:
        ImageChops.offset(Image.open(path), night, 0).save(data / label / f"night{night}-{path.name}")


def killed(args: list[str], env: dict, after: float) -> dict:
    """`genie ARGS` killed -9 `after` seconds from its start (if still running)."""
    process = subprocess.Popen([str(GENIE), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(after)
        return {"command": args[0], "killed": False, "exit": process.returncode}
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return {"command": args[0], "killed": True, "after_s": round(after, 1)}


def test_a_month_of_nights_under_faults_keeps_all_that_is_named(project: Path, prefect_server, monkeypatch):
    draw, remote = random.Random(SEED), project / "remote"
    remote.mkdir()
    common = [*TINY, *GC, f"dvc.remote.url={remote}"]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4")  # isolated 503s are retried, an outage is not
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # 1, 2, 4, 8 s
    counts = {"nights": 0, "failed nights": 0, "kills": [], "gcs": 0, "gc failed": 0, "bytes freed": 0}
    finished: dict[str, list[str]] = {"digits": [], "few": []}
    waiting: dict[int, str] = {}

    with tracking_server(project / "mlflow.db", project / "mlartifacts") as server, \
            faulty(server, unavailable=0.03, stalled=0.03, seed=SEED) as faults, endpoint() as (hook, alerts):
        monkeypatch.setenv("MLFLOW_TRACKING_URI", faults.url)
        monkeypatch.setenv("GENIE_NOTIFY_URLS", hook)
        env = os.environ | {"PREFECT_API_URL": prefect_server, "MLFLOW_TRACKING_URI": faults.url}

        def night(dataset: str, *extra: str) -> dict:
            settings = load_settings("params.yaml", [*common, *(FEW if dataset == "few" else []), *extra])
            summary = genie_run(settings)
            counts["nights"] += 1
            counts["gcs"] += settings.retention.after_night
            counts["bytes freed"] += summary.get("gc_bytes", 0)
            finished[dataset].append(summary["run_id"])
            return summary

        for k in range(1, 13):
            if k != 1 and k != 11:
                add_images(project / "data" / "digits", k)
            if k == 5:  # the registry refuses this night's gc its deletions: the gc alone fails, and says so
                faults.failing = ("model-versions/delete",)
            summary = night("digits", *(["finetune.epochs=2"] if k == 11 else []),
                            *(["retention.after_night=false"] if k == 6 else []))
            faults.failing = ()
            if summary.get("waiting"):
                waiting[k] = summary["challenger_version"]
            if k == 1:
                shutil.copytree(project / "data" / "digits", project / "data" / "few",
                                ignore=lambda folder, names: [n for n in names if n.isdigit() and int(n) >= 5])
                MlflowClient().set_registered_model_alias("digits-classifier", "production", "2")
            if k == 5:
                assert "decision" in summary
                assert MlflowClient(server).get_run(summary["run_id"]).info.status == "FINISHED"
                assert any("genie gc after a night failed" in a["title"] for a in alerts), alerts
                counts["gc failed"] += 1
            if k == 6:  # a gc killed while it reads and deletes what the night left, the registry slow to answer
                faults.stalled = 0.5
                counts["kills"].append(killed(["gc", *sum((["--set", s] for s in common), [])], env,
                                              draw.uniform(6, 12)))
                faults.stalled = 0.03
                counts["gcs"] += 1
            if k == 9:  # the newest waiting challenger, served by hand: the champion knows class 10 from now on
                promote_by_hand("digits-classifier", waiting[k])
            if k == 11:  # whatever the gates said, by hand: its base version is night 10's baseline
                by_hand = summary["challenger_version"]
                promote_by_hand("digits-classifier", by_hand)
            if k in (2, 5, 8, 11):
                add_images(project / "data" / "few", k, classes=5)
                if k == 5:  # a night of the other dataset killed mid-way; the next one makes it again
                    counts["kills"].append(killed(["run", *sum((["--set", s] for s in [*common, *FEW]), [])], env,
                                                  draw.uniform(8, 25)))
                night("few")

        faults.unavailable = faults.stalled = 0.0
        for dataset in ("digits", "few"):  # one more gc of each: nothing orphaned is left for it
            settings = load_settings("params.yaml", [*common, *(FEW if dataset == "few" else [])])
            collect(settings.registered_model, dataset, settings.workdir, settings.retention, str(remote))
            again = collect(settings.registered_model, dataset, settings.workdir, settings.retention, str(remote),
                            dry_run=True)
            assert not again.items(), again.lines(done=False, every=True)
            counts["gcs"] += 2

        client = MlflowClient()
        champion = client.get_model_version_by_alias("digits-classifier", "champion")
        assert str(champion.version) == by_hand and str(client.get_model_version_by_alias(
            "digits-classifier", "production").version) == "2" and set(waiting) == {8, 9, 12}, waiting
        named = {"2", by_hand, champion.tags["base_version"], waiting[12]}
        kept = {name: client.search_model_versions(f"name = '{name}'") for name in ("digits-classifier",
                                                                                    "few-classifier")}
        assert named <= {str(v.version) for v in kept["digits-classifier"]}, (named, kept)
        for name, versions in kept.items():
            assert decision_log(name, 1, moves_only=True)[0]["version"] == str(
                client.get_model_version_by_alias(name, "champion").version)
            experiment = client.get_experiment_by_name(name.removesuffix("-classifier")).experiment_id
            models = {m.model_id for m in client.search_logged_models([experiment])}
            assert models == {logged_model(v) for v in versions}  # no orphaned logged model
            for version in versions:  # each with its checkpoint
                assert mlflow.artifacts.list_artifacts(artifact_uri=version.source), (name, version.version)
        for dataset, run_ids in finished.items():
            listed = set(nights(dataset, f"{dataset}-classifier", None)["run_id"])
            assert set(run_ids) <= listed, (dataset, set(run_ids) - listed)
        verdicts = {}
        for name, versions in kept.items():
            for version in sorted(versions, key=lambda v: int(v.version)):
                if version.tags.get("role") in ("baseline", "finetuned"):
                    shutil.rmtree(project / ".genie" / "reproduce", ignore_errors=True)
                    verdicts[f"{name}@{version.version}"] = genie_reproduce(f"{name}@{version.version}",
                                                                           remote=str(remote))["verdict"]
        counts |= {"faults": dict(faults.counts), "versions kept": {n: len(v) for n, v in kept.items()},
                   "reproduced": verdicts, "usage": usage(project)}
        print(json.dumps(counts, indent=1))
        assert set(verdicts.values()) == {"identical"}, verdicts
        assert all(kill["killed"] for kill in counts["kills"]) and faults.counts["503"] > 0
