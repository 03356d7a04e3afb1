"""The RFT phase of an RL iteration (paper §5.2.3): rejection-sampling fine-tuning on the policy's own
completions that pass the reward gate.

    kept, counts = rejection_sample(policy, prompts, reward, params, max_new_tokens, temperature, seed, salt)
    fine_tune(vlm, kept, params, seed, log)          # TRL SFTTrainer, completion-only loss

Each sampled prompt gets `samples` completions from the current policy (no hints); those that pass the
hybrid reward's gate (the primary grader satisfied, the safety gate holding) are kept, at most
`max_per_prompt` distinct texts per prompt, the highest fused reward first. Every completion is
counted: passed (kept), failed_gate, duplicate, over_max.
"""

from __future__ import annotations

from collections import Counter

from tasks.reward.hybrid import HybridReward, item_for


def rejection_sample(policy, prompts: list[dict], reward: HybridReward, params, *, max_new_tokens: int,
                     temperature: float, seed: int, salt: str, thinking: bool) -> tuple[list[dict], dict]:
    texts = policy.render([p["messages"] for p in prompts], thinking=thinking)
    sampled = policy.sample(texts, n=params.samples, max_new_tokens=max_new_tokens, temperature=temperature,
                            seed=seed, salt=salt)
    kept, counts = [], Counter()
    for p, text, completions in zip(prompts, texts, sampled):
        scored = reward.score_group([item_for(p, c) for c in completions])
        ranked = sorted(range(len(completions)), key=lambda i: (-scored[i].fused, i))
        seen, n_kept = set(), 0
        for i in ranked:
            c = completions[i]
            if not reward.passes(scored[i]):
                counts["failed_gate"] += 1
            elif c.strip() in seen:
                counts["duplicate"] += 1
            elif n_kept >= params.max_per_prompt:
                counts["over_max"] += 1
            else:
                seen.add(c.strip())
                n_kept += 1
                counts["passed"] += 1
                kept.append({"id": p["id"], "task": p["task"], "prompt": text, "completion": c,
                             "fused": scored[i].fused})
    counts["sampled"] = sum(len(c) for c in sampled)
    return kept, dict(sorted(counts.items()))


def fine_tune(model, tokenizer, kept: list[dict], params, *, seed: int, out_dir: str, callbacks=(),
              deepspeed: str | None = None) -> dict:
    """Completion-only SFT on the kept (prompt, completion) pairs; returns the loss history."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    if not kept:
        return {"steps": 0, "loss": []}
    ds = Dataset.from_list([{"prompt": k["prompt"], "completion": k["completion"]} for k in kept])
    cuda = torch.cuda.is_available()
    args = SFTConfig(output_dir=out_dir, per_device_train_batch_size=params.batch_size,
                     num_train_epochs=params.epochs, learning_rate=params.learning_rate, lr_scheduler_type="constant",
                     logging_steps=1, save_strategy="no", report_to=[], seed=seed, use_cpu=not cuda, bf16=cuda,
                     disable_tqdm=True, deepspeed=deepspeed, dataloader_num_workers=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                         callbacks=list(callbacks))
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"steps": trainer.state.global_step, "loss": losses}
