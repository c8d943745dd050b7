"""GeNIe: a source image of another class noised to ratio r and denoised with the target's prompt, a hard
negative that keeps the source's low-level features and shows the target."""
from __future__ import annotations

from models.methods import Made, Method, register


@register
class Genie(Method):
    name = "genie"
    summary = "another class's image noised to r, denoised towards the target (a hard negative)"

    def default_ratio(self, genie) -> float:
        return genie.noise_ratio

    def ratios(self, genie, sweep: bool = False) -> tuple[float, ...]:
        return tuple(genie.ada_ratios) if sweep else (genie.noise_ratio,)

    def make(self, runner, edits, ratio) -> list[Made]:
        result = runner.engine.edit(runner.sources(edits), [runner.prompt(e.label) for e in edits], ratio,
                                    [e.seed for e in edits])
        return [(image, ratio, [], result.unet_evals // len(edits)) for image in result.images]
