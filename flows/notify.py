"""Alerts: a night's outcome sent to the team's channels through Apprise (Slack, Teams, e-mail, a webhook: any
Apprise URL). The URLs come from `notify.urls` and from GENIE_NOTIFY_URLS (space-separated: where URLs that carry
a token belong, as they are never logged). A failure to notify is logged and never fails the night."""
from __future__ import annotations

import logging
import os

from models.config import Settings

TITLES = {"failed": "genie-flow: a night failed", "promoted": "genie-flow: a challenger promoted",
          "refused": "genie-flow: a challenger refused", "waiting": "genie-flow: a challenger waits for a person",
          "rollback": "genie-flow: champion rolled back", "crashed": "genie-flow: a night crashed",
          "late": "genie-flow: a night did not start", "gc-failed": "genie-flow: genie gc after a night failed"}


def urls(settings: Settings) -> list[str]:
    return [*settings.notify.urls, *os.environ.get("GENIE_NOTIFY_URLS", "").split()]


def notify(settings: Settings, event: str, body: str, logger: logging.Logger | logging.LoggerAdapter | None = None
           ) -> bool:
    """Send `body` for `event` to every configured URL; True when all took it. Never raises."""
    logger = logger or logging.getLogger("genie.notify")
    targets = urls(settings)
    if not targets or event not in settings.notify.events:
        return False
    try:
        import apprise

        sender = apprise.Apprise()
        for url in targets:
            if not sender.add(url):  # its scheme only: the rest may hold a token
                logger.warning("notify: a %s:// URL is not one Apprise knows; skipped", url.split("://")[0])
        sent = bool(len(sender)) and sender.notify(title=f"{TITLES[event]} ({settings.dataset.name})", body=body,
                                                   notify_type="failure" if event in ("failed", "gc-failed") else "info")
    except Exception as err:  # an alert must never be why a night fails
        logger.warning("notify: could not send the %s alert: %s", event, err)
        return False
    if not sent:
        logger.warning("notify: the %s alert did not reach every channel (the night goes on)", event)
    return bool(sent)


def run_link(run_id: str | None) -> str:
    """Where a person opens the night's MLflow run, when the store is a server."""
    store = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not run_id or not store.startswith("http"):
        return f"MLflow run {run_id}" if run_id else "no MLflow run"
    from mlflow.tracking import MlflowClient

    experiment = MlflowClient().get_run(run_id).info.experiment_id
    return f"{store.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"


def outcome(summary: dict) -> tuple[str, str]:
    """The event and message of a night that reached a decision."""
    event = "promoted" if summary.get("promoted") else "waiting" if summary.get("waiting") else "refused"
    figures = ", ".join(f"{key} {summary[key]:.4f}" for key in ("challenger_test_accuracy", "champion_test_accuracy")
                        if isinstance(summary.get(key), float))
    return event, "\n".join(line for line in (summary["decision"], figures, run_link(summary.get("run_id"))) if line)
