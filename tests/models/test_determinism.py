"""The same commit, configuration and seed give the same bytes in two separate processes: classifier and
embedded generator weights, and GeNIe edits made with the saved generator."""
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.config import ClassifierConfig, RuntimeConfig
from models.determinism import pin_runtime, thread_count
from tasks.caching import cache_key, keyed_folder
from tasks.train import train_classifier
from tests.models.reproduce import tiny_classifier

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ("classifier.pt", "generator/model/unet/diffusion_pytorch_model.safetensors",
           "generator/model/vae/diffusion_pytorch_model.safetensors", "generator/model/text_encoder/model.safetensors")
EDITS = ("edit-0.png", "edit-1.png")


def reproduce(digits: Path, out: Path, seed: int) -> dict:
    out.mkdir()
    # without OMP_NUM_THREADS the configured count (1, one core per process) is what pins the threads
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-m", "tests.models.reproduce", str(digits), str(out), str(seed)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.nights
def test_two_processes_make_the_same_bytes(digits, tmp_path):
    first, second = reproduce(digits, tmp_path / "first", 0), reproduce(digits, tmp_path / "second", 0)
    assert first["threads"] == second["threads"] == 1
    assert set(WEIGHTS + EDITS) <= set(first["files"])
    assert first["files"] == second["files"]  # every file: weights, configs, tokenizer, model card, edits

    other = reproduce(digits, tmp_path / "other-seed", 1)["files"]
    assert all(other[name] != first["files"][name] for name in WEIGHTS + EDITS)


def test_other_threads_drawing_from_python_random_leave_the_weights_alone(digits):
    """Prefect's event client pings its websocket from another thread with random.getrandbits, at moments
    that vary from run to run: a training that drew its crops from Python's `random` got other weights."""
    quiet = tiny_classifier(digits, 0, epochs=3)[0].state_dict()
    stop = threading.Event()

    def draw():
        while not stop.wait(0.0005):
            random.getrandbits(32)

    other = threading.Thread(target=draw, daemon=True)
    other.start()
    try:
        busy = tiny_classifier(digits, 0, epochs=3)[0].state_dict()
    finally:
        stop.set()
        other.join()
    assert all(torch.equal(quiet[name], busy[name]) for name in quiet)


def test_omp_num_threads_wins_over_the_configured_count(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert thread_count(RuntimeConfig(threads=4)) == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert thread_count(RuntimeConfig(threads=4)) == 4
    assert thread_count(RuntimeConfig(threads=None)) == torch.get_num_threads()


@pytest.mark.parametrize("deterministic", [False, True])
def test_pinning_sets_the_kernels(monkeypatch, deterministic):
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # leave this process's threads alone
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        pin_runtime(RuntimeConfig(deterministic=deterministic))
        assert torch.are_deterministic_algorithms_enabled() is deterministic
        assert torch.is_deterministic_algorithms_warn_only_enabled() or not deterministic  # warn, never stop a run
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def test_the_runtime_is_in_no_cache_key(tmp_path):
    """A machine's threads and kernels, like its Dask worker count, leave what is cached where it is."""
    inputs = dict(cfg=ClassifierConfig(model="test_resnet", epochs=1), dataset_root=tmp_path, dataset_md5="0" * 32,
                  image_size=32)
    keys = {(cache_key(SimpleNamespace(task=train_classifier), {**inputs, "out_dir": tmp_path, "runtime": r}),
             keyed_folder(train_classifier, tmp_path / "baseline", {**inputs, "runtime": r}))
            for r in (None, RuntimeConfig(threads=1), RuntimeConfig(threads=8, deterministic=False))}
    assert len(keys) == 1
