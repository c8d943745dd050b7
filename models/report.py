"""Building blocks of the self-contained HTML report: embedded images, plots, tables, a page."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.meta { color: #666; } .note { background: #fff8e0; border-left: 4px solid #e0b000; padding: 0.5em 1em; }
.grid td { text-align: center; font-size: 0.8em; } .grid img { width: 64px; height: 64px; image-rendering: pixelated; }
.chosen img { outline: 3px solid #d33; } .gallery { display: flex; flex-wrap: wrap; gap: 10px; }
.gallery figure { margin: 0; text-align: center; font-size: 0.75em; }
.gallery img { width: 56px; height: 56px; image-rendering: pixelated; }
img.plot { max-width: 100%; }
"""

# After loading, the page records how many of its images decoded: a headless browser reads it back.
CHECK = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.dataset.imagesTotal = images.length;
  document.body.dataset.imagesLoaded = images.filter(i => i.complete && i.naturalWidth > 0).length;
});
</script>"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image(path: str | Path, alt: str = "", css: str = "") -> str:
    """An image file embedded in the page (no link to the file system)."""
    return f'<img src="{data_uri(Path(path).read_bytes())}" alt="{html.escape(alt)}" class="{css}">'


def figure(fig, alt: str) -> str:
    """A matplotlib figure embedded as PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<img class="plot" src="{data_uri(buffer.getvalue())}" alt="{html.escape(alt)}">'


def table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, escape=True, na_rep="-")


def page(title: str, subtitle: str, sections: list[tuple[str, str]]) -> str:
    body = "\n".join(f"<h2>{html.escape(heading)}</h2>\n{content}" for heading, content in sections)
    return (f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p class=\"meta\">{subtitle}</p>\n{body}\n{CHECK}\n</body></html>\n")


def mean_pm(mean: float, spread: float, scale: float = 100, digits: int = 1) -> str:
    """'75.5 ± 0.8' (percent by default)."""
    if pd.isna(mean):
        return "-"
    return f"{mean * scale:.{digits}f} ± {spread * scale:.{digits}f}"
