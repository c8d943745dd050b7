"""The few-shot protocol: N-way K-shot episodes on novel classes, each method's extra images for
an episode, logistic regression on frozen L2-normalised features, scores per episode."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from tqdm.auto import tqdm

from models import methods
from models.config import GenieConfig
from models.dataset import load_rgb
from models.editing import Edit, edit_seed, replicas
from models.methods.genie_ada import choose_ratio


@dataclass(frozen=True)
class Variant:
    """A method at one setting: what a row of the results table is."""

    method: str  # a generation method (models.methods), or a baseline that generates nothing: none, traditional, real
    ratio: float | None = None
    mode: str | None = None  # GeNIe-Ada's: fast (chosen from probes); None: the configured exact way
    filter: bool = False  # only the images the real-data judge calls their label

    @classmethod
    def parse(cls, name: str, ratio: float | None = None) -> Variant:
        """The one spelling of the configuration's lists: `genie-ada-fast`, `<method>+filter`."""
        method, filtered = name.removesuffix("+filter"), name.endswith("+filter")
        mode = "fast" if method == "genie-ada-fast" else None
        return cls(method.removesuffix("-fast") if mode else method, ratio, mode, filtered)

    @classmethod
    def of_label(cls, label: str) -> Variant:
        """The variant a results table's label names ('genie r=0.8', 'genie-ada-fast', 'real')."""
        name, _, ratio = label.partition(" r=")
        return cls.parse(name, float(ratio) if ratio else None)

    @property
    def name(self) -> str:
        return self.method + ("-fast" if self.mode == "fast" else "") + ("+filter" if self.filter else "")

    @property
    def label(self) -> str:
        return f"{self.name} r={self.ratio}" if self.ratio is not None else self.name

    @property
    def generates(self) -> bool:
        return self.method in methods.names(internal=True)

    @property
    def hard_negative(self) -> bool:
        """Another class's image made the target's (GeNIe and its kin), against the simpler alternatives."""
        return self.generates and methods.get(self.method, internal=True).source == "other"


def variants(names: tuple[str, ...], genie: GenieConfig, sweep: bool = False) -> list[Variant]:
    """Each method at each of its ratios (with `sweep`, genie at every Ada candidate: accuracy as a function of r);
    the baselines that generate nothing once."""
    out = []
    for name in names:
        variant = Variant.parse(name)
        ratios = methods.get(variant.method, internal=True).ratios(genie, sweep) if variant.generates else (None,)
        out += [replace(variant, ratio=r) for r in ratios]
    return out


def comparisons(labels: list[str], means: pd.Series | None = None, keep: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """The pairs every verdict compares, from the variants that ran: each hard negative (GeNIe-Ada, GeNIe at its best
    r by `means` and at the r values in `keep`, else every r) against each simpler alternative; GeNIe-Ada against
    GeNIe; each alternative against no extra image; each mode or filter of a method against the method as configured."""
    variants = {label: Variant.of_label(label) for label in labels}
    plain = [a for a, v in variants.items() if v.mode is None and not v.filter]
    hard = [a for a in plain if variants[a].hard_negative]
    swept = [a for a in hard if variants[a].ratio is not None]
    if means is not None and len(swept) > 1:  # the sweep's best r stands for GeNIe
        best = max(swept, key=lambda a: means.get(a, float("-inf")))
        hard = [a for a in hard if a not in swept] + list(dict.fromkeys([*(a for a in keep if a in swept), best]))
    simpler = [b for b in plain if b not in hard and b not in swept]
    nothing = [b for b in simpler if not variants[b].generates]
    pairs = [(a, b) for a in hard for b in simpler]
    pairs += [(a, b) for a in hard for b in hard if a != b and variants[a].ratio is None and variants[b].ratio is not None]
    pairs += [(a, b) for a in simpler if variants[a].generates for b in nothing[:1]]
    pairs += [(a, b) for a, v in variants.items() if v.mode or v.filter
              for b in plain if variants[b].method == v.method and variants[b].ratio == v.ratio]
    return pairs


@dataclass(frozen=True)
class Episode:
    shots: int
    index: int
    classes: tuple[str, ...]
    support: tuple[tuple[str, str], ...]  # (image path, class)
    queries: tuple[tuple[str, str], ...]


def sample_episodes(support_pool: dict[str, list[str]], query_pool: dict[str, list[str]], ways: int, shots: int,
                    queries: int, episodes: int, seed: int) -> list[Episode]:
    """Episodes as a pure function of the pools and the seed: every method sees the same ones."""
    classes = sorted(support_pool)
    if ways > len(classes):
        raise ValueError(f"{ways}-way episodes need {ways} novel classes, there are {len(classes)}")
    for name, pool, need in (("support", support_pool, shots), ("query", query_pool, queries)):
        short = [c for c in classes if len(pool.get(c, [])) < need]
        if short:
            raise ValueError(f"class {short[0]} has {len(pool.get(short[0], []))} {name} images, "
                             f"{need} needed per episode")
    rng = np.random.default_rng([seed, shots])
    out = []
    for index in range(episodes):
        chosen = tuple(sorted(rng.choice(classes, ways, replace=False)))
        support = tuple((str(p), c) for c in chosen for p in rng.choice(sorted(support_pool[c]), shots, replace=False))
        query = tuple((str(p), c) for c in chosen for p in rng.choice(sorted(query_pool[c]), queries, replace=False))
        out.append(Episode(shots, index, chosen, support, query))
    return out


def episode_edits(episode: Episode, variant: Variant, seed: int) -> list[Edit]:
    """The same budget for every method: (N-1) * K extra images per class.

    GeNIe: every support image of the other classes edited towards the class (hard negatives).
    Txt2Img (from noise): as many samples of the class, one seed per GeNIe pair. Img2Img (a class's
    own images): its support images, each edited N-1 times with different seeds. genie-ada's
    candidates are GeNIe's edits at its ratios (same pair, same seed): they come from the genie edits.
    """
    edits = []
    for target in episode.classes:
        own = [p for p, c in episode.support if c == target]
        others = [(p, c) for p, c in episode.support if c != target]
        if not variant.generates or variant.method == "genie-ada":
            continue  # nothing generated, or chosen from genie's candidates
        if methods.get(variant.method, internal=True).source == "own":
            edits += replicas(own, target, len(others), variant.method, variant.ratio, seed)
        else:  # other classes' images (hard negatives), or as many samples from noise, one seed per pair
            edits += [Edit.make(p, c, target, variant.method, variant.ratio, seed) for p, c in others]
    return edits


def fit_and_score(support: np.ndarray, support_labels: list[str], queries: np.ndarray, query_labels: list[str]) -> float:
    """Logistic regression (lbfgs, C = 1) on L2-normalised features; accuracy on the queries."""
    def normalise(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)

    model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)
    model.fit(normalise(support), support_labels)
    return float((model.predict(normalise(queries)) == np.asarray(query_labels)).mean())


