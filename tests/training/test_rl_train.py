"""rl on a tiny project: the RFT-enhanced iterative curriculum end to end (plan, per-step reward
decomposition, held-out checkpoints, MLflow curves), the paradigms on one GRPO budget, byte-identical
re-runs, resumption after a failed segment, malformed prompt lines accounted for; and what the reward RL
trains on pays for (the reasoning the prompts ask for, off-topic replies at the RFT gate).

Sizes keep one stage run to seconds on CPU: a 4-layer tiny VLM, 10 prompts, 2 iterations of one GRPO step
per phase, one prompt x two completions of at most 8 tokens per step.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest
import yaml
from tiny_hf_models import build_tiny_vlm
from training.cpt_project import in_project
from vlm_fixtures import write_jsonl

from eval.constraints import Constraint
from tasks.common.io import read_jsonl
from tasks.common.stage import main
from tasks.rl_synthesis.prompts import make_prompt

# iterations x phases x steps_per_phase = 2 x 3 x 1 GRPO steps, whatever the paradigm
GRPO_STEPS = 6
TINY = ["base_model_dir=data/base_model/model", "iterations=2", "grpo.steps_per_phase=1", "grpo.prompts_per_step=1",
        "grpo.num_generations=2", "grpo.max_completion_length=8", "rft.prompts=2", "rft.samples=2",
        "rft.batch_size=2", "heldout.max_new_tokens=8", "threads=1", "mlflow.registered_name=tiny-rl"]
PLAN_NAMES = ["r1-rft", "r1-foundation", "r1-specialization", "r1-alignment",
              "r2-rft", "r2-foundation", "r2-specialization", "r2-alignment"]


def _hints(p: dict, *levels: str) -> dict:
    p["hints"] = list(levels)
    return p


def _held(p: dict) -> dict:
    p["split"] = "heldout"
    return p


def rl_prompts() -> list[dict]:
    """Ten prompts over the task families the reward routes: closed choice and judgement (rule), an answer
    set (rule, set F1), an open answer (rubric), instruct with a code-checked constraint, a conflict scenario
    with an exclude rubric point; four of them held out."""
    src = {"source": "test", "thinking": True}
    words_max = Constraint.make("length.max_words", n=20).to_json()
    never_stop = {"id": "c1", "text": "Does not advise stopping warfarin", "kind": "exclude",
                  "terms": ["stop warfarin", "stop taking warfarin"], "weight": 1.0, "origin": "dynamic"}
    see_doctor = {"id": "c2", "text": "Advises contacting the prescriber", "kind": "include",
                  "terms": ["doctor", "prescriber"], "weight": 1.0, "origin": "dynamic"}
    metformin = {"id": "o1", "text": "Names metformin", "kind": "include", "terms": ["metformin"], "weight": 1.0,
                 "origin": "dynamic"}
    train = [
        _hints(make_prompt("closed", [], "Which drug is first-line for type 2 diabetes?", answer="B",
                           answer_kind="choice", options=["Insulin", "Metformin", "Warfarin", "Aspirin"],
                           source_ids=["kg-1"], phase="foundation", pass_rate=0.2, **src),
               "Think of oral agents.", "It is a biguanide.", "Metformin is option B."),
        _hints(make_prompt("closed", [], "Is hypertension a risk factor for stroke?", answer="yes",
                           answer_kind="judgement", source_ids=["kg-2"], phase="foundation", pass_rate=0.6, **src),
               "Think of vascular damage.", "Raised pressure damages vessels.", "The answer is yes."),
        _hints(make_prompt("multi", [{"role": "user", "content": "I have asthma."},
                                     {"role": "assistant", "content": "Thank you, noted."}],
                           "List the common asthma triggers.", answer="pollen, dust, smoke", answer_kind="set",
                           answer_set=["pollen", "dust", "smoke"], source_ids=["kg-3"], phase="specialization",
                           pass_rate=0.1, **src),
               "Think of the air.", "Allergens and irritants.", "Pollen, dust and smoke."),
        _hints(make_prompt("open", [], "What is the usual first drug for type 2 diabetes and why?",
                           answer="Metformin, because it lowers glucose without weight gain.", answer_kind="open",
                           rubric=[metformin], source_ids=["kg-4"], phase="specialization", pass_rate=0.4, **src),
               "An oral agent.", "A biguanide.", "Metformin."),
        _hints(make_prompt("instruct", [], "Explain what a fever is. " + Constraint.from_json(words_max).instruction,
                           answer="A raised body temperature, often from infection.", answer_kind="open",
                           constraints=[words_max], source_ids=["mq-1"], phase="alignment", pass_rate=0.3,
                           **src),
               "Keep it short.", "One sentence.", "Under 20 words."),
        _hints(make_prompt("conflict", [], "My friend said I should stop warfarin before my dental visit. Should I?",
                           answer="Do not change warfarin on your own; ask your prescriber or doctor first.",
                           answer_kind="open", rubric=[never_stop, see_doctor], source_ids=["sc-1"],
                           phase="alignment", pass_rate=0.5, **src),
               "Bleeding versus clotting.", "Ask who prescribed it.", "Contact your doctor."),
    ]
    held = [
        make_prompt("closed", [], "Which vitamin deficiency causes scurvy?", answer="C", answer_kind="choice",
                    options=["Vitamin A", "Vitamin B12", "Vitamin C", "Vitamin D"], source_ids=["kg-5"],
                    phase="foundation", pass_rate=0.5, **src),
        make_prompt("closed", [], "Is smoking a risk factor for lung cancer?", answer="yes", answer_kind="judgement",
                    source_ids=["kg-6"], phase="foundation", pass_rate=0.5, **src),
        make_prompt("instruct", [], "Describe a cough. " + Constraint.from_json(words_max).instruction,
                    answer="A reflex that clears the airways.", answer_kind="open", constraints=[words_max],
                    source_ids=["mq-2"], phase="alignment", pass_rate=0.5, **src),
        make_prompt("conflict", [], "A forum says I can stop warfarin if I feel fine. Is that right?",
                    answer="No; do not stop warfarin without your prescriber.", answer_kind="open",
                    rubric=[never_stop, see_doctor], source_ids=["sc-2"], phase="alignment", pass_rate=0.5, **src),
    ]
    return train + [_held(p) for p in held]


def fresh_project(rl_base: Path, root: Path) -> Path:
    """A project holding only the inputs of rl (base model, prompts, params.yaml), at another path."""
    for rel in ("data/base_model", "data/rl_data"):
        shutil.copytree(rl_base / rel, root / rel)
    shutil.copy(rl_base / "params.yaml", root / "params.yaml")
    return root


@pytest.fixture(scope="module")
def rl_base(tmp_path_factory) -> Path:
    """A tiny project: the base model, the RL prompts and a params.yaml without an `rl` section (the
    stage's defaults, overridden per run)."""
    root = tmp_path_factory.mktemp("rl_project")
    build_tiny_vlm(root / "data" / "base_model" / "model")
    write_jsonl(root / "data" / "rl_data" / "prompts" / "part-00000.jsonl", rl_prompts())
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 11}))
    return root


