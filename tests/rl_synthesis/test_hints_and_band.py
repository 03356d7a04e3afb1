"""Hierarchical hints, the difficulty band (pass rates under the real hybrid reward), the curriculum phase of a
prompt and the seeded held-out split of rl_data."""

from __future__ import annotations

import re

import pytest

from eval.constraints import Constraint
from tasks.mid_synthesis.samples import GateOutcome
from tasks.reward.hybrid import HybridReward
from tasks.rl_synthesis.band import band_filter, pass_rates
from tasks.rl_synthesis.hints import hints_for
from tasks.rl_synthesis.prompts import make_prompt
from tasks.rl_synthesis.run import RLBuild, _cap, _split, phase_of, summary_of, words

OPTIONS = ["Insulin", "Metformin", "Warfarin", "Aspirin"]


def _choice(answer: str = "Metformin", options: list[str] | None = None, query: str = "Which drug?") -> dict:
    options = options or OPTIONS
    body = "\n".join(f"{c}. {o}" for c, o in zip("ABCDEFGHIJ", options))
    return make_prompt("closed", [], f"{query}\n{body}", answer=answer, answer_kind="choice", options=options,
                       thinking=False, source="test", source_ids=["s"])


def _set(task: str = "multi") -> dict:
    return make_prompt(task, [], "Name the main symptoms of influenza.", answer="fever, cough", answer_kind="set",
                       answer_set=["fever", "cough"], thinking=False, source="test", source_ids=["s"])


# ---------------------------------------------------------------------------------------------- hints
def _ruled_out(hint: str) -> list[str]:
    m = re.fullmatch(r"Options ([A-J](?: and [A-J])*) can be ruled out\.", hint)
    assert m, hint
    return m.group(1).split(" and ")


@pytest.mark.parametrize("n_options, n_ruled", [(2, 1), (3, 1), (4, 2), (5, 2)])
def test_choice_evidence_never_rules_out_the_gold(n_options, n_ruled):
    # size = min(2, wrong - 1) when more than one wrong option (one wrong option always stays in doubt), else 1
    opts = [f"Option text {i}" for i in range(n_options)]
    for gold in range(n_options):
        for q in range(6):          # different prompt ids: different draws
            p = _choice(answer=opts[gold], options=opts, query=f"Question {q}?")
            for seed in range(4):
                ruled = _ruled_out(hints_for(p, seed)[1])
                assert "ABCDE"[gold] not in ruled
                assert len(ruled) == len(set(ruled)) == n_ruled
                assert ruled == sorted(ruled)


def test_gold_given_as_a_letter_is_respected():
    p = _choice(answer="C")
    for seed in range(10):
        assert "C" not in _ruled_out(hints_for(p, seed)[1])
    assert hints_for(p, 0)[2] == "The correct option's text begins with 'War'."


def test_three_levels_coarse_to_near_answer():
    h = hints_for(_choice(), 7)
    assert len(h) == 3
    assert h[0].startswith("Consider what each option")
    assert h[2] == "The correct option's text begins with 'Met'."       # "Metformin"[:3]
    assert hints_for(_set(), 7) == ["More than one item is correct; name each of them.",
                                    "There are 2 items to name.", "One of them is fever."]
    fill = make_prompt("closed", [], "Which ACE inhibitor?", answer="lisinopril", answer_kind="fill", thinking=False,
                       source="t", source_ids=["s"])
    assert hints_for(fill, 7)[1:] == ["The answer has 1 word.", "The answer begins with 'lis'."]
    two = make_prompt("closed", [], "Which disease?", answer="type 2 diabetes", answer_kind="fill", thinking=False,
                      source="t", source_ids=["s"])
    assert hints_for(two, 7)[1] == "The answer has 3 words."
    yn = make_prompt("closed", [], "Does X help?", answer="no", answer_kind="judgement", thinking=False, source="t",
                     source_ids=["s"])
    assert hints_for(yn, 7)[2] == "The answer is one word that begins with 'n'."


