"""Results written and read back; the interval; names; the throughput comparison at one r."""
import numpy as np
import pandas as pd
import pytest

from models.benchmarks.results import load, mean_ci, slug, write_results


def test_results_round_trip(tmp_path):
    table = pd.DataFrame({"variant": ["genie r=0.5"], "label": ["007"]})
    files = write_results(tmp_path / "b", {"table": table, "empty": pd.DataFrame()}, {"benchmark": "b", "seeds": [0]})
    assert [f.name for f in files] == ["table.csv", "empty.csv", "results.json"]
    loaded = load(tmp_path / "b")
    assert loaded["facts"] == {"benchmark": "b", "seeds": [0]} and loaded["table"]["label"][0] == "007"
    assert loaded["empty"].empty and load(tmp_path / "none") is None


def test_results_from_before_generator_seeds_ask_for_a_new_run(tmp_path):
    write_results(tmp_path / "few-shot", {"table": pd.DataFrame({"variant": ["none"]})}, {"benchmark": "few-shot"})
    with pytest.raises(ValueError, match="few-shot: results from before generator seeds; run `genie benchmark few-shot`"):
        load(tmp_path / "few-shot")


def test_interval_and_slug():
    mean, half = mean_ci([0.5, 0.7])
    assert mean == 0.6 and np.isclose(half, 1.96 * 0.1 / np.sqrt(2))
    assert slug("genie-ada+filter r=0.5") == "genie-ada_filter_r0.5"