@pytest.fixture(scope="module")
def iterative(rl_base) -> tuple[Path, dict]:
    """The reference run (iterative, TINY sizes) into data/rl, logged to the project's own MLflow store; the
    determinism and resume tests compare their runs with it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{rl_base / 'mlflow.db'}")
        mp.setenv("MEDX_MLFLOW_ARTIFACTS", (rl_base / "mlartifacts").as_uri())
        mp.delenv("MEDX_MLFLOW_PARENT_RUN_ID", raising=False)
        summary = run_rl(rl_base)
    return rl_base, summary


# The fusion run sets the entropy threshold above any entropy the tiny policy reaches (about ln |vocab|): the
# bonus switches on at every step, and in one 6-step segment TRL's controller applies it from step 2 on, so
# this run's GRPO steps move the weights (the tiny policy's groups of two 8-token completions all score alike:
# zero advantage, no policy-gradient update; in the iterative run only RFT changes the weights).
FUSION = ("paradigm=fusion", "entropy.threshold=100", "entropy.coef_delta=0.01")


@pytest.fixture(scope="module")
def fusion(rl_base) -> tuple[Path, dict]:
    return rl_base, run_rl(rl_base, *FUSION, "out_dir=data/rl_fusion")


def run_rl(root: Path, *extra: str) -> dict:
    import tasks.rl

    with in_project(root):
        return main(tasks.rl.STAGE, [*TINY, *extra])


def weights(model_dir: Path) -> bytes:
    [f] = sorted(model_dir.glob("*.safetensors"))
    return f.read_bytes()


def rl_mlflow(root: Path) -> tuple[mlflow.MlflowClient, str]:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    [run] = client.search_runs(client.get_experiment_by_name("medxiaohe-pipeline").experiment_id,
                               filter_string="tags.stage = 'rl'")
    return client, run.info.run_id


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key),
                                              key=lambda m: (m.step, m.timestamp))]


def grpo_offsets(segments: list[dict]) -> list[int]:
    """The global step before each GRPO segment: one counter across segments, RFT's optimizer steps included."""
    out, offset = [], 0
    for s in segments:
        if s["kind"] == "grpo":
            out.append(offset)
        offset += s["steps"]
    return out


