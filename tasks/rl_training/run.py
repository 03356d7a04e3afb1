"""What the `rl` stage does, given its config (tasks/rl.py is the stage and says how to launch it).

    outcome = train_rl(cfg, out_dir_or_None, log_metrics, client)

1. the prompts (data/rl_data/prompts): the train split is trained on, the held-out split only scored;
2. the plan of cfg.paradigm (plan.py): segments, each an RFT phase (rft.py) or a GRPO phase (TRL's
   GRPOTrainer with the hybrid reward as reward functions, rewards.py), hints per phase;
3. the held-out reward before RL and after every iteration (heldout.py), with intervals;
4. resumable: after every segment the policy and the run state are saved under
   .cache/rl_checkpoints/<run key>/ (the key hashes the config, the prompts and the starting model); a
   killed run continues with the next segment;
5. outputs: model/ (the final policy, `thinking_trained: true`), iterations/<r>/model for every earlier
   iteration of the iterative paradigm (each joins the eval progression), plan.jsonl, steps.jsonl
   (every GRPO log line: reward decomposition, entropy, bonus activations), rft.jsonl (the kept
   completions), heldout.jsonl (per prompt and checkpoint), metrics.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path

from models.checkpoint import checkpoint_digest, write_meta
from tasks.common.config import resolve
from tasks.common.io import write_json, write_jsonl
from tasks.reward.hybrid import HybridReward
from tasks.rl_synthesis.prompts import validate_prompt
from tasks.rl_training.callbacks import RLLogCallback
from tasks.rl_training.config import RLConfig
from tasks.rl_training.heldout import heldout_reward
from tasks.rl_training.plan import Segment, plan, with_hint
from tasks.rl_training.policy import Policy
from tasks.rl_training.rewards import TRLRewards
from tasks.rl_training.rft import fine_tune, rejection_sample
from tasks.training.checkpoints import run_key
from tasks.training.device import world
from tasks.training.encode import write_rejections
from tasks.training.model_io import load_model
from tasks.training.splits import read_samples

NOT_IN_KEY = ("out_dir", "checkpoint_root", "resume", "keep_checkpoints", "mlflow", "threads")


@dataclasses.dataclass
class RLOutcome:
    summary: dict
    metrics: dict
    root: Path


def read_prompts(prompts_dir: str | Path) -> tuple[list[dict], list[dict]]:
    rows, bad = read_samples(prompts_dir)
    prompts = []
    for r in rows:
        try:
            prompts.append(validate_prompt(r))
        except ValueError as e:
            bad.append({"reason": "invalid_prompt", "detail": str(e)[:300], "id": r.get("id")})
    return prompts, bad


def _fingerprint(prompts: list[dict]) -> str:
    return hashlib.sha256(json.dumps(prompts, sort_keys=True).encode()).hexdigest()[:16]


def save_policy(vlm, out: Path, **meta) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    vlm.model.save_pretrained(tmp)
    vlm.processor.save_pretrained(tmp)
    write_meta(tmp, variant=vlm.variant, budget=vlm.budget, factor=vlm.factor, tokens=vlm.tokens,
               extra={"stage": "rl", "thinking_trained": True, **meta})
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


class _State:
    """The run's progress, saved after every segment next to the policy it produced."""

    def __init__(self, root: Path):
        self.root, self.path = root, root / "state.json"
        self.data = {"done": 0, "offset": 0, "segments": [], "steps": [], "rft": [], "heldout": {},
                     "heldout_rows": []}

    def load(self) -> bool:
        if self.path.is_file() and (self.root / "model" / "config.json").is_file():
            self.data = json.loads(self.path.read_text())
            return True
        return False

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, sort_keys=True))
        tmp.replace(self.path)


