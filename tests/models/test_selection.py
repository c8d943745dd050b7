"""Confusion-driven selection: which targets, which source classes, which images, which edits."""
import pandas as pd

from models.editing import edits_from_selection
from models.selection import choose_targets, most_confused, select_sources

CLASSES = ["a", "b", "c", "d"]
CONFUSION = pd.DataFrame([[8, 2, 0, 0], [3, 6, 1, 0], [0, 0, 9, 1], [0, 0, 0, 10]], index=CLASSES, columns=CLASSES,
                         dtype=float)
MANIFEST = pd.DataFrame({"path": [f"{c}/{i}.png" for c in CLASSES for i in range(5)],
                         "label": [c for c in CLASSES for _ in range(5)], "split": "train"})


def test_targets_all_weakest_or_tail():
    assert choose_targets(CONFUSION, "all", 2, {}) == CLASSES
    assert choose_targets(CONFUSION, "weakest", 2, {}) == ["b", "a"]  # recall 0.6, then 0.8
    assert choose_targets(CONFUSION, "tail", 2, {"a": "many", "b": "few", "c": "medium"}) == ["b", "c"]
    assert choose_targets(CONFUSION, "tail", 2, {"a": "many", "b": "many", "c": "many"}) == list(CONFUSION.index)


def test_most_confused_counts_both_directions():
    assert most_confused(CONFUSION, "a", 1) == ["b"]
    assert most_confused(CONFUSION, "c", 2) == ["b", "d"]  # tie at 1.0 broken by name


def test_sources_alternate_between_confused_classes_within_the_budget():
    picked = select_sources(CONFUSION, MANIFEST, "data", ["c"], k=2, per_target=3, seed=0)
    assert list(picked["source_class"]) == ["b", "d", "b"] and (picked["target"] == "c").all()
    assert picked["source"].str.startswith("data/").all()
    bigger = select_sources(CONFUSION, MANIFEST, "data", ["c"], k=2, per_target=5, seed=0)
    assert set(picked["source"]) <= set(bigger["source"])  # a larger budget keeps the earlier picks
    assert not picked.equals(select_sources(CONFUSION, MANIFEST, "data", ["c"], k=2, per_target=3, seed=1))


def test_selection_edits_carry_method_ratio_and_a_seed_per_pair():
    picked = select_sources(CONFUSION, MANIFEST, "data", ["a"], k=1, per_target=2, seed=0)
    edits = edits_from_selection(picked, "genie", 0.6, seed=0)
    assert [(e.source_class, e.label, e.method, e.ratio) for e in edits] == [("b", "a", "genie", 0.6)] * 2
    assert len({e.seed for e in edits}) == 2
    ada = edits_from_selection(picked, "genie-ada", 0.6, seed=0)
    assert {e.ratio for e in ada} == {None}  # Ada picks r per image


def test_sources_from_the_contexts_the_target_is_missed_in():
    # b's images alternate between contexts x and y; target a is recognised on x, missed on y
    manifest = MANIFEST.assign(context=["x", "y"] * 10)
    groups = pd.DataFrame({"class": ["a", "a"], "context": ["x", "y"], "accuracy": [0.9, 0.2]})
    aimed = select_sources(CONFUSION, manifest, "data", ["a"], k=1, per_target=2, seed=0, groups=groups)
    b_on_y = {f"data/{p}" for p, c in zip(manifest["path"], manifest["context"]) if p.startswith("b/") and c == "y"}
    assert set(aimed["source"]) <= b_on_y
    plain = select_sources(CONFUSION, manifest, "data", ["a"], k=1, per_target=5, seed=0)
    assert not set(plain["source"]) <= b_on_y  # without the groups, both contexts
