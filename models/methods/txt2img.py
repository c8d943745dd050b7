"""Txt2Img: images of the target drawn from noise with its prompt alone (no source)."""
from __future__ import annotations

from models.methods import Made, Method, register


@register
class Txt2Img(Method):
    name = "txt2img"
    summary = "the target's prompt alone, from noise (no source image)"
    source = "none"
    ratio = "none"

    def make(self, runner, edits, ratio) -> list[Made]:
        result = runner.engine.sample([runner.prompt(e.label) for e in edits], [e.seed for e in edits])
        return [(image, 1.0, [], result.unet_evals // len(edits)) for image in result.images]