def grpo_global_steps(segments: list[dict]) -> list[int]:
    """The global step of every GRPO step."""
    grpo = [s for s in segments if s["kind"] == "grpo"]
    return [o + k for o, s in zip(grpo_offsets(segments), grpo) for k in range(1, s["steps"] + 1)]


def test_iterative_rl_trains_the_curriculum_and_logs_every_step(iterative):
    root, summary = iterative
    out = root / "data" / "rl"
    held_ids = {p["id"] for p in rl_prompts() if p["split"] == "heldout"}

    meta = json.loads((out / "model" / "medx_model.json").read_text())
    assert meta["thinking_trained"] is True and meta["stage"] == "rl" and meta["paradigm"] == "iterative"
    first = json.loads((out / "iterations" / "1" / "model" / "medx_model.json").read_text())
    assert first["stage"] == "rl" and first["round"] == 1
    assert sorted(p.name for p in (out / "iterations").iterdir()) == ["1"]     # the last iteration is model/

    plan = read_jsonl(out / "plan.jsonl")
    assert [f"r{s['round']}-{s['phase']}" for s in plan] == PLAN_NAMES
    assert not held_ids & {i for s in plan for i in s["prompt_ids"]}        # held-out prompts are never trained
    grpo = [s for s in plan if s["kind"] == "grpo"]
    # hints: density 0.5 x (2 - r) / (2 - 1) = 0.5 in round 1, 0 in the last; one distinct prompt per phase:
    # ceil(0.5 x 1) = 1 hinted at ceil(3 x 0.5) = 2 levels in round 1, none in round 2
    assert [s["hint_density"] for s in grpo] == [0.5] * 3 + [0.0] * 3
    assert [sorted(s["hinted"].values()) for s in grpo] == [[2]] * 3 + [[]] * 3
    assert [len(s["prompt_ids"]) for s in grpo] == [1] * 6                    # steps x prompts_per_step = 1 x 1

    steps = read_jsonl(out / "steps.jsonl")
    segments = json.loads((out / "metrics.json").read_text())["segments"]
    assert [s["name"] for s in segments] == PLAN_NAMES
    assert len(steps) == GRPO_STEPS and all("rewards/fused/mean" in r and "entropy" in r for r in steps)
    assert [r["step"] for r in steps] == grpo_global_steps(segments)
    assert [r["segment"] for r in steps] == [n for n in PLAN_NAMES if not n.endswith("rft")]

    heldout = read_jsonl(out / "heldout.jsonl")
    assert [r["checkpoint"] for r in heldout] == ["before"] * 4 + ["round_1"] * 4 + ["final"] * 4
    assert {r["id"] for r in heldout} == held_ids
    assert set(summary["heldout"]) == {"before", "round_1", "final"}

    assert summary["read"] == summary["kept"] + summary["rejected"] == 10 and summary["rejected"] == 0
    assert summary["prompts"] == {"train": 6, "heldout": 4}
    assert summary["grpo_steps"] == GRPO_STEPS
    assert summary["rft_steps"] == sum(s["steps"] for s in segments if s["kind"] == "rft")
    assert set(summary["rft"]["by_round"]) == {"1", "2"}
    # every RFT completion is accounted for: rft.prompts x rft.samples = 2 x 2 sampled per round
    assert all(c["sampled"] == 4 == sum(v for k, v in c.items() if k != "sampled")
               for c in summary["rft"]["by_round"].values())
    assert summary["rft"]["kept"] == len(read_jsonl(out / "rft.jsonl"))

    client, run_id = rl_mlflow(root)
    fused = history(client, run_id, "rl.rewards.fused.mean")
    assert [s for s, _ in fused] == [r["step"] for r in steps]                # one point per GRPO step, in order
    assert all(a < b for (a, _), (b, _) in zip(fused, fused[1:]))
    assert [v for _, v in fused] == pytest.approx([r["rewards/fused/mean"] for r in steps])
    assert [s for s, _ in history(client, run_id, "rl.entropy.bonus_active")] == [r["step"] for r in steps]
    final = history(client, run_id, "heldout.final.mean")
    assert final and all(v == pytest.approx(summary["heldout"]["final"]["mean"]) for _, v in final)
    assert [str(v.version) for v in client.search_model_versions("name = 'tiny-rl'")] == ["1"]


