"""GeNIe-Ada: GeNIe at the ratio r* chosen per image, just after the largest semantic jump towards the target.

exact: every candidate r denoised in full, r* chosen on the finished images. fast: r* chosen on short probes of
every candidate (all candidates in each UNet call), then only r* denoised in full: that image is the GeNIe edit
at r* (same seed, same noise, same steps)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from models.methods import Made, Method, register

MODES = ("fast", "exact")


@dataclass(frozen=True)
class Ada:
    """GeNIe-Ada's state on a runner: its candidate ratios (increasing), the classifier's features (`embed`, images ->
    L2-normalised rows) and each class's mean feature it scores against, and how it looks at the candidates (`mode`:
    exact, or fast with probes of `probe_steps` sampler steps)."""

    ratios: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)
    embed: Callable | None = None
    target_means: dict[str, np.ndarray] = field(default_factory=dict)
    mode: str = "exact"
    probe_steps: int = 2

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown GeNIe-Ada mode {self.mode!r} (choose from {', '.join(MODES)})")

    def can_score(self, label: str) -> bool:
        return self.embed is not None and label in self.target_means


def class_means(embed, paths: list, labels: list[int], classes: list[str], load, chunk: int = 256) -> dict[str, np.ndarray]:
    """Mean embedding of each class's images (Ada's target directions), `chunk` images at a time into per-class sums
    and counts: memory does not grow with the data. `load` reads an image for `embed`."""
    labels = np.asarray(labels, dtype=int)
    sums = None
    for i in range(0, len(paths), chunk):
        z = embed([load(p) for p in paths[i : i + chunk]])
        sums = np.zeros((len(classes), z.shape[1])) if sums is None else sums
        np.add.at(sums, labels[i : i + chunk], z)  # float64 sums: the float32 means np.mean gave, to rounding
    if sums is None:
        return {}
    counts = np.bincount(labels, minlength=len(classes))
    return {label: (sums[i] / counts[i]).astype(z.dtype) for i, label in enumerate(classes)}


def choose_ratio(source: np.ndarray, candidates: np.ndarray, target_mean: np.ndarray, ratios: list[float]):
    """The ratio just after the largest jump towards the target class.

    All embeddings L2-normalised. v = mean_t - z_s; d_i = |<z_{i+1} - z_i, v>| / ||v||;
    r* = ratios[argmax d + 1]. Returns (r*, index of r*, scores d).
    """
    v = target_mean - source
    scores = np.abs((candidates[1:] - candidates[:-1]) @ v) / (np.linalg.norm(v) + 1e-12)
    index = int(np.argmax(scores)) + 1
    return ratios[index], index, scores


@register
class GenieAda(Method):
    name = "genie-ada"
    summary = "GeNIe at the r each image needs, chosen from the classifier's features (GeNIe-Ada)"
    ratio = "chosen"
    needs_extractor = True

    def key_fields(self, runner) -> dict:
        ada = runner.ada
        fields = {"ada_ratios": list(ada.ratios)}
        if ada.mode != "exact":  # exact's keys predate the modes: its images stay valid
            fields |= {"ada_mode": ada.mode, "probe_steps": ada.probe_steps}
        return fields

    def make(self, runner, edits, ratio) -> list[Made]:
        ada = runner.ada
        engine, ratios, n = runner.engine, list(ada.ratios), len(edits)
        sources, seeds = runner.sources(edits), [e.seed for e in edits]
        prompts = [runner.prompt(e.label) for e in edits]
        if ada.mode == "exact":
            results = [engine.edit(sources, prompts, r, seeds) for r in ratios]
            looks = [[result.images[j] for result in results] for j in range(n)]
            evals = [sum(result.unet_evals for result in results) // n] * n
        else:
            probe = engine.probe(sources, prompts, ratios, seeds, ada.probe_steps)
            looks = [probe.images[j * len(ratios) : (j + 1) * len(ratios)] for j in range(n)]
            evals = [probe.unet_evals // n] * n
        complete = [j for j in range(n) if all(image is not None for image in looks[j])]
        features = ada.embed([image for j in complete for image in (sources[j], *looks[j])])  # one call
        z_of = {j: features[i * (len(ratios) + 1) : (i + 1) * (len(ratios) + 1)] for i, j in enumerate(complete)}
        chosen = []
        for j, edit in enumerate(edits):
            if j not in z_of:
                chosen.append((None, None, []))
                continue
            z = z_of[j]
            r, index, scores = choose_ratio(z[0], z[1:], ada.target_means[edit.label], ratios)
            chosen.append((looks[j][index] if ada.mode == "exact" else None, r,
                           [round(float(s), 5) for s in scores]))
        if ada.mode == "fast":  # the chosen edits, grouped by r* so that each group shares its UNet calls
            images = [None] * n
            for r in sorted({r for _, r, _ in chosen if r is not None}):
                group = [j for j, (_, rj, _) in enumerate(chosen) if rj == r]
                result = engine.edit([sources[j] for j in group], [prompts[j] for j in group], r,
                                     [seeds[j] for j in group])
                for j, image in zip(group, result.images):
                    images[j] = image
                    evals[j] += result.unet_evals // len(group)
            chosen = [(images[j], r, scores) for j, (_, r, scores) in enumerate(chosen)]
        return [(image, r, scores, e) for (image, r, scores), e in zip(chosen, evals)]
