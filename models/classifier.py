"""A timm image classifier: build by name, fine-tune with timm's standard recipe, predict."""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from timm.data import Mixup, create_transform, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader
from torchvision import transforms as T
from tqdm.auto import tqdm

from models.config import ClassifierConfig, FinetuneConfig, RuntimeConfig
from models.dataset import Decoded
from models.determinism import pin
from models.locks import partial_path

log = logging.getLogger(__name__)


def build_model(name: str, num_classes: int, pretrained: bool = False) -> torch.nn.Module:
    """Any timm model; pretrained weights when asked for and reachable, from scratch otherwise."""
    if pretrained:
        try:
            return timm.create_model(name, pretrained=True, num_classes=num_classes)
        except Exception as err:  # offline, or no weights published for this name
            log.warning("no pretrained weights for %s (%s); training from scratch", name, err)
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def transforms(model: torch.nn.Module, image_size: int, cfg: ClassifierConfig | None = None):
    """timm's train transform when a config is given, its eval transform otherwise."""
    data_cfg = resolve_data_config({"input_size": (3, image_size, image_size), "crop_pct": 1.0}, model=model)
    if cfg is None:
        return create_transform(**data_cfg, is_training=False)
    # timm's recipe built from torchvision's transforms: they draw from torch's generator, which only the
    # training uses. timm's own crop draws from Python's `random`, which other threads of the process draw
    # from too (the websocket keepalive of Prefect's event client), at moments that vary from run to run.
    aug = cfg.augment
    steps = [T.RandomResizedCrop(data_cfg["input_size"][1:], scale=aug.scale,
                                 interpolation=T.InterpolationMode(data_cfg["interpolation"]))]
    if aug.hflip:
        steps.append(T.RandomHorizontalFlip(aug.hflip))
    if aug.color_jitter:
        steps.append(T.ColorJitter(aug.color_jitter, aug.color_jitter, aug.color_jitter))
    return T.Compose([*steps, T.ToTensor(), T.Normalize(data_cfg["mean"], data_cfg["std"])])


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA when present, else the CPU."""
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)


def place(x, device: torch.device):
    """A model or a batch onto `device`; channels-last on CUDA (its convolutions are faster that way under
    autocast). What is already on the CPU stays as it is: a CPU run computes exactly what it always did."""
    if device.type == "cpu":
        return x.to(device)  # a copy to the CPU must finish before it is read: blocking
    if device.type == "cuda" and (not isinstance(x, torch.Tensor) or x.dim() == 4):
        return x.to(device, non_blocking=True, memory_format=torch.channels_last)
    return x.to(device, non_blocking=True)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """CUDA's autocast type: bf16 where the GPU has it (no loss scaling needed), else fp16; none elsewhere."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device):
    dtype = autocast_dtype(device)
    return torch.autocast("cuda", dtype=dtype) if dtype else contextlib.nullcontext()


def loader_settings(device: torch.device, workers: int | None = None) -> dict:
    """DataLoader settings for `device`. By default no worker process on the CPU: augmentation then draws from
    the seeded generator in this process, and a run gives the bytes of every earlier one. On CUDA up to 8
    workers keep the GPU fed, and pinned memory lets a batch copy while the previous one computes."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    return {"num_workers": workers, "persistent_workers": workers > 0, "pin_memory": device.type == "cuda"}


Label = int | tuple[int, int, float]  # a class, or (target, source, weight of the source): a soft label


def hard_negative_labels(generated: list[tuple[str, str, str]], classes: list[str], soft_label: float) -> list[Label]:
    """Each generated (image, label, source class)'s training label: its label's class or, with `soft_label` w > 0,
    (1 - w) label + w source class (Diff-Mix style)."""
    return [classes.index(label) if soft_label == 0 or source not in classes else
            (classes.index(label), classes.index(source), soft_label) for _, label, source in generated]


def finetune_recipe(cfg: ClassifierConfig, finetune: FinetuneConfig) -> ClassifierConfig:
    """The classifier's recipe with fine-tuning's epochs, learning rate and patience, from the weights it starts at."""
    return cfg.model_copy(update={"epochs": finetune.epochs, "lr": finetune.lr, "patience": finetune.patience,
                                  "warmup_epochs": 0, "pretrained": False})


class Images(torch.utils.data.Dataset):
    """Images with class labels; with `num_classes`, labels come out as (smoothed) distributions."""

    def __init__(self, paths: list[Path], labels: list[Label], transform, num_classes: int | None = None,
                 smoothing: float = 0.0):
        self.paths, self.labels, self.transform = paths, labels, transform
        self.num_classes, self.smoothing = num_classes, smoothing
        self.load = Decoded()  # read every epoch: decoded once

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        label = self.labels[i]
        if self.num_classes is not None:
            target, source, weight = label if isinstance(label, tuple) else (label, label, 0.0)
            distribution = torch.full((self.num_classes,), self.smoothing / self.num_classes)
            distribution[target] += (1 - self.smoothing) * (1 - weight)
            distribution[source] += (1 - self.smoothing) * weight
            label = distribution
        return self.transform(self.load(self.paths[i])), label


@dataclass
class Trained:
    model: torch.nn.Module
    best_val_accuracy: float
    best_epoch: int
    history: list[dict[str, float]]


def accuracy(model: torch.nn.Module, loader: DataLoader, device: torch.device | str = "cpu") -> float:
    predictions, labels = predict(model, loader, device)
    return float((predictions == labels).mean())


def predict(model: torch.nn.Module, loader: DataLoader,
            device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    probabilities, true = predict_proba(model, loader, device)
    return probabilities.argmax(1), true


@torch.no_grad()
def predict_proba(model: torch.nn.Module, loader: DataLoader,
                  device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities and labels; the model moves to `device` (a name, or auto) and stays there."""
    device = resolve_device(str(device))
    model = place(model, device).eval()
    out, true = [], []
    for images, labels in loader:
        with autocast(device):
            probabilities = model(place(images, device)).softmax(1)
        out.append(probabilities.float().cpu().numpy())  # both no-ops on the CPU
        true.append(np.asarray(labels))
    return np.concatenate(out), np.concatenate(true)


