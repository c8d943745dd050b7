"""The promotion decision: overall gain above the bar, few-shot group within its tolerance."""
from models.promotion import decide


def test_a_clear_gain_is_promoted_with_its_margin():
    promoted, reason = decide({"accuracy": 0.95, "accuracy.few": 0.90}, {"accuracy": 0.90, "accuracy.few": 0.80}, 0.0, 0.01)
    assert promoted and "gain +0.0500" in reason and "few-shot classes 0.9000 vs 0.8000: +0.1000" in reason


def test_no_gain_or_a_gain_at_the_bar_is_rejected():
    assert not decide({"accuracy": 0.9}, {"accuracy": 0.9}, 0.0, 0.01)[0]
    promoted, reason = decide({"accuracy": 0.91}, {"accuracy": 0.9}, 0.02, 0.01)
    assert not promoted and "not above 0.02" in reason


def test_a_few_shot_drop_beyond_the_tolerance_blocks_promotion():
    promoted, reason = decide({"accuracy": 0.95, "accuracy.few": 0.70}, {"accuracy": 0.90, "accuracy.few": 0.80}, 0.0, 0.05)
    assert not promoted and "few-shot accuracy drops by 0.1000" in reason
    assert decide({"accuracy": 0.95, "accuracy.few": 0.78}, {"accuracy": 0.90, "accuracy.few": 0.80}, 0.0, 0.05)[0]
