"""What a night costs on the embedded digits, as a user runs it: `genie run` in a fresh project folder,
cold, then warm (nothing new), then with 1% new images, then with one new class. Prints the wall time of
each night, its generator decision and how many steps it recomputed. A benchmark, not a test: run it with
nothing else on the machine (`make bench-nightly`, about 20 minutes on 2 CPU cores)."""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageChops

REPO = Path(__file__).resolve().parents[1]
GENIE = Path(sys.executable).parent / "genie"


def night(folder: Path, name: str, overrides: list[str]) -> dict:
    start = time.monotonic()
    done = subprocess.run([str(GENIE), "run", *(a for kv in overrides for a in ("--set", kv))], cwd=folder,
                          capture_output=True, text=True)
    seconds = time.monotonic() - start
    if done.returncode != 0:
        sys.exit(f"{name}: genie run failed\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{"):])
    ran = [step for step, how in summary["step_log"].items() if how == "ran"]
    row = {"night": name, "seconds": round(seconds, 1), "generator": summary["generator"], "recomputed": len(ran),
           "generated": summary.get("generated", {}).get("generated"), "decision": summary.get("decision", "")}
    print(f"{name:14} {seconds:7.1f} s   {summary['generator']:55.55}   {len(ran):3d} steps ran   "
          f"{row['generated']} images made", flush=True)
    return row


def add_images(digits: Path, count: int) -> None:
    """`count` new images: existing digits shifted by one pixel, spread over the classes."""
    sources = sorted(digits.glob("*/*.png"))
    for i, source in enumerate(sources[:: len(sources) // count][:count]):
        ImageChops.offset(Image.open(source), 1, 0).save(source.with_name(f"new-{i}.png"))


def add_class(digits: Path, name: str = "10", source: str = "1") -> None:
    """A new class: the images of `source` turned on their side."""
    (digits / name).mkdir()
    for path in sorted((digits / source).glob("*.png")):
        Image.open(path).rotate(90).save(digits / name / path.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a params.yaml override for every night, e.g. generator.embedded.unet_steps=200")
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genie-nightly-") as tmp:
        folder = Path(tmp)
        shutil.copy(REPO / "params.yaml", folder / "params.yaml")
        rows = [night(folder, "cold", args.overrides), night(folder, "warm", args.overrides)]
        digits = folder / "data" / "digits"
        add_images(digits, round(0.01 * len(list(digits.glob("*/*.png")))))
        rows.append(night(folder, "+1% images", args.overrides))
        add_class(digits)
        rows.append(night(folder, "+1 class", args.overrides))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
