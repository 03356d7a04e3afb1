"""What RL scores and logs: the hybrid reward as TRL reward functions (groups by prompt, the decomposition as
zero-weight functions), the log callback (one global step across segments, entropy-bonus activations) and
the held-out reward with its intervals, on a fake policy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from eval.intervals import wilson
from tasks.reward.hybrid import COMPONENTS, HybridReward
from tasks.rl_synthesis.prompts import make_prompt
from tasks.rl_training.callbacks import RLLogCallback
from tasks.rl_training.config import HeldoutParams
from tasks.rl_training.heldout import _stats, heldout_reward
from tasks.rl_training.rewards import TRLRewards

OPTIONS = ["Insulin", "Metformin", "Warfarin", "Aspirin"]
CHOICE = make_prompt("closed", [], "Which drug is first-line for type 2 diabetes?\n"
                     + "\n".join(f"{c}. {o}" for c, o in zip("ABCD", OPTIONS)), answer="Metformin",
                     answer_kind="choice", options=OPTIONS, thinking=True, source="test", source_ids=["s1"])
SET = make_prompt("multi", [], "Name the main symptoms of influenza.", answer="fever, cough", answer_kind="set",
                  answer_set=["fever", "cough"], thinking=True, source="test", source_ids=["s2"])
BY_ID = {CHOICE["id"]: CHOICE, SET["id"]: SET}
# Both prompts ask to "think step by step"; a completion without <think> gets process 0 beside the rule score.
# closed/multi weights rule .7, process .15 (pairwise .15 dropped: no reference) -> .7/.85, .15/.85, so
# fused = (.7/.85 * sqrt(rule) + .15/.85 * 0)^2 = W2 * rule, W2 = (.7/.85)^2 = .6782
W2 = (0.7 / 0.85) ** 2


@pytest.fixture(scope="module")
def reward() -> HybridReward:
    return HybridReward()


# ---------------------------------------------------------------------------------------------- TRL rewards
def test_fused_scores_each_completion_per_prompt_group(reward):
    fns = TRLRewards(reward, BY_ID)
    rid = [CHOICE["id"], CHOICE["id"], SET["id"], SET["id"]]
    completions = ["Answer: B", "Answer: A", "Answer: fever, cough", "Answer: fever"]
    # no <think>: fused = W2 * rule (shaping 1): rule 1, 0, F1 1, F1 of {fever} = 2*1*.5/1.5 = 2/3
    out = fns.fused(prompts=[None] * 4, completions=completions, rid=rid)
    assert out == pytest.approx([W2, 0.0, W2, W2 * 2 / 3])
    # passes: right letter, full set, F1 2/3 >= .5 -> 3 of 4
    assert fns.passes == {"scored": 4, "passed": 3}
    assert [b.task for b in fns.last] == ["closed", "closed", "multi", "multi"]


def test_conversational_completions_are_read_from_their_first_message(reward):
    fns = TRLRewards(reward, BY_ID)
    chat = [[{"role": "assistant", "content": c}] for c in ("Answer: B", "Answer: A")]
    # W2 * rule 1, W2 * rule 0 (no <think>)
    assert fns.fused(prompts=[None] * 2, completions=chat, rid=[CHOICE["id"]] * 2) == pytest.approx([W2, 0.0])


def test_groups_are_corrected_to_the_partial_order_separately(reward):
    # a group of an unsafe correct answer and a wrong one: ranks 0 and 1, fused 0 and 0 -> consistent;
    # the set group: F1 2/3 (rank 2) fused W2 * 2/3 above F1 0 (rank 1) fused 0 -> consistent
    fns = TRLRewards(reward, BY_ID)
    rid = [CHOICE["id"]] * 2 + [SET["id"]] * 2
    comps = ["Take 2000 mg of acetaminophen now.\nAnswer: B", "Answer: A", "Answer: fever", "Answer: rash"]
    assert fns.fused(prompts=None, completions=comps, rid=rid) == pytest.approx([0.0, 0.0, W2 * 2 / 3, 0.0])
    assert [b.rank for b in fns.last] == [0, 1, 2, 1]


def test_component_functions_return_the_decomposition_with_nan(reward):
    fns = TRLRewards(reward, BY_ID)
    functions = fns.functions()
    assert [f.__name__ for f in functions] == ["fused", *COMPONENTS]
    assert fns.weights() == [1.0] + [0.0] * len(COMPONENTS) and len(fns.weights()) == len(functions)
    comps = ["<think>Metformin.</think>\nAnswer: B", "Answer: A", "Answer: fever, cough", "Answer: fever"]
    fns.fused(prompts=None, completions=comps, rid=[CHOICE["id"]] * 2 + [SET["id"]] * 2)
    values = {f.__name__: f(prompts=None, completions=comps) for f in functions[1:]}
    assert values["rule"] == pytest.approx([1.0, 0.0, 1.0, 2 / 3])
    assert values["shaping"] == [1.0] * 4 and values["safety"] == [1.0] * 4
    for name in ("instruct", "rubric", "pairwise"):
        assert all(math.isnan(v) for v in values[name]), name
    # both prompts ask to reason: process applies to every completion, 0 (not NaN) where the <think> is missing;
    # "<think>Metformin.</think>": no stage cue 0, concludes B (option text) as answered 1, one option of k = 3
    # weighed 1/3 -> (0 + 1 + 1/3) / 3 = 4/9
    assert values["process"][0] == pytest.approx(4 / 9) and values["process"][1:] == [0.0] * 3


def test_a_component_without_its_fused_batch_raises(reward):
    fns = TRLRewards(reward, BY_ID)
    rule = fns.functions()[1]
    with pytest.raises(RuntimeError, match="rule"):
        rule(prompts=None, completions=["Answer: B"])                  # nothing scored yet
    fns.fused(prompts=None, completions=["Answer: B", "Answer: A"], rid=[CHOICE["id"]] * 2)
    with pytest.raises(RuntimeError):
        rule(prompts=None, completions=["Answer: B", "Answer: A", "Answer: C"])
    assert rule(prompts=None, completions=["x", "y"]) == [1.0, 0.0]


# ---------------------------------------------------------------------------------------------- log callback
def test_log_callback_forwards_logs_at_the_global_step():
    calls, history = [], []
    cb = RLLogCallback(lambda metrics, step: calls.append((metrics, step)), offset=10, segment="r1-foundation",
                       threshold=0.6, history=history)
    state = SimpleNamespace(global_step=3)
    cb.on_log(None, state, None, logs={"entropy": 0.5, "rewards/fused/mean": 0.75, "loss": 0.25, "note": "text"})
    # step = offset 10 + global step 3; "/" -> "."; non-numeric values dropped; .5 <= .6: the bonus is active
    assert calls == [({"rl.entropy": 0.5, "rl.rewards.fused.mean": 0.75, "rl.loss": 0.25,
                       "rl.entropy.bonus_active": 1.0, "rl.entropy.activations": 1.0}, 13)]
    assert history == [{"step": 13, "segment": "r1-foundation", "entropy": 0.5, "rewards/fused/mean": 0.75,
                        "loss": 0.25, "entropy.bonus_active": 1.0, "entropy.activations": 1.0}]
    state.global_step = 4
    cb.on_log(None, state, None, logs={"entropy": 0.6})                    # at the threshold: active
    state.global_step = 5
    cb.on_log(None, state, None, logs={"entropy": 0.61})                   # above: not active
    assert [(c[1], c[0]["rl.entropy.bonus_active"], c[0]["rl.entropy.activations"]) for c in calls[1:]] == [
        (14, 1.0, 2.0), (15, 0.0, 2.0)]
    assert cb.activations == 2


def test_wall_clock_figures_go_to_the_log_not_the_history():
    calls, history = [], []
    cb = RLLogCallback(lambda m, s: calls.append((m, s)), offset=0, segment="r1-foundation", threshold=0.6,
                       history=history)
    cb.on_log(None, SimpleNamespace(global_step=2), None,
              logs={"entropy": 0.9, "step_time": 1.5, "train_samples_per_second": 3.0, "kl": 0.01})
    # the history (a stage output) must be identical on a re-run: no timings; the log keeps them
    assert history == [{"step": 2, "segment": "r1-foundation", "entropy": 0.9, "kl": 0.01,
                        "entropy.bonus_active": 0.0, "entropy.activations": 0.0}]
    assert calls[0][0]["rl.step_time"] == 1.5 and calls[0][0]["rl.train_samples_per_second"] == 3.0


def test_log_callback_ignores_logs_without_entropy():
    calls, history = [], []
    cb = RLLogCallback(lambda m, s: calls.append((m, s)), offset=0, segment="r1-rft", threshold=0.6, history=history)
    state = SimpleNamespace(global_step=1)
    cb.on_log(None, state, None, logs={"train_runtime": 12.0, "loss": 0.1})
    cb.on_log(None, state, None, logs=None)
    cb.on_log(None, state, None, logs={})
    assert calls == [] and history == [] and cb.activations == 0


def test_history_is_shared_across_segments():
    history = []
    for offset, segment in ((0, "r1-foundation"), (6, "r1-specialization")):
        cb = RLLogCallback(lambda m, s: None, offset=offset, segment=segment, threshold=0.6, history=history)
        cb.on_log(None, SimpleNamespace(global_step=6), None, logs={"entropy": 1.0})
    assert [(h["step"], h["segment"]) for h in history] == [(6, "r1-foundation"), (12, "r1-specialization")]


# ---------------------------------------------------------------------------------------------- held-out
def test_stats_mean_and_wilson_interval():
    s = _stats([0.2, 0.4, 0.9], [True, False, True])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.5)                             # (.2 + .4 + .9) / 3
    assert s["pass_rate"] == pytest.approx(2 / 3)
    # Wilson 2 of 3, z^2 = 3.841459: denom 1 + z^2/3 = 2.280486, centre (2/3 + z^2/6) / denom = .573083,
    # half z / denom * sqrt((2/9)/3 + z^2/36) = .859451 * .425184 = .365425 -> [.207658, .938508]
    assert s["pass_ci"] == pytest.approx([0.207658, 0.938508], abs=1e-5)
    assert s["pass_ci"] == pytest.approx(list(wilson(2, 3)))
    lo, hi = s["ci"]
    assert 0.2 <= lo <= 0.5 <= hi <= 0.9                               # a bootstrap of the mean stays in range


def test_stats_of_one_and_of_none():
    one = _stats([0.4], [False])
    assert one["mean"] == pytest.approx(0.4) and one["ci"] == [0.4, 0.4] and one["pass_rate"] == 0.0
    assert one["pass_ci"] == pytest.approx([0.0, 0.793451], abs=1e-5)   # Wilson 0 of 1: [0, z^2/(1+z^2)]
    assert _stats([], []) == {"n": 0, "mean": None, "ci": [None, None], "pass_rate": None, "pass_ci": [None, None]}


class FakePolicy:
    """render: the query of each prompt; sample: the canned completions of the prompt with that query."""

    def __init__(self, canned: list[tuple[dict, list[str]]]):
        self.by_query = {p["messages"][-1]["content"]: c for p, c in canned}
        self.calls: list[tuple] = []

    def render(self, messages, thinking):
        self.calls.append(("render", thinking))
        return [m[-1]["content"] for m in messages]

    def sample(self, texts, *, n, max_new_tokens, temperature, seed, batch_prompts, salt):
        self.calls.append(("sample", n, max_new_tokens, temperature, seed, batch_prompts, salt))
        return [self.by_query[t][:n] for t in texts]


def test_heldout_reward_per_task_summary(reward):
    wrong = make_prompt("closed", [], "Which drug is an anticoagulant?\n"
                        + "\n".join(f"{c}. {o}" for c, o in zip("ABCD", OPTIONS)), answer="Warfarin",
                        answer_kind="choice", options=OPTIONS, thinking=True, source="test", source_ids=["s3"])
    policy = FakePolicy([(CHOICE, ["Answer: B", "Answer: A"]), (wrong, ["Answer: A", "Answer: D"]),
                         (SET, ["Answer: fever", "Answer: rash"])])
    params = HeldoutParams(samples=2, temperature=0.0, max_new_tokens=32, batch_prompts=4)
    summary, rows = heldout_reward(policy, [CHOICE, wrong, SET], reward, params, seed=5, thinking=True)
    assert policy.calls == [("render", True), ("sample", 2, 32, 0.0, 5, 4, "heldout")]
    # per prompt: mean fused (W2 * rule, no <think>) and passed = half or more of its completions pass
    #   choice: W2, 0 -> W2/2, 1/2 pass -> passed; wrong: 0, 0 -> 0, not passed;
    #   set: F1 {fever} = 2/3 (passes), {rash} 0 -> W2 * (2/3 + 0) / 2 = W2/3, 1/2 pass -> passed
    assert [(r["id"], r["task"], r["passed"]) for r in rows] == [
        (CHOICE["id"], "closed", True), (wrong["id"], "closed", False), (SET["id"], "multi", True)]
    assert [r["fused"] for r in rows] == pytest.approx([W2 / 2, 0.0, W2 / 3])
    assert rows[0]["completion"] == "Answer: B"
    assert rows[2]["components"]["rule"] == pytest.approx(1 / 3) and rows[2]["components"]["process"] == 0.0
    # mean over prompts (W2/2 + 0 + W2/3) / 3 = 5 W2 / 18
    assert summary["n"] == 3 and summary["mean"] == pytest.approx(5 * W2 / 18)
    assert summary["pass_rate"] == pytest.approx(2 / 3)
    assert summary["pass_ci"] == pytest.approx(list(wilson(2, 3)))
    # closed: (W2/2 + 0) / 2 = W2/4
    assert summary["by_task"]["closed"]["n"] == 2 and summary["by_task"]["closed"]["mean"] == pytest.approx(W2 / 4)
    assert summary["by_task"]["closed"]["pass_rate"] == 0.5
    multi = summary["by_task"]["multi"]
    assert (multi["n"], multi["pass_rate"]) == (1, 1.0) and multi["mean"] == pytest.approx(W2 / 3)
    assert multi["ci"] == pytest.approx([W2 / 3, W2 / 3]) and multi["pass_ci"] == pytest.approx(list(wilson(1, 1)))
    # components averaged over rows where they apply: rule (.5 + 0 + 1/3) / 3; process applies to every row
    # (the prompts ask to reason) and is 0 everywhere (no completion reasons)
    assert summary["components"]["rule"] == pytest.approx((0.5 + 0 + 1 / 3) / 3)
    assert summary["components"]["safety"] == 1.0 and summary["components"]["process"] == 0.0


def test_heldout_reward_without_prompts(reward):
    policy = FakePolicy([])
    summary, rows = heldout_reward(policy, [], reward, HeldoutParams(), seed=0)
    assert policy.calls == [] and rows == [] and summary["n"] == 0 and summary["by_task"] == {} and summary["mean"] is None
