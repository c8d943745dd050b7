"""The champion alias on a real MLflow store: every move logged first, compare-and-set promotion, rollback,
promotion by hand; the alias always ends where the last logged decision put it."""
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from prefect.logging import disable_run_logger

from models.config import PromoteConfig
from models.digests import file_digest
from tasks import champion as champ
from tasks.champion import agree, decision_log, promote_by_hand, promote_if_better, rollback, set_champion
from tasks.registry import CHAMPION, PREVIOUS, alias_version, register_version
from tasks.tracking import open_run

NAME = "digits-classifier"
RULES = NAME, "digits", PromoteConfig()  # promote_if_better's model, dataset and gates: the defaults


def versions(count: int) -> list[str]:
    run_id = open_run("digits", "baseline", "d" * 32)
    return [register_version(NAME, "file:///nowhere", run_id, {"checkpoint_sha256": str(i)}) for i in range(count)]


def test_the_champion_moves_keeping_its_predecessor_and_rolls_back(project):
    one, two = versions(2)
    assert set_champion(NAME, one, "first", "first model registered") is None
    assert set_champion(NAME, two, "promoted", "better") == one
    assert (alias_version(NAME), alias_version(NAME, PREVIOUS)) == (two, one)
    assert rollback(NAME, "worse on the new data") == (two, one)
    assert (alias_version(NAME), alias_version(NAME, PREVIOUS)) == (one, None)
    tags = MlflowClient().get_model_version(NAME, two).tags
    assert tags["rolled_back"] == "true" and tags["rolled_back_reason"] == "worse on the new data"
    log = decision_log(NAME)
    assert [(d["action"], d["version"], d["replaced"]) for d in log] == [
        ("rolled back", one, two), ("promoted", two, one), ("first", one, "")]
    assert log[0]["reason"] == "worse on the new data" and "@" in log[0]["who"] and log[0]["when"]
    with pytest.raises(ValueError, match="no previous champion to roll back to"):
        rollback(NAME)


def test_promotion_by_hand_clears_the_rollback_mark(project):
    one, two = versions(2)
    set_champion(NAME, one, "first", "")
    set_champion(NAME, two, "promoted", "")
    rollback(NAME)
    assert promote_by_hand(NAME, two) == one
    tags = MlflowClient().get_model_version(NAME, two).tags
    assert "rolled_back" not in tags and tags["promotion"] == "promoted by hand"
    assert MlflowClient().get_model_version_by_alias(NAME, CHAMPION).version == int(two)
    assert decision_log(NAME, last=1)[0]["action"] == "promoted by hand"
    with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST|does not exist"):
        set_champion(NAME, "99", "promoted", "")


def test_a_challenger_compared_with_a_champion_that_has_since_moved_is_not_promoted(project):
    one, two, three = versions(3)
    set_champion(NAME, one, "first", "")
    set_champion(NAME, two, "promoted by hand", "")  # another writer, after the night compared three with one
    with disable_run_logger():
        decision = promote_if_better.fn(*RULES, three, {"accuracy": 0.9}, one, {"accuracy": 0.5}, "night-run")
    assert not decision["promoted"] and decision["champion"] == one
    assert decision["reason"].startswith(f"the champion moved to version {two} after version {three} was compared")
    assert alias_version(NAME) == two and MlflowClient().get_model_version(NAME, three).tags["promotion"] == "rejected"
    with disable_run_logger():  # compared with the champion as it is now: promoted, and logged with its run
        decision = promote_if_better.fn(*RULES, three, {"accuracy": 0.9}, two, {"accuracy": 0.5}, "night-run")
    assert decision["promoted"] and alias_version(NAME) == three
    assert {k: decision_log(NAME, last=1)[0][k] for k in ("action", "version", "replaced", "run_id")} == {
        "action": "promoted", "version": three, "replaced": two, "run_id": "night-run"}


def test_a_move_killed_after_its_log_is_finished_by_the_next_decision(project, monkeypatch):
    one, two = versions(2)
    set_champion(NAME, one, "first", "")
    with monkeypatch.context() as patch:
        patch.setattr(champ, "_move", lambda *args: None)  # killed between the log and the aliases
        set_champion(NAME, two, "promoted", "")
    assert alias_version(NAME) == one
    assert agree(NAME) == two and (alias_version(NAME), alias_version(NAME, PREVIOUS)) == (two, one)


def test_a_champion_whose_checkpoint_changed_after_registration_is_not_used(project, tmp_path):
    run_id = open_run("digits", "baseline", "d" * 32)
    weights = tmp_path / "checkpoint"
    weights.mkdir()
    (weights / "model.pt").write_bytes(b"the registered weights")
    MlflowClient().log_artifacts(run_id, str(weights), "checkpoint")
    version = register_version(NAME, f"runs:/{run_id}/checkpoint", run_id,
                               {"checkpoint_sha256": file_digest(weights / "model.pt"), "classes": "0,1"})
    set_champion(NAME, version, "first", "first model registered")
    with disable_run_logger():
        fetched = champ.fetch_champion.fn(NAME, tmp_path / "one")
    assert fetched.info["version"] == version and fetched["checkpoint"].read_bytes() == b"the registered weights"

    stored = Path(MlflowClient().get_run(run_id).info.artifact_uri.removeprefix("file://")) / "checkpoint" / "model.pt"
    stored.write_bytes(b"weights put there later")  # someone with write access to the artifact store
    with disable_run_logger(), pytest.raises(ValueError, match=f"{NAME} version {version}: the downloaded "
                                             "checkpoint's sha256 .* is not its registered checkpoint_sha256"):
        champ.fetch_champion.fn(NAME, tmp_path / "two")
