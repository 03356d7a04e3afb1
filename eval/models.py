"""Model adapters: anything that answers prompts, behind one interface.

    adapter.generate([(item, prompt), ...], max_new_tokens) -> [str | NoOutput | Exception, ...]
    adapter.loglik([(item, loglik_request), ...])           -> [[logprob per continuation] | Exception, ...]

- `HFModel`: a local HF checkpoint by path. A config with a `vision_config` (LLaVA-style and other
  image-text-to-text models) loads with models.checkpoint.load_vlm (validated, then
  AutoModelForImageTextToText + AutoProcessor, as training loads it), anything else with
  AutoModelForCausalLM + AutoTokenizer. Greedy decoding (do_sample=False, one beam), batched
  with left padding; the chat template is used when the tokenizer/processor has one, else plain
  text ending in "Answer:". Log-likelihood is batched too: left-padded context+continuation rows
  with explicit position ids, and only the last `max continuation` positions go through the LM
  head (`logits_to_keep`), so a 50k vocabulary costs what the answer tokens need, not the prompt.
  Prompts longer than the model's context are cut from the left (text-only models) and counted.
- `EndpointModel`: an OpenAI-compatible chat endpoint through the project's LLMClient (retries,
  bounded concurrency, response cache); images go as base64 PNG data URLs when `vision` is set. No
  log-likelihood: chat endpoints do not return prompt log-probabilities.
- `PredictionsModel`: outputs produced elsewhere, one JSONL row per item
  {"benchmark", "id", "output"} (or "option_logprobs": [...] for log-likelihood mode); an item
  without a row scores as the failure `missing_prediction`. The rows are held in memory, so the
  file is capped (`MAX_PREDICTIONS_BYTES`, else an AdapterError naming it) and so is each line
  (`MAX_RECORD_BYTES`); a bad line (invalid UTF-8, not JSON, no benchmark/id, over the line cap)
  is counted in `stats["bad_lines"]`, by reason in `stats["bad_line_reasons"]`.

Device (`device`: auto | cpu | cuda, decided by `tasks.training.device.resolve`, the one device choice
of the project): `auto` runs on the GPU in bfloat16 when torch sees one, else on the CPU in float32;
`cpu` is float32, `cuda` bfloat16 (an error without a GPU). The placement ('cpu/float32') is part of
the adapter's identity (`describe`, hence the run fingerprint): bfloat16 scores are not float32
scores, and resumed results never mix the two.

Determinism: seeds fixed, greedy decoding, inputs sorted the same way every run; on the CPU
(float32) a re-run reproduces every output byte for byte.

Images: every image, for a checkpoint or an endpoint, is loaded by `models.images.load_image(path,
budget, factor)`, the function training loads images with (tasks/training/encode.py, collate.py), so
a checkpoint sees at evaluation the pixels it was trained on, not its processor's own (larger) resize.
A checkpoint's budget and pixels per visual token come from `models.checkpoint.load_vlm`, the loader
training uses (its medx_model.json; the ImageBudget defaults for a checkpoint without one), with the
`images` overrides (ImageBudget field names, as training's `encode.images`). An endpoint has no
checkpoint to read: the ImageBudget defaults and the project's own grid (patch 14 x merge 2), with
the same overrides. The budget is part of `describe()`: scores at another resolution are other scores.
An image the budget cannot size (too small, extreme aspect ratio) makes that item's failure
`image_<reason>`, training's skip reason, not a run failure.

Endpoint identity. The response cache key of the project's client holds the request (model name,
messages, sampling), not the URL, and two checkpoints are easily served under one model name. So the
endpoint adapter scopes both its cache keys and its `describe()` (the resume fingerprint) by the
endpoint's identity and a user-given `revision`: the URL (userinfo and trailing slash dropped), or,
for the project's llama.cpp server (`local`, a new port every start), the served GGUF file's name and
sha256 and the chat format, which do not change between runs of the same model.

Paths in `describe()` are relative to the project root (or `${data_root}`), so neither the run
fingerprint nor any report depends on where the checkout lives.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from eval.benchmarks import Item
from eval.templates import LoglikRequest, Prompt
from models.checkpoint import META_FILE, CheckpointError, checkpoint_digest, read_meta
from models.config import ARCH_PRESETS, ImageBudget
from models.images import ImageError, load_image
from tasks.common.io import MAX_RECORD_BYTES, file_sha256, iter_bounded_lines, relative_paths

# Pixels per visual token along a side for an endpoint, whose processor eval cannot read: the
# project's own towers' grid (patch 14 x merge 2, also Qwen2-VL's), so an endpoint serving a
# project checkpoint gets the images that checkpoint was trained on.
ENDPOINT_IMAGE_FACTOR = ARCH_PRESETS["tiny"].vision.patch_size * ARCH_PRESETS["tiny"].spatial_merge_size


def display_path(path: str | Path) -> str:
    """`path` as outputs show it: relative to the project root (or `${data_root}/...`) when under it."""
    return relative_paths(str(path))


@dataclasses.dataclass(frozen=True)
class NoOutput:
    """No model output for an item, for a reason that is the item's failure (not a run failure)."""
    reason: str


