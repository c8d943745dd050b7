"""The champion alias on a real MLflow store: crowned, replaced with its predecessor kept, rolled back, restored."""
import pytest
from mlflow.tracking import MlflowClient

from tasks.champion import promote_by_hand, rollback, set_champion
from tasks.registry import CHAMPION, PREVIOUS, alias_version, register_version
from tasks.tracking import open_run

NAME = "digits-classifier"


def versions(count: int) -> list[str]:
    run_id = open_run("digits", "baseline", "d" * 32)
    return [register_version(NAME, "file:///nowhere", run_id, {"checkpoint_sha256": str(i)}) for i in range(count)]


def test_the_champion_moves_keeping_its_predecessor_and_rolls_back(project):
    one, two = versions(2)
    assert set_champion(NAME, one) is None
    assert set_champion(NAME, two) == one
    assert (alias_version(NAME), alias_version(NAME, PREVIOUS)) == (two, one)
    assert set_champion(NAME, two) == two and alias_version(NAME, PREVIOUS) == one  # again: nothing moves
    assert rollback(NAME, "worse on the new data") == (two, one)
    assert (alias_version(NAME), alias_version(NAME, PREVIOUS)) == (one, None)
    tags = MlflowClient().get_model_version(NAME, two).tags
    assert tags["rolled_back"] == "true" and tags["rolled_back_reason"] == "worse on the new data"
    with pytest.raises(ValueError, match="no previous champion to roll back to"):
        rollback(NAME)


def test_promotion_by_hand_clears_the_rollback_mark(project):
    one, two = versions(2)
    set_champion(NAME, one)
    set_champion(NAME, two)
    rollback(NAME)
    assert promote_by_hand(NAME, two) == one
    tags = MlflowClient().get_model_version(NAME, two).tags
    assert "rolled_back" not in tags and tags["promotion"] == "promoted by hand"
    assert MlflowClient().get_model_version_by_alias(NAME, CHAMPION).version == int(two)
    with pytest.raises(Exception, match="not found|RESOURCE_DOES_NOT_EXIST|does not exist"):
        set_champion(NAME, "99")
