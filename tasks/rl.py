"""Stage `rl`: RL on the hybrid reward, in the RFT-enhanced iterative curriculum (paper §5.2.3).

Run:   python -m tasks.rl [key=value ...]   (e.g. iterations=3 grpo.steps_per_phase=20 paradigm=staged)
       torchrun --nproc_per_node 2 -m tasks.rl  (DeepSpeed ZeRO-2 as in `cpt`)
DVC:   dvc repro rl;  the paradigm comparison: python -m tasks.rl_paradigms (three DVC experiments)

What (tasks/rl_training/; policy optimisation is TRL's GRPOTrainer, fine-tuning TRL's SFTTrainer; no
hand-written RL loop):
- starts from data/sft/model on data/rl_data/prompts (train split; the held-out split is only scored);
- paradigm `iterative` (the paper's): each iteration an RFT phase (sample N per prompt from the current
  policy, keep what passes the reward gate, fine-tune on it), then the three-phase curriculum:
  Foundation (short closed prompts, stable rule reward), Specialization (long-horizon prompts
  upweighted), Alignment (instruction following and safety-relevant conflict scenarios, with general
  replay). `fusion` (all prompts mixed in one run) and `staged` (the phases once) are the baselines,
  on the same prompts and the same GRPO budget;
- the reward is tasks/reward (router, rule, instruct, rubric, pairwise, process, shaping, safety gate,
  fusion with the expert partial-order correction); every component is logged per step;
- the dynamic hint curriculum: hierarchical hints in a share of each phase's prompts, hardest first,
  their density decayed linearly over the iterations;
- entropy-aware regulation: TRL's adaptive entropy bonus, switched on when the policy's entropy falls to
  `entropy.threshold`; every activation logged;
- resumable (segment by segment, under .cache/rl_checkpoints/<run key>/).
RL here is text-only (the rl_data prompts are): image prompts and the paper's high-resolution upweighting
are not part of this stage.

Outputs (data/rl/): model/ (registered as medxiaohe-rl), iterations/<r>/model (each earlier iteration;
each is an eval checkpoint), plan.jsonl, steps.jsonl, rft.jsonl, heldout.jsonl, rejected/ (prompt lines that could not be read), metrics.json,
summary.json.

MLflow: rl.rewards.<component>.mean/std, rl.entropy, rl.entropy.bonus_active / activations, rl.hint.density
per segment, rl.rft.passed/failed_gate/duplicate/over_max, heldout.<checkpoint>.mean / pass_rate per task.
"""

from __future__ import annotations

from tasks.common.io import head_jsonl
from tasks.common.stage import Stage, StageContext, StageResult, main
from tasks.rl_training.config import RLConfig
from tasks.rl_training.run import train_rl
from tasks.training.mlflow_model import model_tags
from tasks.training.scheduled import cleanup_checkpoints


def _fmt(h: dict | None) -> str:
    if not h or h.get("mean") is None:
        return "n/a"
    lo, hi = h["ci"]
    return f"{h['mean']:.3f} [{lo:.3f}, {hi:.3f}]"


def run(cfg: RLConfig, ctx: StageContext) -> StageResult:
    done = train_rl(cfg, ctx.out, ctx.log_metrics, ctx.client)
    if ctx.out is None:
        return StageResult(summary=done.summary)
    tags = model_tags(ctx.tracker, ctx.out / "model", cfg.mlflow)
    cleanup_checkpoints(done.root, cfg.keep_checkpoints)
    s = done.summary
    held = s["heldout"]
    return StageResult(
        summary=s, metrics=done.metrics, tags=tags, samples=head_jsonl(ctx.out / "heldout.jsonl", 20),
        artifacts=[("metrics.json", "rl"), ("summary.json", "rl"), ("steps.jsonl", "rl"), ("heldout.jsonl", "rl"),
                   ("plan.jsonl", "rl")],
        line=f"paradigm={s['paradigm']} grpo steps={s['grpo_steps']} rft kept={s['rft']['kept']} "
             f"entropy activations={s['entropy_bonus_activations']} held-out reward "
             f"{_fmt(held.get('before'))} -> {_fmt(held.get('final'))}")


STAGE = Stage("rl", RLConfig, run, distributed=True, uses_llm=lambda cfg: cfg.uses_llm)

if __name__ == "__main__":
    main(STAGE)