class AdapterError(RuntimeError):
    pass


def image_budget(base: ImageBudget, overrides: dict[str, Any] | None) -> ImageBudget:
    """`base` with the `images` overrides (ImageBudget field names, as training's `encode.images`);
    ValueError naming an unknown key or a non-numeric value."""
    overrides = dict(overrides or {})
    names = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(ImageBudget)}
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise ValueError(f"images: unknown key(s) {unknown}; known: {sorted(names)}")
    for k, v in overrides.items():
        want = names[k]
        if isinstance(v, bool) or not (isinstance(v, int) if want is int else isinstance(v, (int, float))):
            raise ValueError(f"images.{k}: expected {want.__name__}, got {v!r}")
    return dataclasses.replace(base, **{k: names[k](v) for k, v in overrides.items()})


def image_identity(budget: ImageBudget, factor: int) -> dict:
    """How images are sized, as `describe()` shows it (hence part of the run fingerprint)."""
    return {"budget": dataclasses.asdict(budget), "factor": factor}


def image_failure(e: ImageError) -> NoOutput:
    """The item's failure for an image the budget cannot size; training's skip reason
    (tasks/training/encode.py: `image_<reason>`), so one image is named alike in both."""
    return NoOutput(e.reason if e.reason.startswith("image_") else f"image_{e.reason}")