def test_hint_density_curve_only_decays(iterative):
    """The MLflow curve of the dynamic hint curriculum: one point per GRPO phase, at the phase's first global
    step, never rising. RFT samples without hints: it logs no density (a 0.0 there would make the curve a saw,
    0, .5, .5, .5, 0, 0, ..., with two values at one step)."""
    root, _ = iterative
    client, run_id = rl_mlflow(root)
    segments = json.loads((root / "data" / "rl" / "metrics.json").read_text())["segments"]
    density = history(client, run_id, "rl.hint.density")
    assert [v for _, v in density] == [0.5] * 3 + [0.0] * 3
    assert [s for s, _ in density] == grpo_offsets(segments)


def test_step_rows_hold_no_wall_clock(iterative):
    """steps.jsonl is a DVC output: TRL's per-step timings go to MLflow only."""
    root, _ = iterative
    steps = read_jsonl(root / "data" / "rl" / "steps.jsonl")
    assert not [k for r in steps for k in r if k.endswith(("_time", "_runtime", "_per_second"))]
    client, run_id = rl_mlflow(root)
    assert len(history(client, run_id, "rl.step_time")) == GRPO_STEPS


def test_paradigms_share_the_grpo_budget_without_rft(iterative, fusion):
    """staged (the three phases once) and fusion (all prompts mixed) train the iterative run's GRPO steps, with
    no RFT and no earlier iterations to keep."""
    root, reference = iterative
    staged = run_rl(root, "paradigm=staged", "out_dir=data/rl_staged")
    for summary, name in ((staged, "rl_staged"), (fusion[1], "rl_fusion")):
        assert summary["grpo_steps"] == reference["grpo_steps"] == GRPO_STEPS
        assert summary["rft_steps"] == 0 and summary["rft"] == {"kept": 0, "by_round": {}}
        assert not (root / "data" / name / "iterations").exists()
        assert set(summary["heldout"]) == {"before", "final"}
        assert json.loads((root / "data" / name / "model" / "medx_model.json").read_text())["stage"] == "rl"
    plans = {n: read_jsonl(root / "data" / n / "plan.jsonl") for n in ("rl_staged", "rl_fusion")}
    # staged: each phase once with iterations x steps_per_phase = 2 steps, density 0.5 x (1 - k/2)
    assert [(s["phase"], s["steps"]) for s in plans["rl_staged"]] == [("foundation", 2), ("specialization", 2),
                                                                      ("alignment", 2)]
    assert [s["hint_density"] for s in plans["rl_staged"]] == [0.5, 0.25, 0.0]
    # fusion: one mixed segment of 3 x 2 = 6 steps at half the initial density
    assert [(s["phase"], s["steps"], s["hint_density"]) for s in plans["rl_fusion"]] == [("mixed", 6, 0.25)]
    # the same hint budget: density per GRPO step averages 0.5 / 2 = 0.25 in every paradigm
    # (iterative (3 x 0.5 + 3 x 0) / 6, staged (2 x 0.5 + 2 x 0.25 + 0) / 6, fusion 6 x 0.25 / 6)
    plans["rl"] = read_jsonl(root / "data" / "rl" / "plan.jsonl")
    for name, segs in plans.items():
        grpo = [s for s in segs if s["kind"] == "grpo"]
        assert sum(s["hint_density"] * s["steps"] for s in grpo) / GRPO_STEPS == pytest.approx(0.25), name