def test_task_specific_hints():
    c = make_prompt("conflict", [], "Which medicines could treat my hypertension? List them.", answer="amlodipine",
                    answer_kind="set", answer_set=["amlodipine"], thinking=False, source="t", source_ids=["s"],
                    allergy="lisinopril")
    h = hints_for(c, 1)
    assert h[0].startswith("Remember what the patient told you")
    assert h[1] == "The patient is allergic to lisinopril, so it must not be recommended."
    assert h[2] == "One of them is amlodipine."
    con = Constraint.make("length.max_words", n=50)
    inst = make_prompt("instruct", [], "Explain asthma.", answer="...", answer_kind="open", thinking=False,
                       source="t", source_ids=["s"], constraints=[con.to_json()])
    assert hints_for(inst, 1)[0] == f"Check every requirement before you answer: {con.instruction}"


def test_hints_are_deterministic_per_seed_and_prompt():
    p = _choice()
    assert hints_for(p, 11) == hints_for(dict(p), 11)
    # 4 options: 2 of the 3 wrong ones are ruled out, 3 possible pairs; over 20 seeds more than one appears
    assert len({hints_for(p, s)[1] for s in range(20)}) > 1


# ---------------------------------------------------------------------------------------------- band
def _rates(values: dict[str, tuple[int, int]]) -> dict[str, dict]:
    return {i: {"passes": k, "k": n, "pass_rate": k / n, "mean_reward": 0.1 * k, "best": 0}
            for i, (k, n) in values.items()}


def test_band_keeps_the_bounds_and_names_the_rest():
    ps = [{"id": f"p{i}", "meta": {"source": "x"}} for i in range(5)]
    # 5 samples each: 0/5, 3/5 (= low .6), 4/5 (= high .8), 5/5, 2/5
    rates = _rates({"p0": (0, 5), "p1": (3, 5), "p2": (4, 5), "p3": (5, 5), "p4": (2, 5)})
    out = band_filter(ps, rates, low=0.6, high=0.8)
    assert isinstance(out, GateOutcome)
    assert [p["id"] for p in out.kept] == ["p1", "p2"]
    assert [(r["item"], r["reason"]) for r in out.rejected] == [("p0", "too_hard"), ("p3", "too_easy"),
                                                                ("p4", "too_hard")]
    assert {r["gate"] for r in out.rejected} == {"band"}
    assert out.read == 5 == len(out.kept) + len(out.rejected)
    # every prompt, kept or not, records its rate
    assert ps[1]["meta"] == {"source": "x", "pass_rate": 0.6, "passes": 3, "k": 5, "sft_mean_reward": 0.1 * 3}
    assert ps[3]["meta"]["pass_rate"] == 1.0 and ps[3]["meta"]["passes"] == 5


def test_band_bounds_tolerate_float_noise():
    ps = [{"id": "p", "meta": {}}]
    # 0.1 + 0.2 = 0.30000000000000004 > 0.3 by float noise only: still inside [0.3, 0.3]
    rates = {"p": {"passes": 3, "k": 10, "pass_rate": 0.1 + 0.2, "mean_reward": 0.0, "best": 0}}
    assert len(band_filter(ps, rates, low=0.3, high=0.3).kept) == 1


def test_pass_rates_with_the_real_reward():
    reward = HybridReward()
    p, s = _choice(), _set()
    sampled = [
        # wrong (0), right (1), bare letter (rule 1, no "Answer:" line x.8), right but unsafe dose (0)
        ["Answer: A", "Answer: B", "B", "Take 2000 mg of acetaminophen now.\nAnswer: B"],
        # set F1: 1, 2/3 (P 1, R 1/2), 0; ties between equal fused values resolve to the first
        ["Answer: cough", "Answer: fever, cough", "Answer: rash", "Answer: cough, fever"],
    ]
    rates = pass_rates([p, s], sampled, reward)
    assert rates[p["id"]] == pytest.approx({"passes": 2, "k": 4, "pass_rate": 0.5,
                                            "mean_reward": (0 + 1 + 0.8 + 0) / 4, "best": 1})
    # cough alone: P 1 R .5 -> F1 2/3 (>= .5 passes); fever+cough 1; rash 0; cough+fever 1 -> 3 passes
    assert rates[s["id"]] == pytest.approx({"passes": 3, "k": 4, "pass_rate": 0.75,
                                            "mean_reward": (2 / 3 + 1 + 0 + 1) / 4, "best": 1})


