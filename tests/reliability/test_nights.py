"""Nights in one project: a last batch of one image, the champion as a model people can use, a rolled-back
version that stays down, a new class. The tests build on one another in this order."""
import base64
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image
from prefect.logging import disable_run_logger

from models.classifier import classify
from models.config import PromoteConfig
from tasks.champion import decision_log, promote_if_better
from tests.ports import free_port

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

NAME = "digits-classifier"


@pytest.fixture(scope="module")
def first_night(project, genie) -> dict:
    """The first night, with a batch size that leaves one image in the last batch (BatchNorm refuses a batch of
    one); every night of this module runs with it."""
    prepared = json.loads(genie("prepare").stdout)
    train = sum(prepared["counts"]["train"].values())
    batch = next(b for b in range(32, train) if train % b == 1)
    genie.extra.append(f"classifier.batch_size={batch}")
    night = genie("run")
    assert night.returncode == 0, night.stderr[-3000:]
    return json.loads(night.stdout[night.stdout.index("{"):]) | {"train_images": train, "batch_size": batch}


def test_a_last_batch_of_one_image_trains(first_night):
    assert first_night["train_images"] % first_night["batch_size"] == 1
    assert first_night["challenger_version"] and "decision" in first_night



def test_the_champion_takes_raw_images_in_process_and_over_rest(first_night, digits):
    files = sorted(digits.glob("*/*.png"))[::180][:8]
    arrays = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])  # uint8, N x 32 x 32 x 3

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    predicted = model.predict(arrays)
    classes = [str(c) for c in range(10)]
    assert list(predicted.columns) == ["label", *classes]
    assert np.allclose(predicted[classes].sum(1), 1, atol=1e-5)
    champion = MlflowClient().get_model_version_by_alias(NAME, "champion")
    folder = mlflow.artifacts.download_artifacts(run_id=champion.run_id, artifact_path="checkpoint")
    probabilities, names = classify(Path(folder) / "model.pt", files)  # the pipeline's own preprocessing
    assert list(predicted["label"]) == [names[i] for i in probabilities.argmax(1)]
    assert np.allclose(predicted[classes].to_numpy(), probabilities, atol=1e-4)
    assert model.predict(arrays[0])["label"][0] == predicted["label"][0]  # one image
    as_bytes = pd.DataFrame({"image": [p.read_bytes() for p in files]})  # file bytes
    assert list(model.predict(as_bytes)["label"]) == list(predicted["label"])

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
    stored = {p.name for p in local.rglob("*") if p.is_file()}
    assert "weights.safetensors" in stored and not any(n.endswith((".pkl", ".pt", ".pth")) for n in stored)

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                               f"models:/{NAME}@champion", "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
                              env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "mlflow models serve did not start"
            time.sleep(1)
        buffer = io.BytesIO()
        Image.open(files[0]).save(buffer, format="PNG")
        request = {"dataframe_split": {"columns": ["image"], "data": [[base64.b64encode(buffer.getvalue()).decode()]]}}
        answer = httpx.post(f"http://127.0.0.1:{port}/invocations", json=request, timeout=60)
        assert answer.status_code == 200, answer.text
        [row] = answer.json()["predictions"]
        assert row["label"] == predicted["label"][0] and abs(sum(row[c] for c in classes) - 1) < 1e-5
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
        server.wait()


def test_rollback_then_a_night_keeps_the_demoted_version_down(first_night, genie):
    baseline, challenger = first_night["baseline_version"], first_night["challenger_version"]
    assert genie("promote", challenger).returncode == 0
    rolled = genie("rollback", "--reason", "worse in production")
    assert rolled.returncode == 0 and f"version {challenger} is marked rolled back" in rolled.stdout
    client = MlflowClient()
    tags = client.get_model_version(NAME, challenger).tags
    assert (tags["rolled_back"], tags["rolled_back_reason"]) == ("true", "worse in production")

    again = genie("run")  # the same data: the same challenger is found again by its digest
    assert again.returncode == 0, again.stderr[-3000:]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == baseline
    with disable_run_logger():  # even a clear win does not crown it automatically
        decision = promote_if_better.fn(NAME, "digits", PromoteConfig(), challenger, {"accuracy": 1.0}, baseline,
                                        {"accuracy": 0.5})
    assert not decision["promoted"] and "was rolled back" in decision["reason"]

    assert genie("promote", challenger).returncode == 0  # by hand it can, and the mark goes
    assert "rolled_back" not in client.get_model_version(NAME, challenger).tags
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == challenger


def test_a_new_class_registers_the_challenger_and_skips_promotion(project, genie, first_night):
    new = project / "data/digits/10"  # a new class: ones turned on their side
    new.mkdir()
    for path in sorted((project / "data/digits/1").glob("*.png"))[:12]:
        Image.open(path).rotate(90).save(new / path.name)
    night = genie("run")
    assert night.returncode == 0, night.stderr[-3000:]
    summary = json.loads(night.stdout[night.stdout.index("{"):])
    # the generator is not retrained for it: the new class is taught to it (generator.adapt: lora) and named by its
    # token wherever it is a target
    assert summary["generator"].startswith("train-generator: reused (new classes (+10) adapted, not retrained; ")
    card = json.loads((project / "artifacts/digits/adapters/10/adapter.json").read_text())
    assert card["token"] == "<10>" and card["kind"] == "lora"
    assert (project / "artifacts/digits/adapters/10/pytorch_lora_weights.safetensors").is_file()
    registered = MlflowClient().get_model_version("digits-adapters", "1")
    assert registered.tags["class"] == "10" and registered.tags["token"] == "<10>" and registered.tags["base_digest"]
    # the champion cannot be scored on class 10: by default (promote.new_classes: wait) a person decides, and the
    # decision names the command that serves the new class
    version = summary["challenger_version"]
    assert summary["decision"].startswith(f"challenger v{version} not promoted: champion v{summary['champion']} "
                                          "knows classes 0, 1, 2")
    assert summary["decision"].endswith(f"the data also has 10 (and lacks none); it waits for a person: `genie "
                                        f"promote {version}` serves it") and summary["waiting"] is True
    assert decision_log("digits-classifier")[0]["action"] == "waiting"
    assert "Traceback" not in night.stderr


def test_history_shows_each_night_and_draws_them(project, genie, first_night, tmp_path):
    shown = genie("history", "--html", str(tmp_path / "history.html"), "--screenshot", str(tmp_path / "history.png"))
    assert shown.returncode == 0, shown.stderr[-3000:]
    rows = [line.split() for line in shown.stdout.splitlines() if line[:4].isdigit()]
    assert len(rows) == 3  # the first night, the night after the rollback, the night with the new class
    first, again, added = rows
    challenger = f"v{first_night['challenger_version']}"
    assert first[-3:-1] == ["promoted" if first_night["promoted"] else "refused", challenger]
    assert again[-3:-1] == ["refused", challenger] and again[4] == "+0"  # rolled back: found again, stays down
    assert added[-3:-1] == ["waiting", f"v{decision_log(NAME)[0]['version']}"]
    assert added[4] == "+12"  # the new class's images
    assert "figures rendered" in shown.stdout and (tmp_path / "history.png").stat().st_size > 10_000
