"""Driving genie as a team member would: its command line, in a folder of its own, with the servers' environment."""
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from flows.servers.stack import Stack

GENIE = Path(sys.executable).parent / "genie"
TINY = ["generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4", "generator.steps=4",
        "generator.batch_size=4", "generator.adapter.steps=4", "classifier.epochs=1", "finetune.epochs=1",
        "select.per_target=2"]


def genie(*args: str, cwd: Path, env: dict | None = None, background: bool = False):
    """`genie ARGS` to its end, or started in the background (its output in files, so that no full pipe stalls it
    while it holds the dataset; `finished` collects it)."""
    command = [str(GENIE), *args]
    if not background:
        return subprocess.run(command, cwd=cwd, env=env or os.environ.copy(), capture_output=True, text=True,
                              timeout=900)
    output = [tempfile.TemporaryFile("w+") for _ in range(2)]
    process = subprocess.Popen(command, cwd=cwd, env=env or os.environ.copy(), stdout=output[0], stderr=output[1],
                               text=True)
    process.output = output
    return process


def finished(process: subprocess.Popen, timeout: float = 900) -> subprocess.CompletedProcess:
    process.wait(timeout)
    out, err = (handle.seek(0) or handle.read() for handle in process.output)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def night_args(*settings: str) -> list[str]:
    return ["run", *(a for kv in [*TINY, *settings] for a in ("--set", kv))]


def summary(completed: subprocess.CompletedProcess) -> dict:
    return json.loads(completed.stdout[completed.stdout.index("{"):])


def stack_command(stack: Stack, command: str) -> subprocess.CompletedProcess:
    ports = ["--postgres-port", str(stack.postgres_port), "--mlflow-port", str(stack.mlflow_port),
             "--prefect-port", str(stack.prefect_port)] if command == "up" else []
    return genie("stack", command, "--folder", str(stack.root), *ports, cwd=stack.root.parent)