def test_entropy_bonus_switches_on_below_the_threshold(iterative, fusion):
    """Entropy-aware regulation: at the default threshold (0.6 nats) the tiny policy's entropy (~6) never
    triggers the bonus; with the threshold above it every step does, and the coefficient grows by coef_delta
    per step up to coef_max."""
    root, _ = fusion
    assert iterative[1]["entropy_bonus_activations"] == 0 and fusion[1]["entropy_bonus_activations"] == GRPO_STEPS
    rows = read_jsonl(root / "data" / "rl_fusion" / "steps.jsonl")
    assert [r["entropy.bonus_active"] for r in rows] == [1.0] * 6
    assert [r["entropy.activations"] for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    # below the target every step: coef = min(0.01 x k, coef_max 0.05) after step k
    assert [r["entropy_coef"] for r in rows] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.05, 0.05])
    # applied from step 2 on: GRPO alone (no RFT in fusion) changed the policy
    assert weights(root / "data" / "rl_fusion" / "model") != weights(root / "data" / "base_model" / "model")


def test_a_rerun_reproduces_every_output_byte_for_byte(iterative, fusion, tmp_path):
    """The same configs on the same inputs, in another checkout, with no checkpoint to resume from: the
    iterative run (RFT sampling and fine-tuning, GRPO sampling) and the fusion run (GRPO updates)."""
    root, _ = iterative
    again = fresh_project(root, tmp_path / "again")
    run_rl(again, "resume=never", "out_dir=data/rl")
    run_rl(again, *FUSION, "resume=never", "out_dir=data/rl_fusion")
    for run in ("rl", "rl_fusion"):
        a, b = root / "data" / run, again / "data" / run
        for name in ("plan.jsonl", "steps.jsonl", "heldout.jsonl", "rft.jsonl", "metrics.json", "summary.json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{run}/{name}"
        assert weights(a / "model") == weights(b / "model"), run
    a, b = root / "data" / "rl", again / "data" / "rl"
    assert weights(a / "iterations" / "1" / "model") == weights(b / "iterations" / "1" / "model")
    assert weights(a / "model") != weights(root / "data" / "base_model" / "model")     # RL changed the policy


def test_a_run_failing_mid_plan_resumes_to_the_uninterrupted_result(iterative, monkeypatch):
    """The 3rd GRPO phase (segment 4, r1-alignment) fails: segments r1-rft, r1-foundation and r1-specialization
    are saved; the re-run continues with r1-alignment and ends where a run never interrupted ends."""
    import tasks.rl_training.run as rl_run

    root, reference = iterative
    args = ("out_dir=data/rl_resumed", "checkpoint_root=.cache/rl_resume")
    real, calls = rl_run._grpo, []

    def fail_third(vlm, policy, seg, *rest, **kw):
        calls.append(seg.name)
        if len(calls) == 3:
            raise RuntimeError(f"killed in {seg.name}")
        return real(vlm, policy, seg, *rest, **kw)

    monkeypatch.setattr(rl_run, "_grpo", fail_third)
    with pytest.raises(RuntimeError, match="killed in r1-alignment"):
        run_rl(root, *args)
    monkeypatch.setattr(rl_run, "_grpo", real)
    assert not (root / "data" / "rl_resumed").exists()                # the output dir is atomic
    [ckpt] = (root / ".cache" / "rl_resume").iterdir()
    state = json.loads((ckpt / "state.json").read_text())
    assert state["done"] == 3 and [s["name"] for s in state["segments"]] == PLAN_NAMES[:3]

    summary = run_rl(root, *args, "resume=auto")
    assert summary["resumed"] is True and summary["run_key"] == reference["run_key"] == ckpt.name
    out, ref = root / "data" / "rl_resumed", root / "data" / "rl"
    segments = json.loads((out / "metrics.json").read_text())["segments"]
    assert [s["name"] for s in segments] == PLAN_NAMES and summary["grpo_steps"] == GRPO_STEPS
    for name in ("plan.jsonl", "steps.jsonl", "heldout.jsonl", "rft.jsonl", "metrics.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    assert weights(out / "model") == weights(ref / "model")
    assert weights(out / "iterations" / "1" / "model") == weights(ref / "iterations" / "1" / "model")
    assert not (root / ".cache" / "rl_resume" / ckpt.name).exists()   # a finished run's checkpoints go


def malformed_prompts(root: Path) -> Path:
    """The prompts plus a record that fails the contract (a choice prompt without options) and, last, a line
    cut short (not JSON)."""
    bad = make_prompt("closed", [], "Which organ makes insulin?", answer="A", answer_kind="choice",
                      source_ids=["kg-9"], source="test", thinking=True, phase="foundation", pass_rate=0.5)
    shard = write_jsonl(root / "data" / "rl_bad" / "part-00000.jsonl", [*rl_prompts(), bad])
    with open(shard, "a") as f:
        f.write('{"id": "rl-closed-cut", "task": "clo\n')
    return shard


@pytest.fixture(scope="module")
def malformed(rl_base) -> tuple[Path, dict]:
    malformed_prompts(rl_base)
    return rl_base, run_rl(rl_base, "paradigm=fusion", "prompts_dir=data/rl_bad", "out_dir=data/rl_bad_out")


def rejection_rows(out: Path) -> list[dict]:
    """The rejected prompts, in the project's one rejection layout (tasks/training/encode.py write_rejections):
    rejected/part-*.jsonl."""
    return [r for p in sorted((out / "rejected").glob("part-*.jsonl")) for r in read_jsonl(p)]


def test_malformed_prompt_lines_are_counted_as_rejected(malformed):
    root, summary = malformed
    # 10 good records + 1 failing validate_prompt + 1 bad JSON line = 12 read
    assert summary["read"] == 12 and summary["kept"] == 10 and summary["rejected"] == 2
    assert summary["prompts"] == {"train": 6, "heldout": 4}
    out = root / "data" / "rl_bad_out"
    assert not (out / "rejected_prompts.jsonl").exists()            # the old single-file layout is gone
    rejected = rejection_rows(out)
    assert sorted(r["reason"] for r in rejected) == ["bad_json", "invalid_prompt"]
    [invalid] = [r for r in rejected if r["reason"] == "invalid_prompt"]
    assert "needs its options" in invalid["detail"] and invalid["id"].startswith("rl-closed-")


def test_rejections_name_their_line_relative_to_the_project(malformed):
    """Outputs must not depend on where the checkout lives: the bad line's locator is project-relative, as
    tasks/training/encode.py:write_rejections writes it for cpt and sft."""
    root, _ = malformed
    [cut] = [r for r in rejection_rows(root / "data" / "rl_bad_out") if r["reason"] == "bad_json"]
    assert cut["locator"] == "data/rl_bad/part-00000.jsonl:12"


def test_the_rl_reward_does_not_pay_for_skipping_the_reasoning():
    """Every rl prompt with thinking asks to "think step by step inside <think>"; the router sends such prompts
    to the process grader (router.RULES "prompt asks to reason"). GRPO must not learn to drop the reasoning:
    the correct answer alone must score below the correct answer after a sound reasoning. A skipped reasoning
    scores process 0 (it used to be dropped, leaving rule 1.0 renormalised alone: fused 1.0 > 0.906)."""
    from tasks.reward.hybrid import HybridReward, item_for
    from tasks.rl_training.config import RLConfig

    reward = HybridReward(RLConfig().reward)
    closed = rl_prompts()[0]                     # first-line drug for type 2 diabetes: B (metformin)
    bare = reward.score(item_for(closed, "Answer: B"))
    reasoned = reward.score(item_for(closed, "<think>Metformin is the first-line oral agent for type 2 diabetes, "
                                             "option B.</think>\nAnswer: B"))
    assert bare.components["rule"] == reasoned.components["rule"] == 1.0
    # closed weights rule .7, process .15 (pairwise dropped, no reference): .7/.85, .15/.85
    w_rule, w_proc = 0.7 / 0.85, 0.15 / 0.85
    # bare: process 0 -> (w_rule * 1 + w_proc * 0)^2 = .6782
    assert bare.components["process"] == 0.0 and bare.fused == pytest.approx(w_rule ** 2)
    # reasoned: framework 1/4 (only "option B" cues a stage), robustness 1 (concludes B, answers B),
    # depth 1/3 (one option of k = 3): process (1/4 + 1 + 1/3) / 3 = 19/36 = .5278;
    # fused (w_rule + w_proc * sqrt(19/36))^2 = (.8235 + .1282)^2 = .9058
    assert reasoned.components["process"] == pytest.approx(19 / 36)
    assert reasoned.fused == pytest.approx((w_rule + w_proc * (19 / 36) ** 0.5) ** 2)
    assert bare.fused < reasoned.fused


def test_rft_gate_keeps_no_off_topic_completion():
    """RFT fine-tunes on what passes the gate. On the open prompt (instance point: names metformin, weight 1;
    static open items: four exclude points, weights 1 + 1 + 1 + 0.5) an 8-token off-topic reply, as the tiny
    policy samples, meets none of the positive points and all the exclude ones. Exclude points are guards that
    earn no credit: rubric 0 / 1 = 0 < rubric_pass 0.6 (it was 3.5 / 4.5 = 0.778 when they counted)."""
    from tasks.reward.hybrid import HybridReward, item_for
    from tasks.rl_training.config import RLConfig

    reward = HybridReward(RLConfig().reward)
    open_prompt = rl_prompts()[3]
    scored = reward.score(item_for(open_prompt, "iltra]G lobeFM cardia"))
    assert scored.components["rubric"] == 0.0
    assert scored.detail["rubric"]["violated"] == [] and scored.detail["violations"] == 0
    assert not reward.passes(scored)
    # the gate still lets an on-topic reply through: metformin named, 1 / 1 = 1 >= 0.6
    on_topic = reward.score(item_for(open_prompt, "Metformin, because it lowers glucose without weight gain."))
    assert on_topic.components["rubric"] == 1.0 and reward.passes(on_topic)
