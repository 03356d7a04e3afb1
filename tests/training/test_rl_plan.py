"""The RL training plan: segments per paradigm on one GRPO budget, the phase pools and their weights, the
hint curriculum (density decay, who gets hints, how deep) and how a hint is put into a prompt."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest

from tasks.rl_training.config import RLConfig
from tasks.rl_training.plan import assign_hints, hint_levels, plan, with_hint

SYSTEM = {"role": "system", "content": "You are a medical expert."}


def _p(pid: str, task: str, phase: str, pass_rate: float, n_words: int = 6) -> dict:
    return {"id": pid, "task": task, "split": "train",
            "messages": [SYSTEM, {"role": "user", "content": " ".join(["word"] * n_words)}],
            "hints": [f"{pid}-h1", f"{pid}-h2", f"{pid}-h3"], "meta": {"phase": phase, "pass_rate": pass_rate}}


PROMPTS = [
    _p("f1", "closed", "foundation", 0.2), _p("f2", "closed", "foundation", 0.4),
    _p("f3", "closed", "foundation", 0.6), _p("f4", "closed", "foundation", 0.8),
    _p("s1", "tool", "specialization", 0.4, n_words=90),                   # long: >= long_words (80)
    _p("s2", "multi", "specialization", 0.6), _p("s3", "open", "specialization", 0.2),
    _p("a1", "conflict", "alignment", 0.6), _p("a2", "instruct", "alignment", 0.4),
    _p("a3", "instruct", "alignment", 0.8),
]
PHASE = {p["id"]: p["meta"]["phase"] for p in PROMPTS}


def _cfg(paradigm: str = "iterative", iterations: int = 2, steps: int = 3, per_step: int = 2, density: float = 0.5,
          **kw) -> RLConfig:
    cfg = RLConfig(paradigm=paradigm, iterations=iterations, seed=7)
    cfg.grpo.steps_per_phase, cfg.grpo.prompts_per_step = steps, per_step
    cfg.hints.density = density
    cfg.rft.prompts = 4
    for k, v in kw.items():
        setattr(cfg.rft if k == "rft_enabled" else cfg, "enabled" if k == "rft_enabled" else k, v)
    return cfg


def test_iterative_rounds_of_rft_and_three_phases():
    segs = plan(_cfg(), PROMPTS)
    # 2 rounds x (RFT + foundation + specialization + alignment) = 8 segments
    assert [(s.round, s.kind, s.phase) for s in segs] == [
        (r, k, ph) for r in (1, 2) for k, ph in
        (("rft", "rft"), ("grpo", "foundation"), ("grpo", "specialization"), ("grpo", "alignment"))]
    assert [s.name for s in segs[:2]] == ["r1-rft", "r1-foundation"]
    for s in segs:
        if s.kind == "grpo":
            assert s.steps == 3 and len(s.prompt_ids) == 3 * 2
        else:
            # RFT: 4 distinct training prompts in id order, no GRPO steps, no hints
            assert s.steps == 0 and s.hint_density == 0.0 and s.hinted == {}
            assert len(set(s.prompt_ids)) == 4 and s.prompt_ids == sorted(s.prompt_ids)
            assert set(s.prompt_ids) <= set(PHASE)


@pytest.mark.parametrize("iterations", [1, 2, 3])
def test_paradigms_share_the_grpo_budget(iterations):
    # 3 phases x iterations x steps_per_phase (3)
    budget = 3 * iterations * 3
    for paradigm, n_segments in (("iterative", 4 * iterations), ("staged", 3), ("fusion", 1)):
        segs = plan(_cfg(paradigm, iterations=iterations), PROMPTS)
        grpo = [s for s in segs if s.kind == "grpo"]
        assert len(segs) == n_segments, paradigm
        assert sum(s.steps for s in grpo) == budget, paradigm
        assert sum(len(s.prompt_ids) for s in grpo) == budget * 2, paradigm
    staged = plan(_cfg("staged", iterations=iterations), PROMPTS)
    assert [s.phase for s in staged] == ["foundation", "specialization", "alignment"]
    assert {s.steps for s in staged} == {3 * iterations}
    assert [s.phase for s in plan(_cfg("fusion", iterations=iterations), PROMPTS)] == ["mixed"]


def test_rft_can_be_switched_off_and_unknown_paradigm_fails():
    segs = plan(_cfg(rft_enabled=False), PROMPTS)
    assert [s.kind for s in segs] == ["grpo"] * 6
    with pytest.raises(ValueError, match="paradigm"):
        plan(_cfg("chaos"), PROMPTS)


def test_plan_is_seeded():
    a, b = plan(_cfg(), PROMPTS), plan(_cfg(), PROMPTS)
    assert [(s.prompt_ids, s.hinted) for s in a] == [(s.prompt_ids, s.hinted) for s in b]
    other = _cfg()
    other.seed = 8
    assert [s.prompt_ids for s in plan(other, PROMPTS)] != [s.prompt_ids for s in a]


def test_hint_density_decays_over_rounds():
    # iterative: round r of I gets d0 * (I - r) / (I - 1); d0 = .5
    for iterations, expected in ((2, [0.5, 0.0]), (4, [0.5, 1 / 3, 1 / 6, 0.0])):
        segs = [s for s in plan(_cfg(iterations=iterations), PROMPTS) if s.kind == "grpo"]
        by_round = {s.round: s.hint_density for s in segs}
        assert [by_round[r] for r in range(1, iterations + 1)] == pytest.approx(expected)
        assert all(a > b for a, b in zip(expected, expected[1:]))
        # every phase of a round has the round's density
        assert all(s.hint_density == by_round[s.round] for s in segs)
    # one iteration: the mean of the decay throughout; staged: d0 * (1 - k / 2) for phase k; fusion: d0 / 2
    assert {s.hint_density for s in plan(_cfg(iterations=1), PROMPTS) if s.kind == "grpo"} == {0.25}
    assert [s.hint_density for s in plan(_cfg("staged"), PROMPTS)] == pytest.approx([0.5, 0.25, 0.0])
    assert [s.hint_density for s in plan(_cfg("fusion"), PROMPTS)] == pytest.approx([0.25])


def test_hint_density_reaches_zero_and_averages_to_the_fusion_density():
    d0 = 0.5
    it = [s for s in plan(_cfg(iterations=2, density=d0), PROMPTS) if s.kind == "grpo"]
    rounds = sorted({s.round for s in it})
    per_round = [next(s.hint_density for s in it if s.round == r) for r in rounds]
    assert per_round[-1] == 0.0 and all(s.hinted == {} for s in it if s.round == rounds[-1])
    fusion = plan(_cfg("fusion", density=d0), PROMPTS)[0].hint_density
    assert sum(per_round) / len(per_round) == pytest.approx(fusion)
    staged = [s.hint_density for s in plan(_cfg("staged", density=d0), PROMPTS)]
    assert sum(staged) / len(staged) == pytest.approx(fusion)


@pytest.mark.parametrize("density, levels", [(-0.1, 0), (0.0, 0), (0.1, 1), (1 / 3, 1), (0.34, 2), (0.5, 2),
                                             (2 / 3, 2), (0.7, 3), (1.0, 3), (1.5, 3)])
def test_hint_levels(density, levels):
    # 0 without hints, else ceil(3 * density) clipped to 1..3
    assert hint_levels(density) == levels


def test_assign_hints_lowest_pass_rate_first():
    by_id = {p["id"]: p for p in PROMPTS}
    ids = ["f4", "f1", "f1", "s1", "f3", "a2", "f4"]          # 5 distinct: f4 .8, f1 .2, s1 .4, f3 .6, a2 .4
    # density .5: ceil(.5 * 5) = 3 hinted, the lowest rates (ties by id): f1 .2, a2 .4, s1 .4; 2 levels each
    assert assign_hints(ids, by_id, 0.5) == {"f1": 2, "a2": 2, "s1": 2}
    # density .2: ceil(1.0) = 1 -> f1 with ceil(.6) = 1 level
    assert assign_hints(ids, by_id, 0.2) == {"f1": 1}
    assert assign_hints(ids, by_id, 0.0) == {}
    assert assign_hints(ids, by_id, 1.0) == dict.fromkeys(["f1", "a2", "s1", "f3", "f4"], 3)
    # a prompt without a pass rate counts as the hardest (0)
    unknown = {**by_id, "x": {"id": "x", "meta": {}}}
    assert list(assign_hints(["f1", "x"], unknown, 0.5)) == ["x"]


def test_segments_hint_their_own_prompts():
    for s in plan(_cfg(iterations=3), PROMPTS):
        if s.kind != "grpo":
            continue
        distinct = set(s.prompt_ids)
        assert set(s.hinted) <= distinct
        assert len(s.hinted) == (math.ceil(s.hint_density * len(distinct)) if s.hint_density > 0 else 0)
        assert set(s.hinted.values()) <= {hint_levels(s.hint_density)}


def test_with_hint_appends_to_the_last_user_turn_only():
    p = copy.deepcopy(PROMPTS[0])
    p["messages"].insert(1, {"role": "user", "content": "earlier"})
    before = copy.deepcopy(p)
    msgs = with_hint(p, 2)
    assert msgs[:-1] == p["messages"][:-1]
    assert msgs[-1] == {"role": "user", "content": p["messages"][-1]["content"] + "\nHint: f1-h1 f1-h2"}
    assert p == before                                       # the prompt record is not modified
    assert with_hint(p, 0) == p["messages"] and with_hint({**p, "hints": []}, 3) == p["messages"]
    assert with_hint(p, 5)[-1]["content"].endswith("\nHint: f1-h1 f1-h2 f1-h3")


def test_phases_draw_from_their_own_pool():
    for s in plan(_cfg(iterations=2, steps=20), PROMPTS):
        if s.phase in ("foundation", "specialization"):
            assert {PHASE[i] for i in s.prompt_ids} == {s.phase}
        elif s.phase == "alignment":
            # alignment replays the other phases as well
            assert {PHASE[i] for i in s.prompt_ids} == {"alignment", "foundation", "specialization"}
    mixed = plan(_cfg("fusion", steps=20), PROMPTS)[0]
    assert set(mixed.prompt_ids) == set(PHASE)


def test_a_phase_without_prompts_falls_back_to_all():
    only_foundation = [p for p in PROMPTS if PHASE[p["id"]] == "foundation"]
    segs = plan(_cfg("staged", iterations=1, steps=10), only_foundation)
    # 10 steps x 2 prompts; specialization and alignment have no own prompts and draw the foundation ones
    for s in segs:
        assert set(s.prompt_ids) == {p["id"] for p in only_foundation} and len(s.prompt_ids) == 20


def test_curriculum_weights_in_expectation():
    # staged, 1 iteration: each phase draws 2500 steps x 2 prompts = 5000 ids (seeded)
    cfg = _cfg("staged", iterations=1, steps=2500)
    segs = {s.phase: s for s in plan(cfg, PROMPTS)}
    n = 5000
    align = Counter(segs["alignment"].prompt_ids)
    # alignment: own prompts weighted conflict 2 (safety_weight), instruct 1 each -> 2/4, 1/4, 1/4 of the
    # 1 - replay_share = .7; replay .3 over the 7 other prompts
    assert align["a1"] / n == pytest.approx(0.35, abs=0.03)
    ratio = align["a1"] / ((align["a2"] + align["a3"]) / 2)
    assert ratio == pytest.approx(cfg.curriculum.safety_weight, abs=0.25)
    replay = sum(v for k, v in align.items() if PHASE[k] != "alignment") / n
    assert replay == pytest.approx(cfg.curriculum.replay_share, abs=0.03)
    # specialization: the long prompt (s1, 90 words) long_weight = 2 times as often as each short one
    spec = Counter(segs["specialization"].prompt_ids)
    assert spec["s1"] / n == pytest.approx(0.5, abs=0.03)
    assert spec["s1"] / ((spec["s2"] + spec["s3"]) / 2) == pytest.approx(cfg.curriculum.long_weight, abs=0.25)
    # foundation: uniform, 1/4 each
    assert all(v / n == pytest.approx(0.25, abs=0.03) for v in Counter(segs["foundation"].prompt_ids).values())
