"""What only the Prefect server sees, sent to the team's channels by Prefect automations (`genie deploy` makes
them): a night that crashed (its process killed, its machine lost) and a scheduled night that has not started
long after its time (no worker, the worker's machine off). Each channel is an Apprise block on the server, so the
server itself sends the alert; the night's own alerts (flows/notify.py) cover the rest. What no automation can
see: a server that is itself down sends nothing (docs/operations.md)."""
from __future__ import annotations

from datetime import timedelta

from flows.notify import TITLES, urls
from models.config import Settings

HEARTBEAT = 60  # seconds between a deployed night's heartbeats (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set by genie worker)
# the messages, as Prefect's notification templates (the flow run's fields are filled in by the server)
CRASHED = ("The night {{ flow_run.name }} of {{ deployment.name }} crashed: {{ flow_run.state.message }}\n"
           "Its MLflow run stays RUNNING; the next night takes the dataset once the lock's holder is gone.\n"
           "flow run {{ flow_run.id }}")
LATE = ("The night {{ flow_run.name }} of {{ deployment.name }} was due at {{ flow_run.expected_start_time }} "
        "and has not started after {minutes} minutes: is a worker running (`genie worker --pool {pool}`)?\n"
        "flow run {{ flow_run.id }}")


def channel(url: str, name: str):
    """A notify URL as the Prefect block its server sends through, or None where Prefect has none: json:// and
    jsons:// (Apprise's JSON webhook: title, message, type), Slack's and Teams' incoming-webhook URLs."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, MicrosoftTeamsWebhook, SlackWebhook

    scheme, _, rest = url.partition("://")
    if scheme in ("json", "jsons"):
        return CustomWebhookNotificationBlock(
            name=name, url=f"{'https' if scheme == 'jsons' else 'http'}://{rest}", allow_private_urls=True,
            json_data={"version": "1.0", "title": "{{subject}}", "message": "{{body}}", "type": "failure"})
    if scheme == "slack" and rest.count("/") == 2:  # slack://A/B/C, as Apprise spells an incoming webhook
        return SlackWebhook(url=f"https://hooks.slack.com/services/{rest}")
    if url.startswith("https://hooks.slack.com/"):
        return SlackWebhook(url=url)
    if scheme == "https" and ".webhook.office.com/" in url:
        return MicrosoftTeamsWebhook(url=url)
    return None


def ensure_automations(settings: Settings, deployment_id: str, deployment: str, pool: str) -> list[str]:
    """The crashed, late and unresponsive automations of one deployment, made again from params.yaml (each run of
    `genie deploy` replaces them). Returns their names, and the URLs the server cannot send to."""
    from prefect.automations import Automation, ChangeFlowRunState, EventTrigger, Posture, SendNotification
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType

    dataset, events, minutes = settings.dataset.name, settings.notify.events, settings.notify.late_minutes
    channels, unsent = [], []
    for i, url in enumerate(urls(settings)):  # private addresses allowed: a team's own webhook is on its network
        block = channel(url, f"genie-{dataset}-{i}")
        if block is None:
            unsent.append(url.split("://")[0] + "://...")  # the rest may hold a token
        else:
            channels.append(block.save(f"genie-{dataset}-{i}", overwrite=True))

    def sent(event: str, body: str) -> list:
        return [SendNotification(block_document_id=block_id, subject=f"{TITLES[event]} ({dataset})", body=body)
                for block_id in channels]

    related = {"prefect.resource.id": f"prefect.deployment.{deployment_id}"}
    beat = timedelta(seconds=HEARTBEAT * 3)  # a night silent this long lost its machine or its worker: Crashed
    automations = {  # name -> (wanted, trigger, actions)
        "crashed": (bool(channels) and "crashed" in events, EventTrigger(
            expect={"prefect.flow-run.Crashed"}, match_related=related, posture=Posture.Reactive, threshold=1,
            within=timedelta(0)), sent("crashed", CRASHED)),
        "late": (bool(channels) and "late" in events, EventTrigger(
            after={"prefect.flow-run.Late"}, expect={"prefect.flow-run.Pending", "prefect.flow-run.Running",
                                                     "prefect.flow-run.Cancelled", "prefect.flow-run.Completed"},
            for_each={"prefect.resource.id"}, match_related=related, posture=Posture.Proactive, threshold=1,
            within=timedelta(minutes=minutes)),
            sent("late", LATE.replace("{minutes}", f"{minutes:g}").replace("{pool}", pool))),
        # marked Crashed, so that the crashed automation tells the team
        "unresponsive": ("crashed" in events, EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={
                "prefect.flow-run.heartbeat", "prefect.flow-run.Completed", "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled", "prefect.flow-run.Crashed"}, for_each={"prefect.resource.id"},
            match_related=related, posture=Posture.Proactive, threshold=1, within=beat),
            [ChangeFlowRunState(state=StateType.CRASHED,
                                message=f"no heartbeat for {beat.seconds} s: its machine or worker is gone")]),
    }
    made = []
    with get_client(sync_client=True) as client:
        for event, (wanted, trigger, actions) in automations.items():
            name = f"{deployment}: {event} ({dataset})"
            for old in client.read_automations_by_name(name):
                client.delete_automation(old.id)
            if wanted:
                Automation(name=name, trigger=trigger, actions=actions).create()
                made.append(name)
    return made + [f"not sent by the server to {scheme} (Prefect has no block for it)" for scheme in unsent]
