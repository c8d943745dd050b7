import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models.classifier import (
    Images,
    build_model,
    finetune_recipe,
    hard_negative_labels,
    load_checkpoint,
    predict,
    resolve_device,
    save_checkpoint,
    train,
    transforms,
)
from models.config import ClassifierConfig, DatasetConfig, FinetuneConfig
from models.dataset import scan_imagefolder, split_images, subset
from models.evaluation import class_groups, evaluate_predictions, per_class_table, plot_confusion


def test_short_training_learns_digits_and_checkpoint_round_trips(digits, tmp_path):
    scan = scan_imagefolder(digits)
    manifest = split_images(scan.images, DatasetConfig(path=digits))
    cfg = ClassifierConfig(epochs=3, augment={"mixup": 0.2, "cutmix": 0.2})
    trained = train(
        subset(manifest, digits, "train", scan.classes), subset(manifest, digits, "val", scan.classes), 10, 32, cfg, False
    )
    assert len(trained.history) == 3
    assert trained.best_val_accuracy > 0.8  # chance is 0.1
    save_checkpoint(tmp_path / "model.pt", trained.model, cfg.model, scan.classes, 32)
    model, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["classes"] == scan.classes
    loader = DataLoader(Images(*subset(manifest, digits, "test", scan.classes), transforms(model, 32)), batch_size=128)
    again, _ = predict(model, loader)
    first, true = predict(trained.model, loader)
    assert np.array_equal(first, again)
    assert (first == true).mean() > 0.8


def test_training_is_deterministic_from_the_seed(digits):
    scan = scan_imagefolder(digits)
    manifest = split_images(scan.images, DatasetConfig(path=digits)).groupby(["label", "split"]).head(6)
    cfg = ClassifierConfig(model="test_resnet", epochs=1)
    args = (subset(manifest, digits, "train", scan.classes), subset(manifest, digits, "val", scan.classes), 10, 32, cfg, False)
    a, b = train(*args), train(*args)
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(pa, pb)


def test_unknown_pretrained_weights_fall_back_to_scratch():
    model = build_model("test_resnet", 3, pretrained=True)  # offline: no weights reachable
    assert model.num_classes == 3


def test_group_accuracy_and_confusion(tmp_path):
    classes = ["a", "b", "c"]
    groups = class_groups({"a": 150, "b": 50, "c": 5}, many_shot=100, few_shot=20)
    assert groups == {"a": "many", "b": "medium", "c": "few"}
    true = np.array([0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 1, 0, 1, 1])
    metrics, matrix = evaluate_predictions(true, predicted, classes, groups)
    assert metrics["accuracy"] == 0.5
    assert (metrics["accuracy.many"], metrics["accuracy.medium"], metrics["accuracy.few"]) == (1.0, 0.5, 0.0)
    assert per_class_table(matrix, groups).set_index("class").at["b", "accuracy"] == 0.5
    assert matrix.loc["c", "b"] == 2 and matrix.loc["b", "a"] == 1 and matrix.values.sum() == 6
    plot_confusion(matrix, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"


def test_soft_labels_mix_source_and_target(digits):
    import pytest
    from torchvision.transforms import ToTensor

    paths = sorted((digits / "3").glob("*.png"))[:2]
    images = Images(paths, [1, (2, 0, 0.3)], ToTensor(), num_classes=4, smoothing=0.2)
    assert torch.allclose(images[0][1], torch.tensor([0.05, 0.85, 0.05, 0.05]))
    assert torch.allclose(images[1][1], torch.tensor([0.05 + 0.8 * 0.3, 0.05, 0.05 + 0.8 * 0.7, 0.05]))
    scan = scan_imagefolder(digits)
    manifest = split_images(scan.images, DatasetConfig(path=digits)).groupby(["label", "split"]).head(4)
    paths, labels = subset(manifest, digits, "train", scan.classes)
    soft = [(label, (label + 1) % 10, 0.3) for label in labels]
    cfg = ClassifierConfig(model="test_resnet", epochs=1)
    assert len(train((paths, soft), subset(manifest, digits, "val", scan.classes), 10, 32, cfg, False).history) == 1
    with pytest.raises(ValueError, match="soft labels cannot be combined with MixUp"):
        train((paths, soft), (paths, labels), 10, 32, ClassifierConfig(model="test_resnet", epochs=1,
                                                                        augment={"mixup": 0.2}), False)


def test_a_hard_negative_is_labelled_its_target_or_softly_towards_its_source():
    generated = [("a.png", "8", "3"), ("b.png", "1", "7"), ("c.png", "2", "unknown")]  # (image, label, source class)
    classes = ["1", "2", "3", "7", "8"]
    assert hard_negative_labels(generated, classes, 0.0) == [4, 0, 1]
    assert hard_negative_labels(generated, classes, 0.25) == [(4, 2, 0.25), (0, 3, 0.25), 1]  # no source class: hard
    tuned = finetune_recipe(ClassifierConfig(epochs=30, lr=0.1, warmup_epochs=2, model="resnet18"),
                            FinetuneConfig(epochs=3, lr=0.01, patience=1))
    assert (tuned.epochs, tuned.lr, tuned.patience, tuned.warmup_epochs, tuned.pretrained) == (3, 0.01, 1, 0, False)
    assert tuned.model == "resnet18"


@pytest.mark.parametrize("images", [2, 3, 4, 5, 9, 13])  # below, at and above the batch, and batch * k + 1
def test_training_works_for_any_number_of_images(digits, images):
    paths = sorted(digits.glob("*/*.png"))[::97][:images]
    labels = [int(p.parent.name) % 3 for p in paths]
    cfg = ClassifierConfig(model="test_resnet", epochs=2, batch_size=4, warmup_epochs=1)
    trained = train((paths, labels), (paths[:2], labels[:2]), 3, 32, cfg, False)
    assert len(trained.history) == 2 and all(np.isfinite(h["train_loss"]) for h in trained.history)


def test_one_image_is_a_clear_error(digits):
    path = next(digits.glob("0/*.png"))
    with pytest.raises(ValueError, match="1 training image"):
        train(([path], [0]), ([path], [0]), 2, 32, ClassifierConfig(model="test_resnet", epochs=1), False)


def _tiny_sets(digits, per_split: int = 6):
    scan = scan_imagefolder(digits)
    manifest = split_images(scan.images, DatasetConfig(path=digits)).groupby(["label", "split"]).head(per_split)
    return subset(manifest, digits, "train", scan.classes), subset(manifest, digits, "val", scan.classes)


def test_auto_device_is_cuda_only_where_there_is_one():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="device"):
        ClassifierConfig(device="gpu")


