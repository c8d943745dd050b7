"""The promotion gates: overall gain above the bar, few-shot group within its tolerance, no class dropping past its
limit, the worst group no worse; each verdict given, the refusing gate named."""
from models.config import PromoteConfig
from models.promotion import decide

RULES = PromoteConfig()  # gain > 0, few-shot -0.01, any class -0.1, worst group no worse


def test_a_clear_gain_is_promoted_with_its_margin_and_every_gates_verdict():
    promoted, reason, gates = decide({"accuracy": 0.95, "accuracy.few": 0.90}, {"accuracy": 0.90, "accuracy.few": 0.80},
                                     RULES, {"0": 0.9, "1": 1.0}, {"0": 0.95, "1": 0.9})
    assert promoted and "gain +0.0500" in reason and "few-shot classes 0.9000 vs 0.8000: +0.1000" in reason
    assert set(gates) == {"gain", "few-shot", "per-class"} and all(v.startswith("pass: ") for v in gates.values())
    assert gates["per-class"] == "pass: largest class drop: 0 by +0.0500 (limit 0.1)"


def test_no_gain_or_a_gain_at_the_bar_is_rejected():
    assert not decide({"accuracy": 0.9}, {"accuracy": 0.9}, RULES)[0]
    promoted, reason, gates = decide({"accuracy": 0.91}, {"accuracy": 0.9}, PromoteConfig(min_improvement=0.02))
    assert not promoted and reason.startswith("the gain gate refused it: ") and "not above 0.02" in reason
    assert gates["gain"].startswith("fail: ")


def test_a_few_shot_drop_beyond_the_tolerance_blocks_promotion():
    loose = PromoteConfig(few_shot_tolerance=0.05)
    promoted, reason, _ = decide({"accuracy": 0.95, "accuracy.few": 0.70}, {"accuracy": 0.90, "accuracy.few": 0.80},
                                 loose)
    assert not promoted and "few-shot accuracy drops by 0.1000" in reason
    assert decide({"accuracy": 0.95, "accuracy.few": 0.78}, {"accuracy": 0.90, "accuracy.few": 0.80}, loose)[0]


def test_one_class_dropping_past_the_limit_refuses_a_challenger_that_wins_overall():
    champion = {str(c): 0.9 for c in range(10)}
    challenger = champion | {"7": 0.78, **{str(c): 0.99 for c in range(7)}}  # overall up, class 7 down 0.12
    promoted, reason, gates = decide({"accuracy": 0.94}, {"accuracy": 0.90}, RULES, challenger, champion)
    assert not promoted and gates["gain"].startswith("pass")
    assert reason == "the per-class gate refused it: largest class drop: 7 by +0.1200 (limit 0.1)"
    assert decide({"accuracy": 0.94}, {"accuracy": 0.90}, PromoteConfig(max_class_drop=None), challenger, champion)[0]


def test_the_worst_group_may_not_drop_where_there_are_contexts():
    promoted, reason, gates = decide({"accuracy": 0.95, "accuracy.worst_group": 0.40},
                                     {"accuracy": 0.90, "accuracy.worst_group": 0.50}, RULES)
    assert not promoted and reason.startswith("the worst-group gate refused it: worst group 0.4000 vs 0.5000")
    assert decide({"accuracy": 0.95, "accuracy.worst_group": 0.40}, {"accuracy": 0.90, "accuracy.worst_group": 0.50},
                  PromoteConfig(worst_group_tolerance=None))[0]
