"""When the embedded generator is retrained: the policy's decision and its reason."""
from models.config import RetrainConfig, Settings
from models.lifecycle import TrainedOn, recipe, retrain_reason

DAY = 86400.0
POLICY = RetrainConfig(max_growth=0.2, max_age_days=30)
TRAINED = TrainedOn(tuple("0123456789"), 1000, "r1", 0.0)


def now(**changes) -> TrainedOn:
    return TrainedOn(**({"classes": TRAINED.classes, "train_images": 1010, "recipe": "r1", "time": DAY} | changes))


def test_a_little_new_data_reuses_the_generator():
    assert retrain_reason(TRAINED, now(), POLICY) == (False, "train split +1.0%, below 20%")


def test_each_reason_to_retrain():
    assert retrain_reason(None, now(), POLICY) == (True, "no generator registered yet")
    assert retrain_reason(TRAINED, now(), POLICY, force=True) == (True, "forced")
    assert retrain_reason(TRAINED, now(recipe="r2"), POLICY)[1].startswith("recipe changed")
    assert retrain_reason(TRAINED, now(classes=(*TRAINED.classes[1:], "10")), POLICY) == (
        True, "class set changed (+10, -0)")
    assert retrain_reason(TRAINED, now(train_images=1250), POLICY) == (True, "train split +25.0%, beyond 20%")
    assert retrain_reason(TRAINED, now(train_images=700), POLICY) == (True, "train split -30.0%, beyond 20%")
    assert retrain_reason(TRAINED, now(time=31 * DAY), POLICY) == (True, "31 days old, beyond 30")
    assert not retrain_reason(TRAINED, now(time=400 * DAY), RetrainConfig(max_age_days=None))[0]


def test_with_adapters_an_added_class_is_adapted_but_age_growth_and_removals_still_retrain():
    added = now(classes=(*TRAINED.classes, "10"), train_images=1100)
    assert retrain_reason(TRAINED, added, POLICY, adapt=True) == (
        False, "new classes (+10) adapted, not retrained; train split +10.0%, below 20%")
    assert retrain_reason(TRAINED, now(classes=(*TRAINED.classes, "10"), train_images=1300), POLICY, adapt=True) == (
        True, "train split +30.0%, beyond 20%")
    assert retrain_reason(TRAINED, now(classes=(*TRAINED.classes[1:], "10")), POLICY, adapt=True) == (
        True, "class set changed (+10, -0)")
    assert retrain_reason(TRAINED, now(classes=(*TRAINED.classes, "10"), time=31 * DAY), POLICY, adapt=True)[0]
    assert retrain_reason(TRAINED, added, POLICY, force=True, adapt=True) == (True, "forced")


def test_the_recipe_names_what_shapes_a_generator_besides_its_data():
    base = Settings()
    assert recipe(base) == recipe(Settings(classifier={"epochs": 3}, generator={"steps": 10, "retrain": {"max_growth": 0.5}}))
    for changed in ({"generator": {"prompt": "a {name}"}}, {"generator": {"embedded": {"unet_steps": 10}}},
                    {"generator": {"class_names": {"1": "uno"}}}, {"dataset": {"image_size": 64}}):
        assert recipe(Settings(**changed)) != recipe(base), changed
