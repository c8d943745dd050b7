"""A small registry on a real MLflow store, made without training, for the tests of gc and backup."""
import os
from pathlib import Path

from mlflow.tracking import MlflowClient

from tasks.champion import log_decision
from tasks.retention import EVALUATED

NAME, DATASET = "digits-classifier", "digits"
T0 = 1_700_000_000_000


def registry(root: Path) -> dict:
    """Five nights (the newest failed before evaluate) and six versions: v1 the baseline every later one is based
    on, v3 aliased `production`, v4 waiting for a person, v5 the champion; v2 and v6 are nobody's."""
    client = MlflowClient()
    experiment = client.create_experiment(DATASET)
    nights = []
    for i, evaluated in enumerate([True, True, True, True, False]):
        run = client.create_run(experiment, start_time=T0 + i * 60_000, tags={"pipeline": "genie-run"}).info.run_id
        if evaluated:
            client.log_metric(run, EVALUATED, 0.9)
        client.set_terminated(run, "FINISHED" if evaluated else "FAILED", end_time=T0 + i * 60_000 + 1000)
        nights.append(run)
    client.create_registered_model(NAME)
    made = {}
    for version, night, base in [(1, 0, ""), (2, 0, "1"), (3, 1, "1"), (4, 2, "1"), (5, 3, "1"), (6, 1, "1")]:
        child = client.create_run(experiment, tags={"mlflow.parentRunId": nights[night]}).info.run_id
        (root / "weights").mkdir(exist_ok=True)
        (root / "weights" / "model.safetensors").write_bytes(os.urandom(1000))
        client.log_artifacts(child, str(root / "weights"), "model")
        model = client.create_logged_model(experiment, source_run_id=child)
        client.log_model_artifacts(model.model_id, str(root / "weights"))
        client.create_model_version(NAME, f"models:/{model.model_id}", run_id=child, model_id=model.model_id,
                                    tags={"pipeline_run_id": nights[night], "base_version": base,
                                          "data_dvc_md5": f"{version:032x}.dir"})
        made[str(version)] = (child, model.model_id)
    client.set_registered_model_alias(NAME, "production", "3")
    client.set_registered_model_alias(NAME, "champion", "5")
    log_decision(NAME, "waiting", "4", "new classes: it waits for a person", nights[2])
    return {"nights": nights, "versions": made, "experiment": experiment}
