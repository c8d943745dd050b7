"""Open a page in headless chromium: a screenshot, and how many of its images decoded."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    raise RuntimeError("no headless browser found: install Debian's chromium (make browser)")


def render(page: Path, screenshot: Path, width: int = 1200, height: int = 3000) -> dict:
    """The page's own script counts its decoded images on load; `--dump-dom` reads the count back."""
    common = [browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              f"--window-size={width},{height}", "--virtual-time-budget=5000"]
    with tempfile.TemporaryDirectory() as profile:
        common.append(f"--user-data-dir={profile}")
        url = Path(page).resolve().as_uri()
        subprocess.run([*common, f"--screenshot={Path(screenshot).resolve()}", url], check=True,
                       capture_output=True, timeout=120)
        dom = subprocess.run([*common, "--dump-dom", url], check=True, capture_output=True, text=True,
                             timeout=120).stdout

    def attribute(name: str) -> int:
        found = re.search(rf'data-{name}="(\d+)"', dom)
        return int(found.group(1)) if found else -1

    return {"screenshot": Path(screenshot).as_posix(), "images_total": attribute("images-total"),
            "images_loaded": attribute("images-loaded")}


def render_whole(page: Path, screenshot: Path, **size) -> dict:
    """`render`, failing unless every image of the page decoded."""
    shown = render(page, screenshot, **size)
    if shown["images_loaded"] != shown["images_total"] or shown["images_total"] <= 0:
        raise RuntimeError(f"{page}: {shown['images_loaded']} of {shown['images_total']} images rendered")
    return shown
