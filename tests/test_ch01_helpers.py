"""Helpers that chapter 01 calls: comparing two methods over pretraining seeds."""

import pandas as pd
import pytest

from ssledu.probe import head_to_head


def _runs(rows):
    """rows: (fact, method, [accuracy per run]) -> long frame, one row per run."""
    return pd.DataFrame([{"fact": f, "method": m, "n_labels": 16, "accuracy": a}
                         for f, m, accs in rows for a in accs])


def test_head_to_head_means_sds_and_verdicts():
    results = _runs([
        ("clear win", "A", [0.90, 0.92, 0.94]), ("clear win", "B", [0.80, 0.80, 0.80]),
        ("noisy", "A", [0.50, 0.60, 0.70]), ("noisy", "B", [0.55, 0.55, 0.55]),
        ("tiny gap", "A", [0.700, 0.700]), ("tiny gap", "B", [0.705, 0.705]),
        ("clear loss", "A", [0.30, 0.31, 0.29]), ("clear loss", "B", [0.60, 0.61, 0.59]),
    ])
    table = head_to_head(results, "A", "B", by=["fact", "n_labels"])
    row = table.loc[("clear win", 16)]
    assert row["A"] == pytest.approx(0.92) and row["A sd"] == pytest.approx(0.02)
    assert row["B"] == pytest.approx(0.80) and row["B sd"] == pytest.approx(0.0)
    assert row["gap"] == pytest.approx(0.12)
    verdicts = table["verdict"].droplevel("n_labels").to_dict()
    # noisy: a gap of 0.05 is inside 2 sd = 0.2; tiny gap: inside the one-point floor
    assert verdicts == {"clear win": "ahead", "noisy": "tie", "tiny gap": "tie", "clear loss": "behind"}
    # without the floor, the runs agree exactly, so the 0.005 gap counts
    strict = head_to_head(results, "A", "B", by="fact", min_gap=0.001)
    assert strict.loc["tiny gap", "verdict"] == "behind"


def test_head_to_head_single_run_uses_the_floor():
    results = _runs([("f", "A", [0.83]), ("f", "B", [0.80])])
    assert head_to_head(results, "A", "B", by="fact").loc["f", "A sd"] == 0.0
    assert head_to_head(results, "A", "B", by="fact").loc["f", "verdict"] == "ahead"
    assert head_to_head(results, "A", "B", by="fact", min_gap=0.05).loc["f", "verdict"] == "tie"


def test_head_to_head_errors_name_the_fix():
    results = _runs([("f", "A", [0.8]), ("f", "B", [0.7])])
    with pytest.raises(ValueError, match=r"method 'C' is not in results; methods there: \['A', 'B'\]"):
        head_to_head(results, "C", "B", by="fact")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['layer'\]"):
        head_to_head(results, "A", "B", by="layer")
    with pytest.raises(ValueError, match="min_gap must be >= 0"):
        head_to_head(results, "A", "B", by="fact", min_gap=-1)
