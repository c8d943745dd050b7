"""How fast `genie history` answers over many nights: records N nights in a new MLflow store the way a night
records them (its ~100 params, metrics, tags, per-class table, a decision each), then times the text view (all
nights) and the HTML page (the last 30). Prints one JSON object (docs/operations.md has the figures).

    python benchmarks/history_speed.py --nights 200 --folder /tmp/genie-history
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def record(nights: int, classes: int, rng: np.random.Generator, scratch: Path) -> None:
    from mlflow.tracking import MlflowClient

    from models.config import Settings
    from tasks.champion import log_decision
    from tasks.tracking import log_params, open_run

    settings, client = Settings(), MlflowClient()
    accuracy, version = 0.90, 1
    for night in range(nights):
        run_id = open_run("digits", f"genie-run-{night:04d}", f"{night:032x}", {"pipeline": "genie-run"})
        log_params(run_id, settings.flat())
        challenger = float(np.clip(accuracy + rng.normal(0.002, 0.01), 0, 1))
        metrics = {"data.images": 1797 + 5 * night, "generated.generated": int(rng.integers(0, 200)),
                   "champion.test.accuracy": accuracy, "challenger.test.accuracy": challenger,
                   "challenger.test.accuracy.few": float(np.clip(challenger - 0.04, 0, 1))}
        for key, value in metrics.items():
            client.log_metric(run_id, key, value)
        table = pd.DataFrame({"class": [str(c) for c in range(classes)],
                              "accuracy": np.clip(accuracy + rng.normal(0, 0.05, classes), 0, 1)})
        table.to_csv(scratch / "per_class.csv", index=False)
        client.log_artifact(run_id, str(scratch / "per_class.csv"), "champion")
        client.set_terminated(run_id)
        if challenger > accuracy:
            version, accuracy = version + 1, challenger
            log_decision("digits-classifier", "promoted", str(version), "gain", run_id)
        else:
            log_decision("digits-classifier", "refused", str(version + 1), "no gain", run_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=200)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/genie-history"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    os.chdir(args.folder)
    store = args.folder / "mlflow.db"
    store.unlink(missing_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    from models.history_page import lines, render
    from tasks.history import class_accuracy, nights

    start = time.perf_counter()
    record(args.nights, args.classes, np.random.default_rng(0), args.folder)
    recorded = time.perf_counter() - start

    start = time.perf_counter()
    frame = nights("digits", "digits-classifier", None)
    text = lines(frame)
    text_s = time.perf_counter() - start

    start = time.perf_counter()
    last = nights("digits", "digits-classifier", 30)
    page = render(last, class_accuracy(list(last["run_id"])), "digits: the nights")
    html_s = time.perf_counter() - start

    # the command as a person types it, imports and all
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "genie"), "history", "--last", "0", "--params",
                    str(ROOT / "params.yaml")], check=True, capture_output=True)
    command_s = time.perf_counter() - start
    print(json.dumps({"nights": len(frame), "lines": text.count("\n") + 1, "record_s": round(recorded, 1),
                      "history_all_s": round(text_s, 2), "history_html_last30_s": round(html_s, 2),
                      "genie_history_command_s": round(command_s, 2),
                      "html_bytes": len(page), "store": str(store)}, indent=2))


if __name__ == "__main__":
    main()
