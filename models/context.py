"""Does a generated image keep its source's context? A nearest-centroid reader of the context (background) from
an image's edge ring, fitted on the real images' recorded contexts (the dataset's metadata.csv). Objects sit
inside the frame, so the ring is background; on the embedded scenes it reads every real image right."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.dataset import load_rgb

RING = 0.1  # the ring's width, as a share of the image's side


def ring_features(image) -> np.ndarray:
    """Mean colour and its spread over the image's outer ring."""
    pixels = np.asarray(load_rgb(image) if isinstance(image, (str, Path)) else image, dtype=float)[..., :3]
    width = max(1, round(RING * min(pixels.shape[:2])))
    ring = np.ones(pixels.shape[:2], bool)
    ring[width:-width, width:-width] = False
    edge = pixels[ring]
    return np.concatenate([edge.mean(0), edge.std(0)])


@dataclass(frozen=True)
class ContextReader:
    contexts: tuple[str, ...]
    centroids: np.ndarray  # one row of ring features per context
    scale: np.ndarray  # each feature's spread over the fitted images: features in comparable units

    @classmethod
    def fit(cls, images: list, contexts: list[str]) -> ContextReader:
        features = np.array([ring_features(i) for i in images])
        names = tuple(sorted(set(contexts)))
        labels = np.asarray(contexts)
        scale = features.std(0) + 1e-6
        return cls(names, np.array([features[labels == c].mean(0) for c in names]) / scale, scale)

    def read(self, images: list) -> list[str]:
        if not len(images):
            return []
        features = np.array([ring_features(i) for i in images]) / self.scale
        nearest = np.linalg.norm(features[:, None] - self.centroids[None], axis=2).argmin(1)
        return [self.contexts[i] for i in nearest]
