"""Guarded promotion: does the challenger beat the champion on the same test data?"""
from __future__ import annotations


def decide(challenger: dict[str, float], champion: dict[str, float], min_improvement: float,
           few_shot_tolerance: float) -> tuple[bool, str]:
    """Promote when overall accuracy improves by more than `min_improvement` and the few-shot
    group (when there is one) drops by no more than `few_shot_tolerance`."""
    gain = challenger["accuracy"] - champion["accuracy"]
    if gain <= min_improvement:
        return False, f"overall accuracy {challenger['accuracy']:.4f} vs champion {champion['accuracy']:.4f}: gain {gain:+.4f} not above {min_improvement}"
    margin = f"overall accuracy {challenger['accuracy']:.4f} vs champion {champion['accuracy']:.4f}: gain {gain:+.4f}"
    if "accuracy.few" in challenger and "accuracy.few" in champion:
        drop = champion["accuracy.few"] - challenger["accuracy.few"]
        if drop > few_shot_tolerance:
            return False, f"few-shot accuracy drops by {drop:.4f} (> tolerance {few_shot_tolerance})"
        margin += f"; few-shot classes {challenger['accuracy.few']:.4f} vs {champion['accuracy.few']:.4f}: {-drop:+.4f}"
    return True, margin
