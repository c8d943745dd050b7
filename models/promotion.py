"""Guarded promotion: does the challenger beat the champion on the same test data, by every gate the team set?"""
from __future__ import annotations

from models.config import PromoteConfig

DECISIONS = "decisions"  # the experiment "<model>-decisions": one run per decision on `champion`, the decision log


def decide(challenger: dict[str, float], champion: dict[str, float], rules: PromoteConfig,
           challenger_classes: dict[str, float] | None = None, champion_classes: dict[str, float] | None = None
           ) -> tuple[bool, str, dict[str, str]]:
    """Promote when every gate passes: overall gain above `min_improvement`; the few-shot group (when there is one)
    down by no more than `few_shot_tolerance`; no class (of those both know) down by more than `max_class_drop`; the
    worst group (a dataset with contexts) down by no more than `worst_group_tolerance`. Returns the verdict, the
    reason (the margin, or the first gate that refused and why) and each gate's verdict."""
    verdicts: dict[str, str] = {}

    def gate(name: str, passed: bool, detail: str) -> None:
        verdicts[name] = f"{'pass' if passed else 'fail'}: {detail}"

    gain = challenger["accuracy"] - champion["accuracy"]
    margin = f"overall accuracy {challenger['accuracy']:.4f} vs champion {champion['accuracy']:.4f}: gain {gain:+.4f}"
    gate("gain", gain > rules.min_improvement,
         margin + ("" if gain > rules.min_improvement else f" not above {rules.min_improvement}"))
    if "accuracy.few" in challenger and "accuracy.few" in champion:
        drop = champion["accuracy.few"] - challenger["accuracy.few"]
        ok = drop <= rules.few_shot_tolerance
        gate("few-shot", ok, f"few-shot classes {challenger['accuracy.few']:.4f} vs {champion['accuracy.few']:.4f}: "
             f"{0.0 - drop:+.4f}" if ok else f"few-shot accuracy drops by {drop:.4f} (> tolerance {rules.few_shot_tolerance})")
    if rules.max_class_drop is not None and challenger_classes and champion_classes:
        drops = {label: champion_classes[label] - challenger_classes[label]
                 for label in sorted(set(challenger_classes) & set(champion_classes))}
        worst = max(drops, key=drops.get)
        gate("per-class", drops[worst] <= rules.max_class_drop,
             f"largest class drop: {worst} by {drops[worst]:+.4f} (limit {rules.max_class_drop})")
    if rules.worst_group_tolerance is not None and "accuracy.worst_group" in challenger and \
            "accuracy.worst_group" in champion:
        drop = champion["accuracy.worst_group"] - challenger["accuracy.worst_group"]
        gate("worst-group", drop <= rules.worst_group_tolerance,
             f"worst group {challenger['accuracy.worst_group']:.4f} vs {champion['accuracy.worst_group']:.4f}: "
             f"{0.0 - drop:+.4f} (tolerance {rules.worst_group_tolerance})")
    failed = [name for name, verdict in verdicts.items() if verdict.startswith("fail")]
    if failed:
        return False, f"the {failed[0]} gate refused it: {verdicts[failed[0]].removeprefix('fail: ')}", verdicts
    shown = [margin] + [verdicts[name].removeprefix("pass: ") for name in verdicts if name != "gain"]
    return True, "; ".join(shown), verdicts
