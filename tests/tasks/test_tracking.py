"""MLflow params at 1,000 classes: logged in batches, a long value whole in an artifact, never cut."""
import mlflow
from mlflow.tracking import MlflowClient

from models.config import Settings
from tasks.data import DataVersion
from tasks.tracking import CONFIG, LONG, read_spilled, spill_long, start_pipeline_run

NAMES = [f"class number {i:04d}" for i in range(1000)]


def test_a_run_with_a_thousand_class_names_logs_them_whole(project):
    settings = Settings.model_validate({"generator": {"class_names": {n: n.upper() for n in NAMES}},
                                        "benchmark": {"few_shot": {"base_classes": NAMES}}})
    run_id = start_pipeline_run("digits", DataVersion("data/digits", "0" * 32, "data.dvc"), "thousand", settings.flat(),
                                settings.model_dump(mode="json"), "test machine")
    params = MlflowClient().get_run(run_id).data.params
    assert set(params) == set(settings.flat())  # over 1,000 params, in batches of at most 100
    assert params["generator.class_names.class number 0999"] == "CLASS NUMBER 0999"
    key = "benchmark.few_shot.base_classes"
    assert params[key] == f"<1000 items: see artifact params/{key}.json>"
    assert max(len(value) for value in params.values()) <= LONG
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/params/{key}.json") == NAMES
    assert Settings.model_validate(mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONFIG}")) == settings  # whole, typed


def test_class_names_as_a_tag_read_back_at_any_count(project):
    run_id = MlflowClient().create_run(mlflow.set_experiment("tags").experiment_id).info.run_id
    for classes in (["<b>&", "a&b", "plain"], NAMES):
        text = spill_long(run_id, {"classes": classes}, ",".join)["classes"]
        assert len(text) <= LONG
        assert read_spilled(run_id, "classes", text, lambda t: t.split(",")) == classes
    assert text == "<1000 items: see artifact params/classes.json>"
