"""How a night's cost grows with the data: cold `genie run` nights on procedurally drawn ImageFolders of growing
size (tiny model budgets, so the non-neural work shows), and 320 edits added to edit folders of growing size.
Prints each step's wall time (from the Prefect server's task runs), the night's peak memory (RSS), each step's
growth exponent between sizes, and writes a Markdown table. A benchmark, not a test: run it with nothing else
on the machine (`make bench-scale`). `--code DIR` times another checkout of genie-flow (e.g. an older commit)
with the same data and settings."""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from flows.environment import QUIET as QUIET_DEFAULTS

REPO = Path(__file__).resolve().parents[1]
TINY = ["dataset.long_tail.imbalance_ratio=null", "generator.embedded.vae_steps=4", "generator.embedded.unet_steps=4",
        "generator.steps=4", "classifier.epochs=1", "finetune.epochs=1", "classifier.patience=1",
        "finetune.patience=1", "select.targets=all", "select.per_target=1", "select.k_confused=1"]
QUIET = QUIET_DEFAULTS | {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "PREFECT_LOGGING_LEVEL": "WARNING"}


def draw_dataset(root: Path, classes: int, per_class: int, size: int, seed: int = 0) -> int:
    """An ImageFolder of `classes` classes: each a colour and a shape, drawn at a random place and scale on noise."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"c{c:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        colour, sides = tuple(int(v) for v in rng.integers(40, 255, 3)), 3 + c % 5
        for i in range(per_class):
            image = Image.fromarray(rng.integers(0, 60, (size, size, 3), dtype=np.uint8))
            r, cx, cy = rng.uniform(0.2, 0.4) * size, *rng.uniform(0.35, 0.65, 2) * size
            angle = rng.uniform(0, 2 * math.pi) + c
            ImageDraw.Draw(image).polygon([(cx + r * math.cos(angle + 2 * math.pi * k / sides),
                                            cy + r * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)],
                                          fill=colour)
            image.save(folder / f"{i:04d}.png")
    return classes * per_class


@contextmanager
def prefect_server(home: Path):
    """A Prefect server of the benchmark's own: every night's task runs stay readable after the night."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = os.environ | QUIET | {"PREFECT_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api"
    try:
        import urllib.request

        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def task_seconds(api: str, since: float) -> dict[str, float]:
    """Wall seconds per task name (summed over its runs) of the task runs that started after `since`."""
    os.environ["PREFECT_API_URL"] = api
    from datetime import datetime, timezone

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterStartTime

    async def read():
        runs, after = [], TaskRunFilter(start_time=TaskRunFilterStartTime(after_=datetime.fromtimestamp(since, timezone.utc)))
        async with get_client() as client:
            while page := await client.read_task_runs(task_run_filter=after, limit=200, offset=len(runs)):
                runs += page
        return runs

    seconds: dict[str, float] = {}
    for run in asyncio.run(read()):
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]  # generate-shard-3 -> generate-shard
            seconds[name] = seconds.get(name, 0.0) + (run.end_time - run.start_time).total_seconds()
    return seconds


