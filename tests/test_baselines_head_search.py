"""Greedy ACT head search on synthetic scores with a known optimum, budgets, and the head file."""

import json

import pytest

from avsr_sinks.sinks.baselines import default_candidates, greedy_head_search, load_act_heads, save_act_heads

# Additive synthetic "WER": 10 minus the gain of every chosen head; negative gains hurt.
GAINS = {(2, 0): 0.5, (2, 1): -0.3, (3, 0): 0.0, (3, 1): 1.25, (4, 0): -2.0, (4, 1): 0.25}


def additive_score(heads):
    return 10.0 - sum(GAINS[h] for h in heads)


def test_default_candidates_cover_layers_2_to_L_minus_2():
    assert default_candidates(num_layers=5, num_heads=2) == [(2, 0), (2, 1), (3, 0), (3, 1)]


def test_finds_the_known_optimum_of_an_additive_score(tmp_path):
    candidates = sorted(GAINS)
    result = greedy_head_search(additive_score, candidates, output_path=tmp_path / "act_heads.json",
                                meta={"beta": 0.4})
    # Optimum: every head with a positive gain; score 10 - (0.5 + 1.25 + 0.25) = 8.
    assert result.heads == [(2, 0), (3, 1), (4, 1)]
    assert result.score == 8.0 and result.base_score == 10.0
    assert len(result.trials) == 1 + len(candidates)
    assert result.trials[1] == ([(2, 0)], 9.5)
    assert load_act_heads(tmp_path / "act_heads.json") == [(2, 0), (3, 1), (4, 1)]
    meta = json.loads((tmp_path / "act_heads.json").read_text())["meta"]
    assert meta == {"beta": 0.4, "score": 8.0, "base_score": 10.0, "scores_spent": 7}


def test_budget_and_max_heads_stop_the_search():
    candidates = sorted(GAINS)
    spent = greedy_head_search(additive_score, candidates, budget=4)
    # Baseline + the first three candidates: (2,0) kept, (2,1) and (3,0) do not lower the score.
    assert len(spent.trials) == 4 and spent.heads == [(2, 0)] and spent.score == 9.5
    capped = greedy_head_search(additive_score, candidates, max_heads=2)
    assert capped.heads == [(2, 0), (3, 1)] and capped.score == 8.25
    with pytest.raises(ValueError, match="budget"):
        greedy_head_search(additive_score, candidates, budget=0)


def test_visiting_order_decides_between_conflicting_heads():
    # (2,0) and (3,0) each help alone (9 and 8.5) but together are worse (9.5): the search keeps
    # the first one it visits and then rejects the second.
    table = {(): 10.0, ((2, 0),): 9.0, ((3, 0),): 8.5, ((2, 0), (3, 0)): 9.5}
    result = greedy_head_search(lambda heads: table[tuple(heads)], [(2, 0), (3, 0)])
    assert result.heads == [(2, 0)] and result.score == 9.0
    # min_improvement: a drop of 1.0 is not more than 1.0, so nothing is kept.
    strict = greedy_head_search(lambda heads: table[tuple(heads)], [(2, 0)], min_improvement=1.0)
    assert strict.heads == [] and strict.score == 10.0


def test_head_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "none.json"
    with pytest.raises(FileNotFoundError, match="none.json"):
        load_act_heads(missing)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"heads": [[1, "a"]]}))
    with pytest.raises(ValueError, match="bad.json.*\\[layer, head\\]"):
        load_act_heads(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json.*'heads'"):
        load_act_heads(bad)
    path = save_act_heads(tmp_path / "sub" / "ok.json", [(5, 1), (2, 3)])
    assert load_act_heads(path) == [(5, 1), (2, 3)]
