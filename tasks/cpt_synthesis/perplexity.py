"""Perplexity-based selection of synthesized text (paper §3.3.1: "selected high-quality samples based on
Perplexity"), with the pipeline's base model.

    from tasks.cpt_synthesis.perplexity import PerplexityScorer, select_by_perplexity
    scorer = PerplexityScorer("data/base_model", batch_size=8, max_tokens=512)
    nll = scorer.nll([sample_text(s) for s in samples])            # token-mean NLL per text (nats)
    out = select_by_perplexity(samples, nll, drop_high=0.1, drop_low=0.0)

Why a quantile band: the most surprising samples under the base model are mostly noise (garbled
templates, broken names, off-distribution strings), the least surprising are near-duplicates the model
already predicts; the band keeps the middle. Thresholds are quantiles of the scored set, not absolute
values, so the rule means the same for a tiny and a large base model. A sample is rejected with reason
`perplexity_too_high` / `perplexity_too_low` (its NLL and the cut in the detail) or `too_short_to_score`
(fewer than 2 tokens: no next-token prediction to average); kept samples carry `meta.nll`.

Scoring: the HF model is loaded by path (AutoModelForCausalLM; a vision-language checkpoint such as the
base_model stage's falls back to AutoModelForImageTextToText, run on text only); texts are batched with
right padding and the attention mask, truncated to `max_tokens`, and each text's NLL is the mean of the
next-token cross-entropy over its own tokens. Deterministic: eval mode, no sampling, fixed batch order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tasks.cpt_synthesis.samples import Outcome


def sample_text(sample: dict) -> str:
    """The text a sample trains on: its text, or its turns' text parts ("Question/Answer" lines)."""
    if sample.get("text"):
        return sample["text"]
    lines = []
    for m in sample.get("messages", []):
        c = m["content"]
        text = c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if p.get("type") == "text")
        lines.append(f"{'Answer' if m['role'] == 'assistant' else 'Question'}: {text}")
    return "\n".join(lines)


def load_causal_lm(path: str):
    """(model, tokenizer) from a local HF checkpoint directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path)
    except (ValueError, KeyError):
        from transformers import AutoModelForImageTextToText
        model = AutoModelForImageTextToText.from_pretrained(path)
    model.eval()
    return model, tok


class PerplexityScorer:
    def __init__(self, model_path: str, *, batch_size: int = 8, max_tokens: int = 512, threads: int = 0):
        import torch
        if threads:
            torch.set_num_threads(threads)
        self.model, self.tok = load_causal_lm(model_path)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token or self.tok.unk_token
        self.tok.padding_side = "right"
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    def nll(self, texts: Sequence[str]) -> list[float | None]:
        """Token-mean NLL per text (in input order); None for a text with fewer than 2 tokens.

        Batches are formed over texts sorted by token count, so a batch pads to a length close to
        each of its members' (short QA pairs do not pay for a long passage in the same batch)."""
        import torch
        ids = self.tok(list(texts), truncation=True, max_length=self.max_tokens, add_special_tokens=True)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        out: list[float | None] = [None] * len(ids)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            enc = self.tok.pad({"input_ids": [ids[i] for i in chunk]}, return_tensors="pt", padding=True)
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            logits = logits[:, :-1].float()
            target = enc["input_ids"][:, 1:]
            mask = enc["attention_mask"][:, 1:].bool()
            ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                                                   reduction="none").view(target.shape)
            n = mask.sum(dim=1)
            mean = (ce * mask).sum(dim=1) / n.clamp(min=1)
            for i, m, k in zip(chunk, mean, n):
                out[i] = float(m) if int(k) >= 1 else None
        return out


def select_by_perplexity(samples: Sequence[dict], nll: Sequence[float | None], *, drop_high: float = 0.1,
                         drop_low: float = 0.0) -> tuple[Outcome, dict]:
    """Keep the samples whose NLL lies inside the quantile band; (outcome, cut report)."""
    if not (0 <= drop_low < 1 and 0 <= drop_high < 1 and drop_low + drop_high < 1):
        raise ValueError("0 <= drop_low, drop_high < 1 and drop_low + drop_high < 1 are required")
    out = Outcome()
    scored = np.array([x for x in nll if x is not None], dtype=np.float64)
    hi = float(np.quantile(scored, 1 - drop_high)) if len(scored) and drop_high else float("inf")
    lo = float(np.quantile(scored, drop_low)) if len(scored) and drop_low else float("-inf")
    for s, x in zip(samples, nll):
        loc = {"id": s.get("id"), "task": s.get("task")}
        if x is None:
            out.reject("too_short_to_score", "fewer than 2 tokens", loc)
        elif x > hi:
            out.reject("perplexity_too_high", f"nll {x:.4f} > cut {hi:.4f} (top {drop_high:.0%})", loc)
        elif x < lo:
            out.reject("perplexity_too_low", f"nll {x:.4f} < cut {lo:.4f} (bottom {drop_low:.0%})", loc)
        else:
            out.kept.append({**s, "meta": {**s["meta"], "nll": round(x, 5)}})
    report = {"scored": len(scored), "cut_high": hi if np.isfinite(hi) else None,
              "cut_low": lo if np.isfinite(lo) else None,
              "nll_mean": round(float(scored.mean()), 5) if len(scored) else None}
    return out, report
