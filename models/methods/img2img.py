"""Img2Img: a class's own image noised to r and denoised with its own prompt (augmentation, the baseline)."""
from __future__ import annotations

from models.methods import register
from models.methods.genie import Genie


@register
class Img2Img(Genie):
    name = "img2img"
    summary = "a class's own image noised to r, denoised as itself (augmentation)"
    source = "own"

    def default_ratio(self, genie) -> float:
        return genie.img2img_ratios[0]

    def ratios(self, genie, sweep: bool = False) -> tuple[float, ...]:
        return tuple(genie.img2img_ratios)
