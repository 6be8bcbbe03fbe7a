"""Defaults match the tuned figures: each method's default is what its tuning picks most often."""

import json
from pathlib import Path

from evaluation.tuned_defaults import code_defaults, mismatches, tuned_picks

RESULTS = Path(__file__).resolve().parent.parent / "results"


def test_every_default_is_the_most_picked_tuned_value():
    picks = tuned_picks(RESULTS)
    assert {"itemknn", "userknn", "als", "bpr", "pixie", "ppr", "salsa"} <= set(picks)
    assert mismatches(RESULTS) == []


def _write(folder: Path, dataset: str, task: str, params: dict, *, split: str | None = None, tuned=True):
    label = split or f"{dataset}-{task}"
    rec = {
        "dataset": dataset,
        "task": task,
        "method": "itemknn",
        "tuned": tuned,
        "params": params,
        "split_label": label,
    }
    (folder / f"{label}-itemknn.json").write_text(json.dumps(rec))


def test_majority_wins_ties_go_to_the_largest_dataset_and_variants_do_not_vote(tmp_path):
    base = {"shrink": 10.0, "alpha": 0.7, "weighting": "binary"}
    _write(tmp_path, "lastfm", "tweets", dict(base, k_neighbors=400))
    _write(tmp_path, "gowalla", "tweets", dict(base, k_neighbors=200))
    # the time-ordered split of a dataset already voting, and an untuned run: no votes
    _write(tmp_path, "synthetic", "follows", dict(base, k_neighbors=50), split="synthetic-follows-time")
    _write(tmp_path, "flickr", "tweets", dict(base, k_neighbors=50, shrink=100.0), tuned=False)
    row = tuned_picks(tmp_path)["itemknn"]
    assert row["k_neighbors"]["pick"] == 200  # 1-1 tie: gowalla is the larger dataset
    assert row["shrink"]["pick"] == 10.0
    _write(tmp_path, "flickr", "follows", dict(base, k_neighbors=400))
    assert tuned_picks(tmp_path)["itemknn"]["k_neighbors"]["pick"] == 400  # 2-1 majority


def test_walk_methods_report_their_source_defaults():
    defaults = code_defaults("salsa")
    assert {"restart_prob", "n_hubs", "direction"} <= set(defaults)
    assert "k" not in defaults and "seed" not in defaults
