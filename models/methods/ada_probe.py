"""Fast GeNIe-Ada's probe: a short look at what an edit becomes at r (its input, never a training image)."""
from __future__ import annotations

from models.methods import Made, Method, register


@register
class AdaProbe(Method):
    name = "ada-probe"
    summary = "fast GeNIe-Ada's short look at an edit at r"
    internal = True

    def key_fields(self, runner) -> dict:
        return {"probe_steps": runner.ada.probe_steps}

    def make(self, runner, edits, ratio) -> list[Made]:
        result = runner.engine.probe(runner.sources(edits), [runner.prompt(e.label) for e in edits], [ratio],
                                     [e.seed for e in edits], runner.ada.probe_steps)
        return [(image, ratio, [], result.unet_evals // len(edits)) for image in result.images]
