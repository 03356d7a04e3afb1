"""The policy as RL sees it: prompts rendered through the checkpoint's own chat template, and seeded
sampling of N completions per prompt (rl_data's pass rates, RFT's rejection sampling, the best-of-N
references, the held-out reward).

    policy = Policy.load("data/sft/model", threads=2)
    texts = policy.render([prompt_messages, ...], thinking=True)
    completions = policy.sample(texts, n=5, max_new_tokens=96, temperature=1.0, seed=1234)  # [prompt][n]

The rendering is the eval harness's (eval/models.py): the same system line, the same enable_thinking
switch, so what RL rewards is what the benchmarks read. Sampling is batched (`batch_prompts` prompts x
n completions per generate call: one prompt at a time runs ~5x slower on CPU) and seeded per batch by
the seed and the batch's text, so the same prompts in the same order give the same completions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from tasks.training.model_io import load_model


def prompt_seed(seed: int, text: str, salt: str = "") -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{salt}|{text}".encode()).digest()[:4], "big")


class Policy:
    def __init__(self, vlm, threads: int = 2):
        import torch

        torch.set_num_threads(max(1, threads))
        self.vlm, self.model, self.processor = vlm, vlm.model, vlm.processor
        self.tokenizer = vlm.processor.tokenizer
        owner = self.processor if getattr(self.processor, "chat_template", None) else self.tokenizer
        self.template_owner = owner
        self.has_switch = "enable_thinking" in str(owner.chat_template)

    @classmethod
    def load(cls, path: str | Path, threads: int = 2) -> Policy:
        return cls(load_model(path), threads)

    def render(self, chats: Sequence[Sequence[dict]], thinking: bool = True) -> list[str]:
        """Chat prompts (system, history, the query) as the generation prompt text of the template."""
        kw: dict = {"add_generation_prompt": True, "tokenize": False}
        if self.has_switch:
            kw["enable_thinking"] = thinking
        return [self.template_owner.apply_chat_template([dict(m) for m in chat], **kw) for chat in chats]

    def sample(self, texts: Sequence[str], *, n: int, max_new_tokens: int, temperature: float = 1.0,
               top_p: float = 1.0, seed: int = 1234, batch_prompts: int = 8, salt: str = "", progress=None) -> list[list[str]]:
        """`n` completions per rendered prompt, in order; temperature 0 = greedy (n copies of one)."""
        import torch
        from transformers import GenerationConfig

        tok = self.tokenizer
        tok.padding_side = "left"
        eos = self.model.generation_config.eos_token_id or tok.eos_token_id
        greedy = temperature <= 0
        gen = GenerationConfig(do_sample=not greedy, temperature=None if greedy else temperature,
                               top_p=None if greedy else top_p, top_k=None, num_beams=1,
                               max_new_tokens=max_new_tokens, num_return_sequences=1 if greedy else n,
                               pad_token_id=tok.pad_token_id, eos_token_id=eos)
        out: list[list[str]] = []
        self.model.eval()
        for start in range(0, len(texts), batch_prompts):
            chunk = list(texts[start:start + batch_prompts])
            # the batch's seed is its content's: the same prompts in the same order sample the same text
            torch.manual_seed(prompt_seed(seed, "\x1e".join(chunk), salt))
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=gen)
            new = tok.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            per = 1 if greedy else n
            for i in range(len(chunk)):
                got = new[i * per:(i + 1) * per]
                out.append(got * n if greedy else got)
            if progress:
                progress(len(out), len(texts))
        return out