# ---------------------------------------------------------------------------------------------- phase and split
def test_phase_of():
    assert phase_of(_choice(), 80) == "foundation"
    assert phase_of(_set(), 80) == "specialization"
    assert phase_of(_set("conflict"), 80) == "alignment"
    inst = make_prompt("instruct", [], "Explain asthma.", answer="...", answer_kind="open", thinking=False,
                       source="t", source_ids=["s"])
    assert phase_of(inst, 80) == "alignment"
    for task in ("tool", "open"):
        assert phase_of({**_choice(), "task": task}, 80) == "specialization"
    # a closed prompt is long-horizon from long_words words of history and query (the system prompt not counted)
    n = words(_choice())
    assert n == len(_choice()["messages"][-1]["content"].split())
    assert phase_of(_choice(), n) == "specialization" and phase_of(_choice(), n + 1) == "foundation"


def _many(task: str, n: int) -> list[dict]:
    return [make_prompt(task, [], f"Question {task} {i}?", answer=f"a{i}", answer_kind="fill", thinking=False,
                        source="t", source_ids=["s"]) for i in range(n)]


def test_split_holds_out_a_fraction_per_task_deterministically():
    prompts = _many("closed", 8) + _many("tool", 4) + _many("conflict", 1)
    _split(prompts, 0.25, seed=1)
    held = {t: sum(p["split"] == "heldout" for p in prompts if p["task"] == t) for t in ("closed", "tool", "conflict")}
    # round(.25 * 8) = 2, round(.25 * 4) = 1; a single prompt is never held out
    assert held == {"closed": 2, "tool": 1, "conflict": 0}
    again = _many("closed", 8) + _many("tool", 4) + _many("conflict", 1)
    _split(again, 0.25, seed=1)
    assert [p["split"] for p in again] == [p["split"] for p in prompts]
    assert {p["split"] for p in prompts} == {"train", "heldout"}


def test_cap_draws_at_most_n_and_rejects_the_rest():
    out = GateOutcome(read=5, kept=_many("closed", 5))
    ids = [p["id"] for p in out.kept]
    _cap(out, 2, seed=4)
    assert len(out.kept) == 2 and len(out.rejected) == 3
    assert {r["reason"] for r in out.rejected} == {"over_max"}
    # kept in their original order, rejected ones named; the draw is seeded
    assert [ids.index(p["id"]) for p in out.kept] == sorted(ids.index(p["id"]) for p in out.kept)
    assert {p["id"] for p in out.kept} | {r["item"] for r in out.rejected} == set(ids)
    again = _cap(GateOutcome(read=5, kept=_many("closed", 5)), 2, seed=4)
    assert [p["id"] for p in again.kept] == [p["id"] for p in out.kept]
    untouched = _cap(GateOutcome(read=2, kept=_many("closed", 2)), None, seed=4)
    assert len(untouched.kept) == 2 and untouched.rejected == []


def test_summary_of_counts_sources_tasks_phases_and_rates():
    a, b = _choice(), _set()
    a["meta"]["phase"], b["meta"]["phase"] = "foundation", "specialization"
    b["split"] = "heldout"
    b["rubric"] = [{"id": "r1"}, {"id": "r2"}]
    ledger = {"sft:kg_qa": GateOutcome(read=3, kept=[a]), "kg:multi": GateOutcome(read=1, kept=[b])}
    ledger["sft:kg_qa"].reject("band", "too_easy", "", "x")
    ledger["sft:kg_qa"].reject("select", "over_max", "", "y")
    built = RLBuild([a, b], ledger, [{"pass_rate": 0.6}, {"pass_rate": 0.6}, {"pass_rate": 0.8}], [{"id": "c"}],
                    [], {})
    s = summary_of(built)
    assert s["sources"]["sft:kg_qa"] == {"read": 3, "kept": 1, "rejected": 2,
                                         "rejected_by_gate": {"band": {"too_easy": 1}, "select": {"over_max": 1}}}
    assert s["prompts"] == 2 and s["by_task"] == {"closed": 1, "multi": 1}
    assert s["by_phase"] == {"foundation": 1, "specialization": 1} and s["by_split"] == {"heldout": 1, "train": 1}
    assert s["pass_rate_histogram"] == {"0.60": 2, "0.80": 1}
    assert s["candidates_sampled"] == 3 and s["decontamination_collisions"] == 1 and s["rubric_items"] == 2
