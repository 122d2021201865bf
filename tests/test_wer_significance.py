"""Paired bootstrap of a WER difference, checked against the exact bootstrap distribution."""

import itertools
from fractions import Fraction

import pytest

from avsr_sinks.evaluation.significance import paired_bootstrap_wer_delta
from avsr_sinks.evaluation.wer import UtteranceErrors

WORDS = [8, 3, 7, 3, 9]
BASE_ERRORS = [0, 1, 2, 0, 6]
OTHER_ERRORS = [4, 2, 3, 1, 3]


def _utterances(errors, order=range(5)):
    return [UtteranceErrors(f"u{i}", "ref", "hyp", errors[i], 0, 0, WORDS[i]) for i in order]


def _exact_percentile(probability):
    """Inverted-CDF percentile of the exact bootstrap distribution: all 5^5 equally likely resamples."""
    deltas = sorted(Fraction(sum(OTHER_ERRORS[i] - BASE_ERRORS[i] for i in pick), sum(WORDS[i] for i in pick))
                    for pick in itertools.product(range(5), repeat=5))
    # The data are chosen so that no CDF step lies within 0.005 of 0.025 or 0.975: 200k resamples
    # (standard error of an empirical CDF value about 0.0004) land on the exact percentile.
    return float(deltas[next(k for k in range(len(deltas)) if (k + 1) / len(deltas) >= probability)])


def test_interval_is_the_exact_bootstrap_percentile_interval_and_delta_the_corpus_difference():
    result = paired_bootstrap_wer_delta(_utterances(BASE_ERRORS), _utterances(OTHER_ERRORS, order=[3, 1, 4, 0, 2]),
                                        resamples=200_000, confidence=0.95, seed=1)
    assert result.delta == pytest.approx((13 - 9) / 30)  # (4+2+3+1+3 - (0+1+2+0+6)) / 30 words
    assert result.low == pytest.approx(_exact_percentile(0.025))
    assert result.high == pytest.approx(_exact_percentile(0.975))
    assert result.low < 0 < result.delta < result.high  # this difference is within the sampling noise


def test_identical_systems_differ_by_exactly_zero():
    result = paired_bootstrap_wer_delta(_utterances(BASE_ERRORS), _utterances(BASE_ERRORS), resamples=100)
    assert (result.delta, result.low, result.high) == (0.0, 0.0, 0.0)


def test_different_test_sets_are_refused():
    other = _utterances(OTHER_ERRORS)[:4]
    with pytest.raises(ValueError, match="different utterances"):
        paired_bootstrap_wer_delta(_utterances(BASE_ERRORS), other)
