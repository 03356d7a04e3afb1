"""The paradigm comparison's table: paired held-out differences and Newcombe intervals, significance marks."""

from __future__ import annotations

from tasks.rl_paradigms import table


def _row(name: str, fused: dict[str, float], correct: int) -> dict:
    mean = sum(fused.values()) / len(fused)
    return {"paradigm": name, "grpo_steps": 36, "rft_steps": 0, "completions_sampled": 288, "rft_kept": 0,
            "entropy_bonus_activations": 0,
            "heldout_before": {"mean": 0.2, "ci": [0.1, 0.3], "pass_rate": 0.25, "pass_ci": [0.1, 0.5]},
            "heldout": {"mean": mean, "ci": [mean - 0.1, mean + 0.1], "pass_rate": 0.5, "pass_ci": [0.3, 0.7]},
            "heldout_by_prompt": fused,
            "benchmarks": {"medqa": {"generate": {"score": correct / 20, "score_ci_low": 0.0, "score_ci_high": 1.0,
                                                  "score_correct": correct, "n": 20, "parse_failure_rate": 0.0}}}}


def test_a_uniform_paired_gain_is_significant_and_a_noisy_one_is_not():
    ids = [f"p{i}" for i in range(12)]
    iterative = _row("iterative", {i: 0.5 for i in ids}, 10)
    # every prompt 0.2 lower: the paired differences are all -0.2, so the bootstrap interval is [-0.2, -0.2]
    fusion = _row("fusion", {i: 0.3 for i in ids}, 2)
    # +0.3 and -0.3 alternating: mean 0, the interval spans 0
    staged = _row("staged", {i: 0.5 + (0.3 if k % 2 else -0.3) for k, i in enumerate(ids)}, 10)
    lines = table([fusion, staged, iterative]).splitlines()
    fusion_line = next(line for line in lines if line.startswith("| fusion"))
    staged_line = next(line for line in lines if line.startswith("| staged"))
    assert "-0.200 [-0.200, -0.200] *" in fusion_line
    assert "+0.000" in staged_line and "] *" not in staged_line.split("|")[6]
    # MedQA 2/20 vs 10/20: -40 points, Newcombe interval excludes 0; 10/20 vs 10/20 is no change
    assert "(-40 *)" in fusion_line and "(+0)" in staged_line
    assert next(line for line in lines if line.startswith("| iterative")).split("|")[6].strip() == "-"


def test_the_sft_row_shows_the_policy_before_rl():
    ids = ["p0", "p1"]
    rows = [_row("iterative", {i: 0.5 for i in ids}, 10)]
    sft = {"medqa": {"generate": {"score": 0.25, "score_ci_low": 0.1, "score_ci_high": 0.47, "score_correct": 5,
                                  "n": 20, "parse_failure_rate": 0.0}}}
    line = next(x for x in table(rows, sft).splitlines() if x.startswith("| sft (before RL)"))
    # the before-RL held-out figures are the iterative run's `heldout_before`; MedQA 5/20 = 25.0 [10.0, 47.0]
    assert "0.200 [0.100, 0.300]" in line and "25.0 [10.0, 47.0]" in line and "25.0 [10.0, 50.0]" in line