def test_training_on_the_cpu_by_name_gives_the_default_weights(digits):
    """Here `auto` is the CPU: naming it, or its worker count, changes no byte of the weights."""
    if torch.cuda.is_available():
        pytest.skip("auto is CUDA on this machine")
    train_set, val_set = _tiny_sets(digits)
    default, named = (train(train_set, val_set, 10, 32, ClassifierConfig(model="test_resnet", epochs=1, **extra), False)
                      for extra in ({}, {"device": "cpu", "workers": 0}))
    for pa, pb in zip(default.model.state_dict().values(), named.model.state_dict().values()):
        assert torch.equal(pa, pb)


def test_worker_processes_load_the_batches_on_the_cpu(digits):
    """Workers draw their crops from their own seeded generators: other weights than in-process, still a
    training."""
    train_set, val_set = _tiny_sets(digits, 4)
    cfg = ClassifierConfig(model="test_resnet", epochs=2, batch_size=8, device="cpu", workers=2)
    trained = train(train_set, val_set, 10, 32, cfg, False)
    assert len(trained.history) == 2 and all(np.isfinite(h["train_loss"]) for h in trained.history)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_gives_cpu_weights_that_load_anywhere(digits, tmp_path):
    train_set, val_set = _tiny_sets(digits)
    cfg = ClassifierConfig(model="test_resnet", epochs=2, device="cuda")
    trained = train(train_set, val_set, 10, 32, cfg, False)
    assert all(t.device.type == "cpu" and t.is_contiguous() for t in trained.model.state_dict().values())
    assert all(np.isfinite(h["train_loss"]) for h in trained.history)
    save_checkpoint(tmp_path / "model.pt", trained.model, cfg.model, [str(i) for i in range(10)], 32)
    raw = torch.load(tmp_path / "model.pt", weights_only=True)  # no map_location: the file names no GPU
    assert all(t.device.type == "cpu" for t in raw["state_dict"].values())
    model, _ = load_checkpoint(tmp_path / "model.pt")
    loader = DataLoader(Images(*val_set, transforms(model, 32)), batch_size=32)
    on_gpu, true = predict(model, loader, "cuda")
    assert len(on_gpu) == len(true) == len(val_set[0])