def _grpo(vlm, policy: Policy, seg: Segment, by_id: dict, reward: HybridReward, cfg: RLConfig, state: _State,
          log_metrics, seed: int, workdir: Path) -> dict:
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    g = cfg.grpo
    ids = sorted(set(seg.prompt_ids))
    text = dict(zip(ids, policy.render([with_hint(by_id[i], seg.hinted.get(i, 0)) for i in ids],
                                       thinking=cfg.thinking)))
    ds = Dataset.from_list([{"prompt": text[i], "rid": i} for i in seg.prompt_ids])
    fns = TRLRewards(reward, by_id)
    cuda = torch.cuda.is_available()
    args = GRPOConfig(output_dir=str(workdir), max_steps=seg.steps, per_device_train_batch_size=g.prompts_per_step
                      * g.num_generations, num_generations=g.num_generations,
                      max_completion_length=g.max_completion_length, temperature=g.temperature,
                      learning_rate=g.learning_rate, lr_scheduler_type="constant", beta=g.beta, epsilon=g.epsilon,
                      loss_type=g.loss_type, scale_rewards=g.scale_rewards, max_grad_norm=g.max_grad_norm,
                      reward_weights=fns.weights(), logging_steps=1, save_strategy="no", report_to=[], seed=seed,
                      use_cpu=not cuda, bf16=cuda, disable_tqdm=True, dataloader_num_workers=0,
                      use_adaptive_entropy=True, entropy_target=cfg.entropy.threshold, entropy_coef=0.0,
                      entropy_coef_delta=cfg.entropy.coef_delta, entropy_coef_max=cfg.entropy.coef_max,
                      deepspeed=cfg_deepspeed(cfg))
    cb = RLLogCallback(log_metrics, state.data["offset"], seg.name, cfg.entropy.threshold, state.data["steps"])
    trainer = GRPOTrainer(model=vlm.model, reward_funcs=fns.functions(), args=args, train_dataset=ds,
                          processing_class=policy.tokenizer, callbacks=[cb])
    trainer.train()
    rows = [r for r in state.data["steps"] if r["segment"] == seg.name]
    mean = (lambda k: sum(r[k] for r in rows if k in r) / max(1, sum(k in r for r in rows)))
    return {"steps": trainer.state.global_step, "reward_mean": mean("rewards/fused/mean"),
            "entropy_mean": mean("entropy"), "bonus_activations": cb.activations,
            "gate_passed": fns.passes["passed"], "gate_scored": fns.passes["scored"],
            "hinted_prompts": len(seg.hinted), "distinct_prompts": len(ids)}


def cfg_deepspeed(cfg: RLConfig) -> str | None:
    return str(resolve(cfg.deepspeed)) if world()[1] > 1 and cfg.deepspeed else None