class HFModel:
    supports_loglik = True

    def __init__(self, path: str | Path, *, batch_size: int = 8, threads: int = 2, seed: int = 1234,
                 max_length: int = 0, device: str = "cpu", images: dict[str, Any] | None = None):
        import torch
        from transformers import AutoConfig

        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise AdapterError(f"no HF checkpoint at {self.path} (config.json missing)")
        from tasks.training.device import resolve as resolve_device

        self.placement = resolve_device(device)
        self.device, self.dtype = self.placement.device, self.placement.dtype
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        self.torch = torch
        self.batch_size = max(1, batch_size)
        config = AutoConfig.from_pretrained(self.path)
        self.vision = getattr(config, "vision_config", None) is not None
        self.budget: ImageBudget | None = None
        self.factor = 0
        if self.vision:
            from models.checkpoint import load_vlm

            # training's loader: the same processor, and the image budget and pixels per visual
            # token the checkpoint was trained with (medx_model.json; ImageBudget defaults without it)
            try:
                vlm = load_vlm(self.path, dtype=self.dtype)
            except CheckpointError as e:
                raise AdapterError(f"cannot load {self.path}: {e}") from None
            self.model, self.processor = vlm.model, vlm.processor
            self.tokenizer = self.processor.tokenizer
            self.budget, self.factor = image_budget(vlm.budget, images), vlm.factor
        else:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype)
            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        text_cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
        self.max_length = max_length or int(getattr(text_cfg, "max_position_embeddings", 0) or 4096)
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        self.chat_template = self._chat_template_owner()
        self.thinking_switch = self._uses_thinking_switch()
        self.name = self.path.name
        self.stats = {"truncated_prompts": 0, "boundary_mismatches": 0}

    def describe(self) -> dict:
        out = {"adapter": "hf", "path": display_path(self.path), "digest": checkpoint_digest(self.path),
               "vision": self.vision, "chat_template": self.chat_template is not None,
               "thinking_switch": self.thinking_switch, "device": self.placement.describe()}
        if self.budget is not None:
            out["images"] = image_identity(self.budget, self.factor)
        return out

    def load_images(self, paths: Sequence[str]) -> list:
        """The prompt's images as training loads them (models.images.load_image, this checkpoint's
        budget and factor); raises ImageError."""
        return [load_image(p, self.budget, self.factor) for p in paths]

    def _on_device(self, enc) -> dict:
        """Encoded inputs on the model's device; floating tensors (pixel values) in its dtype."""
        return {k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
                if isinstance(v, self.torch.Tensor) else v for k, v in enc.items()}

    def _uses_thinking_switch(self) -> bool:
        """Whether to pass the template's `enable_thinking` switch. A direct answer with the switch
        off pre-fills an empty <think></think> block, the contract of models trained with reasoning
        blocks (Qwen3, this project's SFT/RL checkpoints). A checkpoint never trained on <think> (this
        project's base and CPT models, whose medx_model.json lacks `thinking_trained: true`) answers
        that pre-fill with an immediate end of turn, so it gets the plain generation prompt instead."""
        if not (self.path / META_FILE).is_file():
            return True
        try:
            return bool(read_meta(self.path).get("thinking_trained", False))
        except CheckpointError:
            return False

    # -- prompt rendering -------------------------------------------------------------------------
    def _chat_template_owner(self):
        for owner in (self.processor, self.tokenizer):
            if owner is not None and getattr(owner, "chat_template", None):
                return owner
        return None

    def render_chat(self, prompt: Prompt) -> str:
        owner = self.chat_template
        if owner is self.processor:
            content = [{"type": "image"} if k == "image" else {"type": "text", "text": v} for k, v in prompt.parts]
            system = [{"type": "text", "text": prompt.system}]
        else:  # a text chat template: image slots become the processor's image token
            content = "".join(f"{self.image_token}\n" if k == "image" else v for k, v in prompt.parts)
            system = prompt.system
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        # enable_thinking: templates with a reasoning switch (the project's, Qwen3's) pre-fill an
        # empty <think></think> for direct answers; templates without one ignore the variable
        kw: dict = {"add_generation_prompt": True, "tokenize": False}
        if "enable_thinking" in str(owner.chat_template):
            # switch off: True renders the plain generation prompt (no pre-filled block)
            kw["enable_thinking"] = prompt.thinking if self.thinking_switch else True
        try:
            return owner.apply_chat_template(messages, **kw)
        except Exception:  # noqa: BLE001 - templates without a system role raise their own errors
            return owner.apply_chat_template(_merge_system(messages), **kw)

    def render_plain(self, prompt: Prompt, *, answer_cue: bool) -> str:
        body = "".join(f"{self.image_token}\n" if k == "image" else v for k, v in prompt.parts)
        text = f"{prompt.system}\n\n{body}" if prompt.system else body
        return f"{text}\nAnswer:" if answer_cue else text

    # -- generation -------------------------------------------------------------------------------
    def generate(self, batch: Sequence[tuple[Item, Prompt]], max_new_tokens: int) -> list[Any]:
        torch = self.torch
        from transformers import GenerationConfig

        chat = self.chat_template is not None
        results: list[Any] = [None] * len(batch)
        ready, images = [], []
        for i, (_, p) in enumerate(batch):
            try:
                images += self.load_images(p.images) if p.images else []
            except ImageError as e:
                results[i] = image_failure(e)
                continue
            ready.append(i)
        if not ready:
            return results
        texts = [self.render_chat(p) if chat else self.render_plain(p, answer_cue=True)
                 for p in (batch[i][1] for i in ready)]
        tok = self.tokenizer
        tok.padding_side = "left"
        limit = max(16, self.max_length - max_new_tokens)
        kwargs = {"return_tensors": "pt", "padding": True, "add_special_tokens": not chat}
        if images:
            enc = self.processor(text=texts, images=images, **kwargs)
        else:
            lengths = [len(ids) for ids in tok(texts, add_special_tokens=not chat)["input_ids"]]
            self.stats["truncated_prompts"] += sum(n > limit for n in lengths)
            tok.truncation_side = "left"   # keep the question and the answer format, lose the preamble
            enc = tok(texts, truncation=True, max_length=limit, **kwargs)
        gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                               pad_token_id=tok.pad_token_id,
                               eos_token_id=self.model.generation_config.eos_token_id or tok.eos_token_id)
        with torch.inference_mode():
            out = self.model.generate(**self._on_device(enc), generation_config=gen)
        new = out[:, enc["input_ids"].shape[1]:].cpu()
        for i, text in zip(ready, tok.batch_decode(new, skip_special_tokens=True)):
            results[i] = text
        return results

    # -- log-likelihood ---------------------------------------------------------------------------
    def loglik(self, batch: Sequence[tuple[Item, LoglikRequest]]) -> list[Any]:
        """Summed log-probability of each continuation given its context, batched over all pairs.

        Text rows: context ids + continuation ids (lm-evaluation-harness's tokenization), contexts
        cut from the left to fit; each context runs once and its key/value cache is shared by its
        options (a 4-option MedQA item costs one long pass instead of four). Image rows: the processor encodes context+continuation with the
        images (it alone knows how many placeholder tokens an image takes), and the continuation
        is the sequence's tail; a tail that does not tokenize as the continuation alone is counted
        in stats["boundary_mismatches"]."""
        tok = self.tokenizer
        results: list[Any] = [[0.0] * len(req.continuations) for _, req in batch]
        text_rows, image_rows = [], []
        for ri, (_, req) in enumerate(batch):
            context = self.render_plain(req.prompt, answer_cue=False)
            if req.prompt.images:
                try:
                    images = self.load_images(req.prompt.images)
                except ImageError as e:
                    results[ri] = image_failure(e)
                    continue
                image_rows += [(ri, ci, context + cont, images, tok(cont, add_special_tokens=False)["input_ids"])
                               for ci, cont in enumerate(req.continuations)]
                continue
            ctx = tok(context)["input_ids"]
            conts = [tok(cont, add_special_tokens=False)["input_ids"] for cont in req.continuations]
            keep = self.max_length - max(len(c) for c in conts)
            self.stats["truncated_prompts"] += len(ctx) > keep
            text_rows.append((ri, ctx[-keep:], conts))
        # longest first: a batch holds contexts of similar length and pads little
        text_rows.sort(key=lambda r: (-len(r[1]), r[0]))
        image_rows.sort(key=lambda r: (-len(r[2]), r[0], r[1]))
        for start in range(0, len(text_rows), self.batch_size):
            chunk = text_rows[start:start + self.batch_size]
            for (ri, _, _), lps in zip(chunk, self._shared_context_logprobs([r[1] for r in chunk],
                                                                            [r[2] for r in chunk])):
                results[ri] = lps
        for start in range(0, len(image_rows), self.batch_size):
            chunk = image_rows[start:start + self.batch_size]
            tok.padding_side = "left"
            enc = self.processor(text=[r[2] for r in chunk], images=[im for r in chunk for im in r[3]],
                                 padding=True, return_tensors="pt")
            conts = [r[4] for r in chunk]
            for row, cont in zip(enc["input_ids"].tolist(), conts):
                self.stats["boundary_mismatches"] += row[-len(cont):] != cont
            extras = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
            lps = self._continuation_logprobs(enc["input_ids"], enc["attention_mask"], conts, **extras)
            for (ri, ci, *_), lp in zip(chunk, lps):
                results[ri][ci] = lp
        return results

    def _left_pad(self, seqs: list[list[int]]):
        torch = self.torch
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s):] = torch.tensor(s)
            mask[i, width - len(s):] = 1
        return ids, mask

    def _shared_context_logprobs(self, contexts: list[list[int]], conts: list[list[list[int]]]) -> list[list[float]]:
        """Summed log-probability of every continuation of every context: the left-padded contexts in
        one pass (cache kept, last position's logits predict each continuation's first token), then
        every (context, continuation) row in a second pass over the cache, selected per row."""
        torch = self.torch
        ids, mask = self._left_pad(contexts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(**self._on_device({"input_ids": ids, "attention_mask": mask, "position_ids": positions}),
                             use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float().cpu(), dim=-1)
            owner = [i for i, cs in enumerate(conts) for _ in cs]
            rows = [c for cs in conts for c in cs]
            cache = out.past_key_values
            cache.reorder_cache(torch.tensor(owner, device=self.device))     # one cache row per option
            width = max(len(c) for c in rows)
            cont_ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
            cont_mask = torch.zeros((len(rows), width), dtype=torch.long)
            for j, c in enumerate(rows):
                cont_ids[j, :len(c)] = torch.tensor(c)
                cont_mask[j, :len(c)] = 1
            lengths = mask.sum(-1)[owner]
            cont_pos = lengths.unsqueeze(1) + torch.arange(width).unsqueeze(0)
            full_mask = torch.cat([mask[owner], cont_mask], dim=1)
            logits = self.model(**self._on_device({"input_ids": cont_ids, "attention_mask": full_mask,
                                                   "position_ids": cont_pos}),
                                past_key_values=cache, use_cache=True).logits.float().cpu()
        steps = torch.log_softmax(logits, dim=-1)
        results: list[list[float]] = [[] for _ in conts]
        for j, c in enumerate(rows):
            if not c:
                results[owner[j]].append(0.0)
                continue
            total = float(first[owner[j], c[0]])
            if len(c) > 1:    # position t of the continuation predicts token t + 1
                total += float(steps[j, :len(c) - 1].gather(-1, torch.tensor(c[1:]).unsqueeze(-1)).sum())
            results[owner[j]].append(total)
        return results

    def _continuation_logprobs(self, ids, mask, conts: list[list[int]], **extras) -> list[float]:
        """Rows are left-padded, so every continuation ends at the last column; only the last
        max(len(cont)) + 1 positions go through the LM head."""
        torch = self.torch
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keep = max(len(c) for c in conts) + 1
        inputs = self._on_device({"input_ids": ids, "attention_mask": mask, "position_ids": positions, **extras})
        with torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=keep).logits.float().cpu()
        out = []
        for i, cont in enumerate(conts):
            # the position before continuation token j predicts it: kept columns keep-1-n .. keep-2
            steps = torch.log_softmax(logits[i, keep - 1 - len(cont):keep - 1], dim=-1)
            out.append(float(steps.gather(-1, torch.tensor(cont).unsqueeze(-1)).sum()))
        return out


