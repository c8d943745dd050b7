"""Alerts through Apprise to a real local HTTP endpoint (Apprise's json:// URLs): what each message says, and that
a channel that is down never fails a night."""
from pathlib import Path

import pytest

from flows.notify import notify
from flows.pipeline import genie_run
from models.config import Settings
from tests.ports import free_port
from tests.webhook import endpoint


def test_an_alert_reaches_the_channel_and_a_channel_down_fails_nothing():
    with endpoint() as (url, received):
        settings = Settings.model_validate({"notify": {"urls": [url], "events": ["promoted", "failed"]}})
        assert notify(settings, "promoted", "challenger v3 promoted: gain +0.0400")
        assert not notify(settings, "refused", "not sent: not in notify.events")
    assert [(m["title"], m["message"], m["type"]) for m in received] == [
        ("genie-flow: a challenger promoted (digits)", "challenger v3 promoted: gain +0.0400", "info")]
    down = Settings.model_validate({"notify": {"urls": [f"json://127.0.0.1:{free_port()}/hook"]}})
    assert notify(down, "failed", "nobody listens") is False  # logged, not raised


TINY = {"classifier": {"epochs": 1}, "finetune": {"epochs": 1}, "select": {"per_target": 2},
        "generator": {"steps": 4, "embedded": {"vae_steps": 4, "unet_steps": 4}, "adapter": {"steps": 4}}}


@pytest.mark.nights
def test_a_refusing_a_promoting_and_a_failing_night_each_send_what_they_decided(project: Path):
    strict = {"min_improvement": 0.99}  # no challenger gains 99 points: refused, by the overall gate
    lenient = {"min_improvement": 0.0, "few_shot_tolerance": 1.0, "max_class_drop": None}
    with endpoint() as (url, received):
        refusing = genie_run(Settings.model_validate(TINY | {"notify": {"urls": [url]}, "promote": strict}))
        # the same data: the same challenger, judged again by gates it passes (it beats the 1-epoch baseline); a
        # second channel is down, and the night goes on
        down = f"json://127.0.0.1:{free_port()}/hook"
        promoting = genie_run(Settings.model_validate(TINY | {"notify": {"urls": [url, down]}, "promote": lenient}))
        empty = project / "empty"
        empty.mkdir()
        with pytest.raises(Exception) as failure:
            genie_run(Settings.model_validate({"notify": {"urls": [url]}, "dataset": {
                "name": "nothing", "path": str(empty), "embedded": False}}))
    refused, promoted, failed = received
    assert not refusing["promoted"] and promoting["promoted"]
    for message, summary, event in ((refused, refusing, "refused"), (promoted, promoting, "promoted")):
        assert message["title"] == f"genie-flow: a challenger {event} (digits)"
        assert message["message"].splitlines()[0] == summary["decision"]
        assert f"challenger_test_accuracy {summary['challenger_test_accuracy']:.4f}" in message["message"]
        assert f"champion_test_accuracy {summary['champion_test_accuracy']:.4f}" in message["message"]
    assert "the gain gate refused it" in refused["message"] and "not above 0.99" in refused["message"]
    assert failed["title"] == "genie-flow: a night failed (nothing)" and failed["type"] == "failure"
    assert failed["message"].splitlines()[0] == str(failure.value).strip().splitlines()[0]