@dataclass
class Training:
    """What one epoch of `train` uses: the model on its device, the loaders, and the optimizer with its schedule."""

    model: torch.nn.Module
    device: torch.device
    train_loader: DataLoader
    val_loader: DataLoader
    mixup: Mixup | None
    criterion: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    scheduler: CosineLRScheduler
    updates: int = 0


def setup(train_set: tuple[list[Path], list[Label]], val_set: tuple[list[Path], list[int]], num_classes: int,
          image_size: int, cfg: ClassifierConfig, init: Path | None, generator: torch.Generator) -> Training:
    """The model (from `init`, or timm's initial or pretrained weights), its loaders, loss and optimizer."""
    device = resolve_device(cfg.device)
    model = load_checkpoint(init)[0].train() if init else build_model(cfg.model, num_classes, cfg.pretrained)
    model = place(model, device)
    aug = cfg.augment
    mixing = aug.mixup > 0 or aug.cutmix > 0
    soft = any(isinstance(label, tuple) for label in train_set[1])
    if soft and mixing:
        raise ValueError("soft labels cannot be combined with MixUp / CutMix (set augment.mixup and cutmix to 0)")
    images = len(train_set[0])
    if images < 2:
        raise ValueError(f"{images} training image(s): at least 2 are needed (BatchNorm learns from two or more)")
    batch_size = min(cfg.batch_size, images)
    loading = loader_settings(device, cfg.workers)
    train_loader = DataLoader(
        Images(*train_set, transforms(model, image_size, cfg), num_classes if soft else None, aug.label_smoothing),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
        drop_last=images % batch_size == 1,  # a last batch of one image would stop BatchNorm; shuffled, none is lost
        **loading,
    )
    val_loader = DataLoader(Images(*val_set, transforms(model, image_size)), batch_size=256, **loading)
    mixup = (
        Mixup(mixup_alpha=aug.mixup, cutmix_alpha=aug.cutmix, label_smoothing=aug.label_smoothing, num_classes=num_classes)
        if mixing
        else None
    )
    criterion = SoftTargetCrossEntropy() if mixing or soft else LabelSmoothingCrossEntropy(aug.label_smoothing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # fp16 gradients underflow without loss scaling; bf16 and fp32 need none (disabled, it passes through)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device) == torch.float16)
    steps = cfg.epochs * len(train_loader)
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=steps,
        warmup_t=cfg.warmup_epochs * len(train_loader),
        warmup_lr_init=cfg.lr * 0.01,
        lr_min=cfg.lr * 0.01,
        t_in_epochs=False,
    )
    return Training(model, device, train_loader, val_loader, mixup, criterion, optimizer, scaler, scheduler)


def run_epoch(t: Training) -> tuple[float, float]:
    """One pass over the train images (a step each batch), then the val accuracy: (mean train loss, val accuracy)."""
    t.model.train()
    total, seen = 0.0, 0
    for images, labels in t.train_loader:
        images, labels = place(images, t.device), place(labels, t.device)
        targets = labels
        if t.mixup is not None:
            even = len(images) // 2 * 2  # timm's Mixup pairs images within a batch
            if even == 0:
                continue
            images, targets = t.mixup(images[:even], labels[:even])
        with autocast(t.device):
            loss = t.criterion(t.model(images), targets)
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.updates += 1
        t.scheduler.step_update(t.updates)
        total += loss.item() * len(images)
        seen += len(images)
    return total / seen, accuracy(t.model, t.val_loader, t.device)


