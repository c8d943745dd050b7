"""`genie report`: the benchmarks' results as one self-contained HTML page, logged to MLflow."""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient
from prefect import flow, get_run_logger

from models.benchmarks.browser import render_whole
from models.benchmarks.report import render_report
from models.benchmarks.results import benchmark_dir, load_reported
from models.config import Settings


@flow(name="genie-report")
def genie_report(settings: Settings, out: Path | None = None, screenshot: Path | None = None) -> dict:
    """Render the latest benchmarks' results into one page; log it to their MLflow runs.
    With `screenshot`, open it in headless chromium and fail unless every image decoded."""
    few, long, ada, adapt = load_reported(settings).values()
    out = Path(out or benchmark_dir(settings) / "report.html")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(few, long, ada, adapt))
    runs = [r["facts"]["run_id"] for r in (few, long, ada, adapt) if r and r["facts"].get("run_id")]
    for run_id in runs:
        MlflowClient().log_artifact(run_id, str(out), "report")
    get_run_logger().info("report written to %s (%.1f MB) and logged to runs %s", out, out.stat().st_size / 1e6, runs)
    result = {"report": out.as_posix(), "bytes": out.stat().st_size, "mlflow_runs": runs}
    if screenshot:
        result |= render_whole(out, screenshot)
    return result
