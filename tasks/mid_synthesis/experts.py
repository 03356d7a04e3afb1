"""The experts mid-training data asks for answers, and the probe that measures what a checkpoint knows.

    experts = open_experts(cfg.experts, client=ctx.client)   # checkpoints and the LLM endpoint
    replies = experts[0].answer([Query(system, user, images=("data/...png",))])
    probe = ChoiceProbe(CheckpointModel.load("data/cpt/model"), k=4, seed=1234)
    probe.pass_at_k([ChoiceQuestion("Which ...?", ("a", "b", "c", "d"), gold=2)])   # [0.25]
    probe.correct([...])                                                        # greedy: [True]

An expert answers a `Query` (system prompt, user text, optional images) with free text that may hold a
<think> block; a failed request is a `Reply` with `failure` set, never an exception in the middle of a
batch. Two kinds behind one interface:
- `CheckpointExpert`: a project checkpoint (HF format, text or image-text) sampling at a temperature
  with a seed, through the eval harness's adapter (eval/models.py HFModel: the same chat rendering,
  image budget and device placement as evaluation);
- `EndpointExpert`: any OpenAI-compatible endpoint through the project's LLM client (tasks/llm): the
  embedded llama.cpp server by default, at its own temperature and system prompt, or a configured
  vLLM / hosted model.

`ChoiceProbe` is how mid-training data asks "does the current checkpoint already know this?": a
multiple-choice question is rendered by the eval harness's templates (eval/templates.py), answered k
times by sampling, each answer read by the harness's parser (eval/parsing.py), and pass@k is the
unbiased estimator 1 - C(n-c, k)/C(n, k) over n = k samples (Chen et al., 2021).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class Query:
    system: str
    user: str
    images: tuple[str, ...] = ()        # project-relative image paths, shown before the text


@dataclasses.dataclass(frozen=True)
class Reply:
    expert: str
    text: str | None                    # None when the request failed
    failure: str | None = None


class Expert(Protocol):
    name: str

    def answer(self, queries: Sequence[Query]) -> list[Reply]: ...


@dataclasses.dataclass(frozen=True)
class ChoiceQuestion:
    question: str
    options: tuple[str, ...]            # option texts; letters A, B, ... are assigned in order
    gold: int                           # index of the right option
    images: tuple[str, ...] = ()        # project-relative image paths
    id: str = ""


LETTERS = "ABCDEFGHIJ"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def stable_seed(*parts: Any) -> int:
    h = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:4], "little")


# ---- the checkpoint behind the harness's adapter ------------------------------------------------
class CheckpointModel:
    """A project checkpoint loaded once through the eval harness's adapter (eval.models.HFModel), shared
    by the probe and by every expert sampling from it."""

    def __init__(self, adapter, name: str):
        self.adapter = adapter
        self.name = name

    @classmethod
    def load(cls, path: str, *, batch_size: int = 8, threads: int = 2, seed: int = 1234, device: str = "cpu",
             images: dict | None = None) -> CheckpointModel:
        from eval.models import HFModel
        from tasks.common.config import resolve

        adapter = HFModel(resolve(path), batch_size=batch_size, threads=threads, seed=seed, device=device,
                          images=images or {})
        return cls(adapter, name=str(path))

    def _abs(self, paths: Sequence[str]) -> list[str]:
        from tasks.common.config import resolve

        return [str(resolve(p)) for p in paths]

    def sample(self, queries: Sequence[Query], *, temperature: float, top_p: float, max_new_tokens: int,
               seed: int) -> list[str | None]:
        """One sampled reply per query (greedy at temperature 0); None where an image cannot be loaded.
        Seeded per batch from (seed, the batch's prompts), so a reply does not depend on what else ran."""
        from eval.templates import Prompt
        from models.images import ImageError

        a, torch = self.adapter, self.adapter.torch
        out: list[str | None] = [None] * len(queries)
        for start in range(0, len(queries), a.batch_size):
            chunk = list(range(start, min(start + a.batch_size, len(queries))))
            ready, texts, images = [], [], []
            for i in chunk:
                q = queries[i]
                try:
                    images += a.load_images(self._abs(q.images)) if q.images else []
                except ImageError:
                    continue
                parts = (*(("image", p) for p in self._abs(q.images)), ("text", q.user))
                texts.append(a.render_chat(Prompt(q.system, parts, thinking=True)))
                ready.append(i)
            if not ready:
                continue
            tok = a.tokenizer
            tok.padding_side = "left"
            kw = {"return_tensors": "pt", "padding": True, "add_special_tokens": False}
            enc = a.processor(text=texts, images=images, **kw) if images else tok(texts, **kw)
            torch.manual_seed(stable_seed(seed, *texts))
            gen = {"max_new_tokens": max_new_tokens, "pad_token_id": tok.pad_token_id,
                   "eos_token_id": a.model.generation_config.eos_token_id or tok.eos_token_id}
            if temperature > 0:
                gen.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                gen.update(do_sample=False)
            with torch.inference_mode():
                ids = a.model.generate(**a._on_device(enc), **gen)
            new = ids[:, enc["input_ids"].shape[1]:].cpu()
            # keep <think> markers: they are atomic, non-special tokens of the project's vocabulary
            for i, text in zip(ready, tok.batch_decode(new, skip_special_tokens=True)):
                out[i] = text
        return out

    def option_logprobs(self, questions: Sequence[ChoiceQuestion]) -> list[list[float] | None]:
        """The harness's option log-likelihoods (eval.models.HFModel.loglik over eval.templates'
        completion context); None where the question's image cannot be loaded."""
        from eval.benchmarks import Item
        from eval.templates import loglik_request

        reqs = []
        for q in questions:
            item = Item("mid_probe", q.id or "q", "mcq", "choice", q.question, (LETTERS[q.gold],),
                        options=tuple((LETTERS[i], t) for i, t in enumerate(q.options)),
                        images=tuple(self._abs(q.images)))
            reqs.append((item, loglik_request(item)))
        rows = self.adapter.loglik(reqs)
        return [r if isinstance(r, list) else None for r in rows]


@dataclasses.dataclass
class CheckpointExpert:
    """A checkpoint as an expert: its own temperature and system prompt."""
    model: CheckpointModel
    name: str
    system: str = ""
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 192
    seed: int = 1234

    def answer(self, queries: Sequence[Query]) -> list[Reply]:
        qs = [Query(self.system or q.system, q.user, q.images) for q in queries]
        texts = self.model.sample(qs, temperature=self.temperature, top_p=self.top_p,
                                  max_new_tokens=self.max_new_tokens, seed=stable_seed(self.seed, self.name))
        return [Reply(self.name, t, None if t is not None else "image_unreadable") for t in texts]


@dataclasses.dataclass
class EndpointExpert:
    """An OpenAI-compatible endpoint as an expert (tasks/llm client: retries, cache, concurrency).
    Text only: image queries are answered from their text (the embedded server has no vision)."""
    client: Any
    name: str
    system: str = ""
    temperature: float = 0.7
    max_tokens: int = 192

    def answer(self, queries: Sequence[Query]) -> list[Reply]:
        chats = [[{"role": "system", "content": self.system or q.system}, {"role": "user", "content": q.user}]
                 for q in queries]
        replies = self.client.complete_many(chats, return_exceptions=True, temperature=self.temperature,
                                            max_tokens=self.max_tokens)
        out = []
        for r in replies:
            if isinstance(r, str):
                out.append(Reply(self.name, r))
            else:
                out.append(Reply(self.name, None, f"request_failed: {str(r)[:200]}"))
        return out


# ---- the probe ----------------------------------------------------------------------------------
class ChoiceProbe:
    """What the checkpoint knows, asked through the harness's option log-likelihoods.

    pass@k samples n answers per question from the checkpoint's own distribution over the options
    (softmax of the summed option log-probabilities, seeded per question): for a small model, free
    generation parsed for a letter measures the answer format more than the knowledge, while sampling
    over the option set measures the knowledge alone. `correct` is the greedy answer (the harness's
    loglik `acc`)."""

    def __init__(self, model: CheckpointModel, k: int = 4, n: int = 8, seed: int = 1234):
        if n < k:
            raise ValueError(f"pass@k needs n >= k samples, got n={n} k={k}")
        self.model, self.k, self.n, self.seed = model, k, n, seed
        self.calls = 0

    def _probs(self, questions: Sequence[ChoiceQuestion]) -> list[list[float] | None]:
        import numpy as np

        self.calls += len(questions)
        out = []
        for lps in self.model.option_logprobs(questions):
            if lps is None:
                out.append(None)
                continue
            x = np.asarray(lps, dtype=np.float64)
            p = np.exp(x - x.max())
            out.append((p / p.sum()).tolist())
        return out

    def pass_at_k(self, questions: Sequence[ChoiceQuestion]) -> list[float]:
        import numpy as np

        out = []
        for q, p in zip(questions, self._probs(questions)):
            if p is None:
                out.append(0.0)
                continue
            rng = np.random.default_rng(stable_seed(self.seed, q.id, q.question))
            draws = rng.choice(len(p), size=self.n, p=p)
            out.append(pass_at_k(self.n, int((draws == q.gold).sum()), self.k))
        return out

    def correct(self, questions: Sequence[ChoiceQuestion]) -> list[bool]:
        return [p is not None and max(range(len(p)), key=lambda i: (p[i], -i)) == q.gold
                for q, p in zip(questions, self._probs(questions))]