def night(project: Path, code: Path, api: str, overrides: list[str], until: str = "evaluate") -> dict:
    """One `genie run` of `code` in `project`: wall time, peak RSS of its process tree, seconds per step."""
    env = os.environ | QUIET | {"PREFECT_API_URL": api, "PYTHONPATH": str(code),
                                "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlflow.db'}"}
    command = [sys.executable, "-c", "from flows.cli import app; app()", "run", "--until", until,
               *(a for kv in TINY + overrides for a in ("--set", kv))]
    started = time.time()
    with open(project / "night.log", "w") as log:
        process = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.time() - started
    if status != 0:
        sys.exit(f"genie run failed in {project}: see {project / 'night.log'}")
    return {"seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024, "steps": task_seconds(api, started)}


EDIT_BENCH = r"""
import json, sys, time, secrets
from pathlib import Path
import numpy as np
from PIL import Image
from models import edit_folder
from models.editing import Edit, EditRunner, edit_seed
from models.engine import Engine
from tasks.versioning import dvc_md5
folder, existing, generator, data, size = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
name = getattr(edit_folder, "image_file", lambda key: f"{key}.png")
rows, noise = [], np.random.default_rng(0)
folder.mkdir(parents=True, exist_ok=True)
for i in range(existing):  # edits already there: images of the same size as the new ones, each carrying its row
    key = secrets.token_hex(16)
    row = {c: None for c in edit_folder.COLUMNS} | {"key": key, "file": name(key), "label": "x", "method": "genie"}
    image = Image.fromarray(noise.integers(0, 256, (size, size, 3), dtype=np.uint8))
    edit_folder.write_image(folder, image, row)
    rows.append(row)
edit_folder.append(folder, rows)
classes = sorted(p.name for p in data.iterdir())
sources = sorted(data.glob("*/*.png"))
pairs = [(sources[i % len(sources)], classes[(i + 1 + i // len(sources)) % len(classes)]) for i in range(320)]
edits = [Edit(str(s), s.parent.name, t, "genie", 0.8, edit_seed(0, str(s), t)) for s, t in pairs]
runner = EditRunner(Engine(generator, steps=4), folder, lambda label: f"a photo of a {label}.", batch_size=32)
start = time.monotonic()
made = sum(runner.run(edits[i : i + 64], progress=False)["generated"] for i in range(0, len(edits), 64))  # shards
edit_folder.sync(folder)
added = time.monotonic() - start
dvc_md5(folder, folder.parent)  # the night before hashed the folder
start = time.monotonic()
dvc_md5(folder, folder.parent)
print(json.dumps({"made": made, "add_seconds": added, "dvc_md5_seconds": time.monotonic() - start}))
"""


def edit_folder_run(work: Path, code: Path, existing: int, generator: Path, data: Path, size: int) -> dict:
    """320 edits added to a folder already holding `existing` edits: generation, rows and sync; then the
    folder's DVC md5 as a night computes it, the folder having been hashed the night before."""
    root = work / f"edits-{existing}"
    root.mkdir()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "--quiet"], cwd=root, check=True,
                   env=os.environ | QUIET)
    env = os.environ | QUIET | {"PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", EDIT_BENCH, str(root / "genie"), str(existing), str(generator),
                           str(data), str(size)], env=env, cwd=root, capture_output=True, text=True)  # cwd: not
    # this checkout, which `python -c` would put before --code on the import path
    if done.returncode != 0:
        sys.exit(f"edit folder benchmark failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fastest(runs: list[dict]) -> dict:
    """Of repeated nights, each step's and the night's least time (the least disturbed by the machine) and the
    highest peak RSS."""
    steps = {name for run in runs for name in run["steps"]}
    return {"seconds": min(run["seconds"] for run in runs), "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
            "steps": {name: min(run["steps"].get(name, 0.0) for run in runs) for name in steps}, "repeats": len(runs)}


def overrides_for(size: int) -> list[str]:
    return ["dataset.name=drawn", "dataset.path=data/drawn", "dataset.embedded=false", f"dataset.image_size={size}"]


def exponent(a: float, b: float, n_a: float, n_b: float) -> float:
    return math.log(max(b, 1e-3) / max(a, 1e-3)) / math.log(n_b / n_a)


def report(nights: list[dict], folders: list[dict], label: str) -> str:
    return f"### {label}\n\n" + (nights_table(nights) if nights else "") + (folders_table(folders) if folders else "")


def nights_table(nights: list[dict]) -> str:
    steps = sorted({s for n in nights for s in n["steps"]}, key=lambda s: -nights[-1]["steps"].get(s, 0))
    head = f"Each night's least time over {nights[0].get('repeats', 1)} cold run(s).\n\n| step | " + " | ".join(f"{n['classes']} cl. x {n['per_class']} ({n['images']} img)" for n in nights)
    lines = [head + " | exponent, last two |", "|---" * (len(nights) + 2) + "|"]
    for step in steps + ["night (wall)"]:
        times = [n["seconds"] if step == "night (wall)" else n["steps"].get(step, 0.0) for n in nights]
        grow = exponent(times[-2], times[-1], nights[-2]["images"], nights[-1]["images"])
        lines.append(f"| {step} | " + " | ".join(f"{t:.1f} s" for t in times) + f" | {grow:.2f} |")
    rss = [n["peak_rss_mb"] for n in nights]
    lines.append("| peak RSS | " + " | ".join(f"{r:,.0f} MB" for r in rss) + f" | {rss[-1] / rss[0]:.2f}x smallest |")
    return "\n".join(lines) + "\n\n"


def folders_table(folders: list[dict]) -> str:
    lines = ["| edits already in the folder | add 320 edits (generate, rows, sync) | vs empty | DVC md5 of the "
              "folder, a night later |", "|---|---|---|---|"]
    empty = folders[0]["add_seconds"]
    lines += [f"| {f['existing']:,} | {f['add_seconds']:.1f} s | {f['add_seconds'] / empty:.2f}x | "
              f"{f['dvc_md5_seconds']:.1f} s |" for f in folders]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--classes", type=int, nargs="*", default=[20, 100, 400], help="class counts, one night each")
    parser.add_argument("--per-class", type=int, default=25, help="images per class")
    parser.add_argument("--size", type=int, default=32, help="image side, in pixels (also the classifier's)")
    parser.add_argument("--edits", type=int, nargs="*", default=[0, 2_000, 20_000, 200_000],
                        help="edits already in the folder that 320 new edits are added to")
    parser.add_argument("--repeat", type=int, default=2, help="cold nights per size; each step's least time is kept")
    parser.add_argument("--code", type=Path, default=REPO, help="the genie-flow checkout to time (default: this one)")
    parser.add_argument("--label", default=None, help="the table's title (default: the checkout's commit)")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here and the table beside it (.md)")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.code, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    label = args.label or f"genie-flow {commit} ({args.code})"
    nights, folders = [], []
    with tempfile.TemporaryDirectory(prefix="genie-scale-") as tmp, prefect_server(Path(tmp) / "prefect") as api:
        for classes in args.classes:
            runs = []
            for repeat in range(args.repeat):  # each in a fresh project: a cold night every time
                project = Path(tmp) / f"night-{classes}" if repeat == 0 else Path(tmp) / f"night-{classes}-{repeat}"
                images = draw_dataset(project / "data" / "drawn", classes, args.per_class, args.size)
                runs.append(night(project, args.code, api, overrides_for(args.size)))
            row = {"classes": classes, "per_class": args.per_class, "images": images, **fastest(runs)}
            nights.append(row)
            top = sorted(row["steps"].items(), key=lambda kv: -kv[1])[:4]
            print(f"night {classes:5d} classes, {images:6d} images: {row['seconds']:7.1f} s, peak RSS "
                  f"{row['peak_rss_mb']:,.0f} MB; slowest: " + ", ".join(f"{k} {v:.1f} s" for k, v in top), flush=True)
        source = Path(tmp) / f"night-{args.classes[0] if args.classes else 20}"
        if args.edits and not args.classes:  # a generator to make the edits with
            draw_dataset(source / "data" / "drawn", 20, args.per_class, args.size)
            night(source, args.code, api, overrides_for(args.size), until="train-generator")
        generator, data = source / "artifacts" / "drawn" / "generator", source / "data" / "drawn"
        for existing in args.edits:
            folders.append({"existing": existing,
                            **edit_folder_run(Path(tmp), args.code, existing, generator, data, args.size)})
            print(f"edit folder with {existing:7,d} edits: 320 added in {folders[-1]['add_seconds']:.1f} s, DVC md5 "
                  f"{folders[-1]['dvc_md5_seconds']:.1f} s", flush=True)
    table = report(nights, folders, label)
    print("\n" + table)
    results = {"label": label, "commit": commit, "nights": nights, "edit_folders": folders}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(table)
    return results


if __name__ == "__main__":
    main()