class FeatureBank:
    """Features of image files (and of their augmented views), each computed once."""

    def __init__(self, embed, batch_size: int = 256):
        self.embed, self.batch_size = embed, batch_size
        self.cache: dict = {}

    def __call__(self, paths: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(p for p in paths if p not in self.cache))
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            self.cache.update(zip(chunk, self.embed([load_rgb(p) for p in chunk])))
        return np.stack([self.cache[p] for p in paths]) if paths else np.zeros((0, 0))

    def views(self, paths: list[str], n: int) -> np.ndarray:
        """n augmented views of each image, seeded by the image and the view number."""
        keys = [(p, j) for p in paths for j in range(n)]
        missing = [k for k in keys if k not in self.cache]
        for i in range(0, len(missing), self.batch_size):
            chunk = missing[i : i + self.batch_size]
            seeds = [edit_seed(j, p, "view") for p, j in chunk]
            self.cache.update(zip(chunk, self.embed.views([load_rgb(p) for p, _ in chunk], seeds)))
        return np.stack([self.cache[k] for k in keys]) if keys else np.zeros((0, 0))


def run_episodes(bank: FeatureBank, episodes: list[Episode], plan: list[Variant], made: dict[Edit, str],
                 ada_ratios: tuple[float, ...], seed: int, progress: bool = True):
    """Accuracy of every variant on every episode, and GeNIe-Ada's choice for every pair.

    `made` maps each generated edit to its image; an edit the safety checker dropped is absent,
    so that episode's class gets fewer extra images. Ada's target direction is the mean feature
    of the class's support images: all a few-shot user has.
    """
    scores, choices = [], []
    for episode in tqdm(episodes, desc="episodes", unit="episode", disable=not progress):
        support_paths = [p for p, _ in episode.support]
        support_labels = [c for _, c in episode.support]
        support = bank(support_paths)
        queries = bank([p for p, _ in episode.queries])
        query_labels = [c for _, c in episode.queries]
        extra_views = len(episode.classes) - 1
        for variant in plan:
            if variant.method == "none":
                extra, labels = np.zeros((0, support.shape[1])), []
            elif variant.method == "traditional":
                extra = bank.views(support_paths, extra_views)
                labels = [c for c in support_labels for _ in range(extra_views)]
            elif variant.method == "genie-ada":
                picked = ada_choices(bank, episode, made, ada_ratios, seed, fast=variant.mode == "fast")
                choices += picked
                extra, labels = bank([row["image"] for row in picked]), [row["target"] for row in picked]
            else:
                edits = [e for e in episode_edits(episode, variant, seed) if e in made]
                extra, labels = bank([made[e] for e in edits]), [e.label for e in edits]
            x = np.concatenate([support, extra]) if len(labels) else support
            accuracy = fit_and_score(x, support_labels + labels, queries, query_labels)
            scores.append({"shots": episode.shots, "episode": episode.index, "variant": variant.label,
                           "method": variant.method, "ratio": variant.ratio, "extra_images": len(labels),
                           "accuracy": accuracy})
    return pd.DataFrame(scores), pd.DataFrame(choices)


def ada_choices(bank: FeatureBank, episode: Episode, made: dict[Edit, str], ratios: tuple[float, ...],
                seed: int, fast: bool = False) -> list[dict]:
    """GeNIe-Ada's pick for every pair of the episode: r* from the finished candidates (exact) or from
    their one-step probes (fast); the image kept is the GeNIe edit at r* either way."""
    rows = []
    for target in episode.classes:
        target_mean = bank([p for p, c in episode.support if c == target]).mean(0)
        for source, source_class in ((p, c) for p, c in episode.support if c != target):
            edits = [Edit.make(source, source_class, target, "genie", r, seed) for r in ratios]
            looks = [Edit.make(source, source_class, target, "ada-probe", r, seed) for r in ratios] if fast else edits
            if not all(e in made for e in edits + looks):
                continue
            z = bank([source, *(made[e] for e in looks)])
            ratio, index, jumps = choose_ratio(z[0], z[1:], target_mean, list(ratios))
            rows.append({"shots": episode.shots, "episode": episode.index, "mode": "fast" if fast else "exact",
                         "source": source, "source_class": source_class, "target": target, "ratio": ratio,
                         "image": made[edits[index]], "jumps": [round(float(d), 5) for d in jumps]})
    return rows