def _merge_system(messages: list[dict]) -> list[dict]:
    system, user = messages[0]["content"], messages[1]["content"]
    if isinstance(user, list):
        text = system[0]["text"] if isinstance(system, list) else system
        return [{"role": "user", "content": [{"type": "text", "text": text + "\n\n"}, *user]}]
    return [{"role": "user", "content": f"{system}\n\n{user}"}]


# ---- OpenAI-compatible endpoint ---------------------------------------------------------------
def normalise_url(url: str) -> str:
    """The endpoint URL as an identity: no userinfo (a secret), no trailing slash, lower-case host."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.netloc:
        return url.strip().rstrip("/")
    host = (parts.hostname or "").lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), host, parts.path.rstrip("/"), parts.query, ""))


def local_endpoint_identity(llm_cfg) -> str:
    """The identity of the project's llama.cpp server (`endpoint: local`), stable across starts (the
    port is not): the served GGUF file's name and sha256 and the chat format that renders prompts."""
    from tasks.common.gguf import find_gguf
    from tasks.common.io import file_sha256

    server = llm_cfg.server
    model = Path(server.gguf) if server.gguf else find_gguf()
    return f"local:{model.name}:sha256-{file_sha256(model)[:16]}:{server.chat_format}"


def image_data_url(path: str, budget: ImageBudget, factor: int) -> str:
    """The image as training loads it (models.images.load_image), as a PNG data URL: lossless, so
    what the endpoint decodes is exactly the sized image."""
    buf = io.BytesIO()
    load_image(path, budget, factor).save(buf, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def endpoint_messages(prompt: Prompt, vision: bool, budget: ImageBudget | None = None,
                      factor: int = ENDPOINT_IMAGE_FACTOR) -> list[dict]:
    if vision and prompt.images:
        budget = budget or ImageBudget()
        content: Any = [{"type": "image_url", "image_url": {"url": image_data_url(v, budget, factor)}}
                        if k == "image" else {"type": "text", "text": v} for k, v in prompt.parts]
    else:
        content = prompt.text
    return [{"role": "system", "content": prompt.system}, {"role": "user", "content": content}]


SCOPE_FIELD = "endpoint"   # not an OpenAI request field: it scopes the cache key, never goes out


def _multimodal_client(cfg, base_url: str | None, scope: dict | None = None):
    """An LLMClient that also accepts OpenAI content-part lists (text + image_url) as content, and whose
    cache keys are scoped by `scope` ({endpoint identity, revision}).

    The scope goes into `payload()`, what the client hashes into the cache key and stores beside the
    reply (so an entry says which endpoint answered it), and is taken out again before the request is
    sent: the endpoint sees the same request as before."""
    from tasks.llm.client import LLMClient

    class MultimodalLLMClient(LLMClient):
        def payload(self, messages, **params):
            flat = [{"role": m["role"], "content": json.dumps(m["content"], sort_keys=True)
                     if isinstance(m.get("content"), list) else m.get("content")} for m in messages]
            out = super().payload(flat, **params)   # validation + sampling defaults
            out["messages"] = [{"role": m["role"], "content": m["content"]} for m in messages]
            if scope is not None:
                out[SCOPE_FIELD] = dict(scope)
            return out

        def _request(self, payload, key):
            return super()._request({k: v for k, v in payload.items() if k != SCOPE_FIELD}, key)

    return MultimodalLLMClient(cfg, base_url=base_url)


class EndpointModel:
    supports_loglik = False

    def __init__(self, llm_cfg, *, base_url: str | None = None, vision: bool = False,
                 concurrency_batch: int = 8, revision: str = "", identity: str = "",
                 images: dict[str, Any] | None = None):
        """identity: the endpoint's stable identity (default: its normalised URL; `local_endpoint_identity`
        for the project's server); revision: what the user says is served (a checkpoint name or
        hash), for an endpoint whose URL and model name stay while the model behind them changes."""
        self.identity = identity or normalise_url(base_url or llm_cfg.base_url)
        self.revision = revision
        self.client = _multimodal_client(llm_cfg, base_url, {"id": self.identity, "revision": revision})
        self.vision = vision
        self.budget = image_budget(ImageBudget(), images)
        self.factor = ENDPOINT_IMAGE_FACTOR
        self.batch_size = concurrency_batch
        self.name = llm_cfg.model
        self.stats: dict = {}         # what goes into summary.json: nothing that varies between runs

    @property
    def client_stats(self) -> dict:
        """Requests, cache hits, retries: MLflow only (a re-run is served from the response cache)."""
        return dict(self.client.stats)

    def describe(self) -> dict:
        out = {"adapter": "endpoint", "model": self.client.cfg.model, "endpoint": self.identity,
               "revision": self.revision, "vision": self.vision}
        if self.vision:
            out["images"] = image_identity(self.budget, self.factor)
        return out

    def generate(self, batch: Sequence[tuple[Item, Prompt]], max_new_tokens: int) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        ready, chats = [], []
        for i, (_, p) in enumerate(batch):
            try:
                chats.append(endpoint_messages(p, self.vision, self.budget, self.factor))
            except ImageError as e:
                results[i] = image_failure(e)
                continue
            ready.append(i)
        if chats:
            outs = self.client.complete_many(chats, return_exceptions=True, temperature=0.0,
                                             max_tokens=max_new_tokens)
            for i, out in zip(ready, outs):
                results[i] = out
        return results

    def loglik(self, batch):
        raise AdapterError("log-likelihood mode needs a local HF model: chat endpoints return no "
                           "prompt log-probabilities")

    def close(self) -> None:
        self.client.close()


# ---- predictions file -------------------------------------------------------------------------
MAX_PREDICTIONS_BYTES = 1 << 30   # every row is held in memory: a few GB of Python objects at most


def _prediction_row(raw: bytes) -> tuple[tuple[str, str] | None, dict | str]:
    """(key, row) of one line, or (None, why the line is unusable)."""
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "invalid_utf8"
    except ValueError:
        return None, "bad_json"
    try:
        return (str(row["benchmark"]), str(row["id"])), row
    except (KeyError, TypeError):
        return None, "missing_field"


class PredictionsModel:
    vision = True      # the outputs exist already, whatever produced them

    def __init__(self, path: str | Path, *, max_line_bytes: int = MAX_RECORD_BYTES,
                 max_file_bytes: int = MAX_PREDICTIONS_BYTES):
        self.path = Path(path)
        if not self.path.is_file():
            raise AdapterError(f"predictions file missing: {self.path}")
        size = self.path.stat().st_size
        if size > max_file_bytes:
            raise AdapterError(f"predictions file too large: {self.path} has {size} bytes > {max_file_bytes} "
                               "(every row is held in memory; split the file or raise the cap)")
        self.rows: dict[tuple[str, str], dict] = {}
        self.bad_lines = 0
        self.bad_line_reasons: dict[str, int] = {}
        self.duplicates = 0
        with open(self.path, "rb") as f:
            for _, raw, _ in iter_bounded_lines(f, max_line_bytes):
                if raw is not None and not raw.strip():
                    continue
                key, row = (None, "line_too_large") if raw is None else _prediction_row(raw)
                if key is None:
                    self.bad_lines += 1
                    self.bad_line_reasons[row] = self.bad_line_reasons.get(row, 0) + 1
                    continue
                if key in self.rows:
                    self.duplicates += 1      # the last row wins: a re-run appended a newer answer
                self.rows[key] = row
        self.supports_loglik = any("option_logprobs" in r for r in self.rows.values())
        self.used: set[tuple[str, str]] = set()
        self.name = self.path.stem
        self.stats = {"bad_lines": self.bad_lines, "duplicate_rows": self.duplicates}
        if self.bad_line_reasons:  # only when there are some: a clean file's stats are as they were
            self.stats["bad_line_reasons"] = dict(sorted(self.bad_line_reasons.items()))

    def describe(self) -> dict:
        h = file_sha256(self.path)[:16]  # streamed: the file is never read whole a second time
        return {"adapter": "predictions", "path": display_path(self.path), "sha256": h}

    def _row(self, item: Item) -> dict | None:
        key = (item.benchmark, item.id)
        self.used.add(key)
        return self.rows.get(key)

    def generate(self, batch: Sequence[tuple[Item, Prompt]], max_new_tokens: int) -> list[Any]:
        out = []
        for item, _ in batch:
            row = self._row(item)
            text = None if row is None else row.get("output", row.get("prediction"))
            out.append(NoOutput("missing_prediction") if not isinstance(text, str) else text)
        return out

    def loglik(self, batch: Sequence[tuple[Item, LoglikRequest]]) -> list[Any]:
        out = []
        for item, req in batch:
            row = self._row(item) or {}
            lps = row.get("option_logprobs")
            ok = isinstance(lps, list) and len(lps) == len(req.continuations) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in lps)
            out.append([float(x) for x in lps] if ok else NoOutput("missing_prediction"))
        return out

    def unmatched(self) -> int:
        """Prediction rows for items this run did not evaluate (wrong ids, other benchmarks, limits)."""
        return len(set(self.rows) - self.used)