def train_rl(cfg: RLConfig, out: Path | None, log_metrics, client=None, log=print) -> RLOutcome:
    started = time.perf_counter()
    prompts, bad = read_prompts(resolve(cfg.prompts_dir))
    train = [p for p in prompts if p["split"] == "train"]
    held = [p for p in prompts if p["split"] == "heldout"]
    if not train:
        raise ValueError(f"{cfg.prompts_dir} holds no training prompts: run the rl_data stage first")
    by_id = {p["id"]: p for p in prompts}
    segments = plan(cfg, train)
    base_dir = resolve(cfg.base_model_dir)
    identity = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    key = run_key({**identity, "prompts": _fingerprint(prompts), "base": checkpoint_digest(base_dir),
                   "world": world()[1]})
    root = resolve(cfg.checkpoint_root) / key
    root.mkdir(parents=True, exist_ok=True)
    state = _State(root)
    resumed = cfg.resume == "auto" and state.load()
    vlm = load_model(root / "model" if resumed else base_dir)
    policy = Policy(vlm, threads=cfg.threads)
    reward = HybridReward(cfg.reward, client)
    if resumed:
        log(f"rl: resuming run {key} after segment {state.data['done']}/{len(segments)}")
    if "before" not in state.data["heldout"]:
        summary, rows = heldout_reward(policy, held, reward, cfg.heldout, cfg.seed, cfg.thinking)
        state.data["heldout"]["before"] = summary
        state.data["heldout_rows"] += [{"checkpoint": "before", **r} for r in rows]
        log_metrics(_flat("heldout.before", summary), 0)
    last_round = max(s.round for s in segments)
    for idx, seg in enumerate(segments):
        if idx < state.data["done"]:
            continue
        t = time.perf_counter()
        log(f"rl: segment {idx + 1}/{len(segments)} {seg.name} ({seg.kind}, {seg.steps} steps, "
            f"hint density {seg.hint_density:.2f})")
        if seg.kind == "grpo":     # RFT samples without hints: its segments have no density to log
            log_metrics({"rl.hint.density": seg.hint_density, "rl.hint.prompts": float(len(seg.hinted)),
                         "rl.round": float(seg.round)}, state.data["offset"])
        if seg.kind == "rft":
            kept, counts = rejection_sample(policy, [by_id[i] for i in seg.prompt_ids], reward, cfg.rft,
                                            max_new_tokens=cfg.grpo.max_completion_length,
                                            temperature=cfg.grpo.temperature, seed=cfg.seed + idx,
                                            salt=f"rft-{seg.round}", thinking=cfg.thinking)
            tuned = fine_tune(vlm.model, policy.tokenizer, kept, cfg.rft, seed=cfg.seed + idx,
                              out_dir=str(root / "work"), deepspeed=cfg_deepspeed(cfg))
            result = {"counts": counts, "kept": len(kept), "steps": tuned["steps"], "loss": tuned["loss"]}
            state.data["rft"] += [{"round": seg.round, **k} for k in kept]
            log_metrics({f"rl.rft.{k}": float(v) for k, v in counts.items()} | {"rl.rft.kept": float(len(kept))},
                        state.data["offset"])
        else:
            result = _grpo(vlm, policy, seg, by_id, reward, cfg, state, log_metrics, cfg.seed + idx, root / "work")
        state.data["offset"] += result["steps"]
        state.data["segments"].append({"index": idx, "name": seg.name, "kind": seg.kind, "round": seg.round,
                                       "hint_density": seg.hint_density, **result})
        round_done = idx + 1 == len(segments) or segments[idx + 1].round != seg.round
        if round_done:
            summary, rows = heldout_reward(policy, held, reward, cfg.heldout, cfg.seed, cfg.thinking)
            name = "final" if seg.round == last_round else f"round_{seg.round}"
            state.data["heldout"][name] = summary
            state.data["heldout_rows"] += [{"checkpoint": name, **r} for r in rows]
            log_metrics(_flat(f"heldout.{name}", summary), state.data["offset"])
            if seg.round < last_round:
                save_policy(vlm, root / "iterations" / str(seg.round) / "model", round=seg.round,
                            paradigm=cfg.paradigm, base_model=str(cfg.base_model_dir))
        save_policy(vlm, root / "model", paradigm=cfg.paradigm, base_model=str(cfg.base_model_dir))
        state.data["done"] = idx + 1
        state.save()
        log(f"rl: {seg.name} done in {time.perf_counter() - t:.0f}s: "
            f"{ {k: v for k, v in result.items() if k != 'loss'} }")
    if out is None:
        return RLOutcome({"global_step": state.data["offset"]}, {}, root)
    save_policy(vlm, out / "model", paradigm=cfg.paradigm, base_model=str(cfg.base_model_dir))
    if (root / "iterations").is_dir():
        shutil.copytree(root / "iterations", out / "iterations")
    write_jsonl(out / "plan.jsonl", [dataclasses.asdict(s) for s in segments])
    write_jsonl(out / "steps.jsonl", state.data["steps"])
    write_jsonl(out / "rft.jsonl", state.data["rft"])
    write_jsonl(out / "heldout.jsonl", state.data["heldout_rows"])
    write_rejections(out / "rejected", bad)
    metrics = {"segments": state.data["segments"], "heldout": state.data["heldout"]}
    write_json(out / "metrics.json", metrics)
    summary = summary_of(cfg, prompts, train, held, bad, state, key, resumed)
    return RLOutcome(summary, {"rl_seconds": time.perf_counter() - started}, root)


def _flat(prefix: str, s: dict) -> dict[str, float]:
    out = {f"{prefix}.mean": s.get("mean"), f"{prefix}.pass_rate": s.get("pass_rate")}
    for t, v in (s.get("by_task") or {}).items():
        out[f"{prefix}.{t}.mean"] = v.get("mean")
    return {k: float(v) for k, v in out.items() if v is not None}


def summary_of(cfg: RLConfig, prompts, train, held, bad, state: _State, key: str, resumed: bool) -> dict:
    segs = state.data["segments"]
    grpo = [s for s in segs if s["kind"] == "grpo"]
    rft = [s for s in segs if s["kind"] == "rft"]
    return {
        "paradigm": cfg.paradigm, "iterations": cfg.iterations, "run_key": key, "resumed": resumed,
        "read": len(prompts) + len(bad), "kept": len(prompts), "rejected": len(bad),
        "prompts": {"train": len(train), "heldout": len(held)},
        "grpo_steps": sum(s["steps"] for s in grpo), "rft_steps": sum(s["steps"] for s in rft),
        "completions_sampled": sum(s["steps"] * cfg.grpo.prompts_per_step * cfg.grpo.num_generations for s in grpo)
        + sum(s["counts"].get("sampled", 0) for s in rft),
        "rft": {"kept": sum(s["kept"] for s in rft),
                "by_round": {str(s["round"]): s["counts"] for s in rft}},
        "entropy_bonus_activations": sum(s.get("bonus_activations", 0) for s in grpo),
        "hint_density_by_segment": {s["name"]: s["hint_density"] for s in grpo},
        "reward_mean_by_segment": {s["name"]: s["reward_mean"] for s in grpo},
        "heldout": state.data["heldout"],
        "thinking_trained": True,
    }
