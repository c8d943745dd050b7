"""The embedded generator's lifecycle: a night reuses the current generator unless the policy says
its data or recipe moved too far from what it was trained on."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from models.config import RetrainConfig, Settings


@dataclass(frozen=True)
class TrainedOn:
    """What a generator was (or would now be) trained on."""

    classes: tuple[str, ...]
    train_images: int
    recipe: str  # digest of the prompts and the training budget
    time: float  # seconds since the epoch: when trained, or now


def retrain_reason(current: TrainedOn | None, now: TrainedOn, policy: RetrainConfig, force: bool = False,
                   adapt: bool = False) -> tuple[bool, str]:
    """(retrain?, why): forced, none yet, recipe or class set changed, train split moved by more than
    `policy.max_growth`, or older than `policy.max_age_days`; otherwise reuse, saying by how little it moved.
    With `adapt` (generator.adapt), classes that are only added are taught to the generator, not retrained for."""
    if force:
        return True, "forced"
    if current is None:
        return True, "no generator registered yet"
    if current.recipe != now.recipe:
        return True, "recipe changed (prompt, class names, image size or training budget)"
    added, removed = sorted(set(now.classes) - set(current.classes)), sorted(set(current.classes) - set(now.classes))
    change = ", ".join([f"+{c}" for c in added] + [f"-{c}" for c in removed])
    if removed or (added and not adapt):
        return True, f"class set changed ({change})"
    growth = now.train_images / max(1, current.train_images) - 1
    if abs(growth) > policy.max_growth:
        return True, f"train split {growth:+.1%}, beyond {policy.max_growth:.0%}"
    age = (now.time - current.time) / 86400
    if policy.max_age_days is not None and age > policy.max_age_days:
        return True, f"{age:.0f} days old, beyond {policy.max_age_days:g}"
    adapted = f"new classes ({change}) adapted, not retrained; " if added else ""
    return False, f"{adapted}train split {growth:+.1%}, below {policy.max_growth:.0%}"


def recipe(settings: Settings) -> str:
    """Digest of what shapes a generator besides its data: prompts, class names, image size, training budget."""
    g = settings.generator
    parts = [g.prompt, g.class_names, g.embedded.model_dump(mode="json"), settings.dataset.image_size,
             settings.dataset.embedded]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
