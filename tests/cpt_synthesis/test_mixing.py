"""Entity-balanced mixing: exact budget, floor/ceil of each expectation, unbiased over seeds, bad rows
rejected with reasons, and the effective-distribution report."""

from __future__ import annotations

import math

import numpy as np

from tasks.cpt_synthesis.mixing import mixing_plan, systematic_counts, token_budget_views

ROWS = [{"doc_id": f"d{i}", "weight": w, "n_entities": n}
        for i, (w, n) in enumerate([(0.2, 0), (0.5, 1), (1.0, 2), (2.3, 4), (0.0, 1), (1.0, 7)])]


def test_counts_are_floor_or_ceil_and_sum_to_budget():
    out, report = mixing_plan(ROWS, budget=17, seed=3)
    assert out.rejected == [] and sum(r["repeats"] for r in out.kept) == 17 == report["views"]
    for r in out.kept:
        assert math.floor(r["expected"]) <= r["repeats"] <= math.ceil(r["expected"])
    zero = next(r for r in out.kept if r["doc_id"] == "d4")
    assert zero["repeats"] == 0 and report["max_abs_dev_from_expected"] < 1
    assert mixing_plan(ROWS, 17, 3)[0].kept == out.kept                              # seeded
    assert set(report["views_by_entity_count"]) == {"0", "1-2", "3-5", "6_or_more"}


def test_unbiased_over_seeds():
    total = np.zeros(len(ROWS))
    for seed in range(400):
        total += [r["repeats"] for r in mixing_plan(ROWS, 7, seed)[0].kept]
    expected = np.array([r["expected"] for r in mixing_plan(ROWS, 7, 0)[0].kept])
    assert np.allclose(total / 400, expected, atol=0.08)


def test_bad_rows_and_edge_cases():
    rows = ROWS + [{"weight": 1.0}, {"doc_id": "d9", "weight": float("nan")}, {"doc_id": "d8", "weight": -1},
                   {"doc_id": "d0", "weight": 3.0}, {"doc_id": "d7", "weight": True}]
    out, _ = mixing_plan(rows, 10, 0)
    assert out.reasons() == {"bad_weight": 3, "duplicate_doc_id": 1, "missing_doc_id": 1}
    assert len(out.kept) == len(ROWS)
    assert mixing_plan([], 10, 0)[1]["docs"] == 0
    assert systematic_counts(np.array([0.5, 0.5]), 0.0).sum() == 1


def test_token_budget_views():
    rows = [{"doc_id": "a", "weight": 1.0}, {"doc_id": "b", "weight": 3.0}]
    assert token_budget_views(rows, {"a": 100, "b": 300}, 2500) == 10                 # 250 tokens per view
    assert token_budget_views(rows, {"a": 100}, 1000) == 10                           # unknown = mean length
