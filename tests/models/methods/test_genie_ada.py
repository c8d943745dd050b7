"""GeNIe-Ada's choice of r and its class means, on made-up embeddings."""
import numpy as np

from models.methods.genie_ada import choose_ratio, class_means


def test_ada_picks_the_ratio_after_the_largest_jump():
    source = np.array([1.0, 0.0])
    target = np.array([0.0, 1.0])
    candidates = np.array([[1, 0], [0.95, 0.1], [0.2, 0.9], [0.1, 0.95], [0.0, 1.0]])  # the jump: 0.6 -> 0.7
    r, index, scores = choose_ratio(source, candidates, target, [0.5, 0.6, 0.7, 0.8, 0.9])
    assert (r, index) == (0.7, 2)
    v = target - source
    assert np.allclose(scores[1], abs((candidates[2] - candidates[1]) @ v) / np.linalg.norm(v))


def test_class_means_summed_in_chunks_are_the_all_at_once_means():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(11, 4)).astype(np.float32)  # image i's features: row i
    labels = [0, 1, 2, 0, 0, 1, 2, 2, 2, 0, 1]
    calls = []

    def embed(images):
        calls.append(len(images))
        return features[images]

    means = class_means(embed, list(range(11)), labels, ["a", "b", "c"], load=lambda i: i, chunk=4)
    assert calls == [4, 4, 3] and list(means) == ["a", "b", "c"]
    for index, label in enumerate("abc"):
        expected = features[[i for i, y in enumerate(labels) if y == index]].mean(0)
        np.testing.assert_allclose(means[label], expected, rtol=1e-6)
        assert means[label].dtype == np.float32
    assert class_means(embed, [], [], ["a"], load=lambda i: i) == {}