def train(
    train_set: tuple[list[Path], list[Label]],
    val_set: tuple[list[Path], list[int]],
    num_classes: int,
    image_size: int,
    cfg: ClassifierConfig,
    progress: bool = True,
    init: Path | None = None,
    runtime: RuntimeConfig | None = None,
) -> Trained:
    """AdamW + per-step cosine schedule with warm-up, MixUp / CutMix optional, early stopping on val.

    `init`: a checkpoint to fine-tune from instead of timm's initial (or pretrained) weights.
    `runtime`: threads and kernels to pin; by default the process keeps those its flow pinned.
    Runs on `cfg.device`; the model comes back on the CPU whatever the device.
    """
    t = setup(train_set, val_set, num_classes, image_size, cfg, init, pin(cfg.seed, runtime))
    best, best_epoch, best_state, history = -1.0, 0, None, []
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {cfg.model}", unit="epoch", disable=not progress)
    for epoch in bar:
        loss, val_accuracy = run_epoch(t)
        history.append({"epoch": epoch, "train_loss": loss, "val_accuracy": val_accuracy})
        if val_accuracy > best:
            best, best_epoch, best_state = val_accuracy, epoch, copy.deepcopy(t.model.state_dict())
        bar.set_postfix(loss=f"{loss:.3f}", val_acc=f"{val_accuracy:.3f}", best=f"{best:.3f}")
        if epoch - best_epoch >= cfg.patience:
            log.info("early stop at epoch %d: no better val accuracy since epoch %d", epoch, best_epoch)
            break
    t.model.load_state_dict(best_state)
    if t.device.type != "cpu":
        t.model.to("cpu", memory_format=torch.contiguous_format)
    return Trained(t.model.eval(), best, best_epoch, history)


def save_checkpoint(path: Path, model: torch.nn.Module, name: str, classes: list[str], image_size: int) -> None:
    """The best weights plus what it takes to rebuild the model; written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    state = model.state_dict()
    for key, tensor in state.items():  # CPU tensors in the usual layout, so the file loads anywhere; set in place,
        state[key] = tensor.to("cpu", memory_format=torch.contiguous_format)  # the dict's metadata is saved too
    # a handle, not a path: given a path, torch.save names the archive's inner folder after the temporary
    # file, whose name holds the process id, and the same weights would give other bytes in every process
    with open(tmp, "wb") as handle:
        torch.save({"model": name, "classes": classes, "image_size": image_size, "state_dict": state},
                   handle)
    tmp.replace(path)


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict]:
    meta = torch.load(path, map_location="cpu", weights_only=True)
    model = timm.create_model(meta["model"], pretrained=False, num_classes=len(meta["classes"]))
    model.load_state_dict(meta.pop("state_dict"))
    return model.eval(), meta


class Embedder:
    """A frozen feature extractor from a classifier checkpoint: L2-normalised pre-logit features.

    With `augment` (a classifier config), `views` gives features of seeded augmented copies too; the
    augmentation always draws on the CPU, so a view is the same crop on every device.
    """

    def __init__(self, checkpoint: Path, augment: ClassifierConfig | None = None, device: str = "cpu"):
        self.device = resolve_device(device)
        model, meta = load_checkpoint(checkpoint)
        self.model = place(model, self.device)
        self.transform = transforms(self.model, meta["image_size"])
        self.augment = transforms(self.model, meta["image_size"], augment) if augment else None

    @torch.no_grad()
    def _features(self, batch: torch.Tensor) -> np.ndarray:
        with autocast(self.device):
            features = self.model.forward_head(self.model.forward_features(place(batch, self.device)), pre_logits=True)
            features = torch.nn.functional.normalize(features.flatten(1), dim=1)
        return features.float().cpu().numpy()  # both no-ops on the CPU

    def __call__(self, images: list) -> np.ndarray:
        return self._features(torch.stack([self.transform(image.convert("RGB")) for image in images]))

    def views(self, images: list, seeds: list[int]) -> np.ndarray:
        """One augmented copy per (image, seed): the same seed always gives the same crop."""
        tensors, state = [], random.getstate()
        with torch.random.fork_rng(devices=[]):  # leave the caller's random streams as they were
            for image, seed in zip(images, seeds):
                random.seed(seed)
                torch.manual_seed(seed)
                tensors.append(self.augment(image.convert("RGB")))
        random.setstate(state)
        return self._features(torch.stack(tensors))


def classify(checkpoint: Path, paths: list, device: str = "auto") -> tuple[np.ndarray, list[str]]:
    """Class probabilities of image files under a checkpoint, and its class names."""
    model, meta = load_checkpoint(checkpoint)
    device = resolve_device(device)
    loader = DataLoader(Images(list(paths), [0] * len(paths), transforms(model, meta["image_size"])), batch_size=256,
                        **loader_settings(device))
    return predict_proba(model, loader, device)[0], meta["classes"]
