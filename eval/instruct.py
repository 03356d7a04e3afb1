"""Instruction following on medical requests (IFEval-style): does the checkpoint obey constraints on
the form of its reply, in one turn and across a conversation?

    params = InstructParams()                                       # the `eval.instruct` params block
    bench = build_items(params, data_root)                          # .items, .version: from params.seed
    res = run_instruct(adapter, params, data_root, work_dir, style="direct", batch_size=8)
    res.metrics, res.summary, res.rows                               # metrics.json `instruct`, audit rows

1. Topics. Names read from the MeSH tree (`vocabulary`, under data_root) in three documented
   branches (`TOPIC_BRANCHES`): diseases (C01-C20, tree depth 2-3), drug classes by therapeutic use
   (D27.505.954, depth 4-5) and procedures (E04 surgical, E01.370 diagnostic; depth 2-3). Names with a
   comma or parentheses (MeSH's inverted forms), veterinary words or over `MAX_TOPIC_CHARS` characters
   are left out, each descriptor is kept once (its first tree number), and names keep MeSH's spelling.
2. Items. Single-turn: a request frame of the topic's kind ("Describe the usual treatment of {topic}.")
   plus 1..`max_constraints` conflict-free constraints of `constraints.SPLITS["eval"]` (never the kinds
   SFT data is built from), their instructions appended. Multi-turn: turn 1 states constraints for the
   whole conversation with a question; turn 1's assistant reply and a second exchange are fixed
   history whose assistant replies are built by code (`REGISTRY[kind].apply` on a short neutral text,
   checked to satisfy every constraint), so the history never contradicts the instruction; turn 3 is a
   new question, and the model's reply to it is checked against turn 1's constraints (persistence).
   Item i is drawn from its own generator (seed, kind of item, i), so a larger count keeps every
   earlier item unchanged; the benchmark version is the sha256 of the items' canonical JSON.
3. Generation (`generate_chats`): a local HF checkpoint renders each message list with its own chat
   template (the tokenizer's or processor's; the thinking switch as `HFModel.render_chat` sets it),
   left padding, greedy, `batch_size` at a time; an OpenAI-compatible endpoint gets the message lists
   through its client's `complete_many`; any other adapter (a predictions file holds single-prompt
   outputs only) skips every item with the reason `adapter_cannot_chat`. An adapter of its own may
   offer `chat(chats, max_new_tokens, thinking)`. A checkpoint evaluated in the thinking style may
   reason inside <think>...</think> (budget `max_new_tokens_thinking`); the block is stripped
   (`constraints.strip_thinking`) before any check.
4. Resume. Raw replies go to `<work_dir>/instruct_items.jsonl` as they come, under a fingerprint of
   the model identity, style, token budget and rendering (`instruct_run.json`); each row is keyed by
   the item's id and content digest, so an answered item is never asked again, and replies are
   re-checked on every run (a checker fix needs no new generation).
5. Scores (`score_rows`, `aggregate`): IFEval's four, over single-turn prompts: prompt-level strict /
   loose accuracy (every constraint of the prompt holds) and instruction-level strict / loose accuracy
   (per constraint); the same per constraint category and kind, and for multi-turn items
   (persistence: every turn-1 constraint still holds in turn 3). Every proportion carries its 95%
   Wilson interval and k (`<name>_ci_low`, `<name>_ci_high`, `<name>_correct`), the shape the
   progression reads as a proportion.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval import constraints as C
from eval.intervals import wilson
from eval.models import EndpointModel, HFModel, NoOutput, display_path
from eval.runner import ResultsFile, RunInterrupted

ITEMS_FILE = "instruct_items.jsonl"      # work dir: raw replies (resume); out dir: the audited items
RUN_FILE = "instruct_run.json"
SPLIT = "eval"                           # constraint kinds never used to build SFT data
RENDER_VERSION = 1                       # bump when the rendering of chats changes (part of the fingerprint)

SYSTEM = "You are a helpful medical assistant."
THINKING_NOTE = ("You may first think inside <think> and </think>; everything after </think> is your reply, "
                 "and it must follow the instructions.")
PERSIST = "In this reply and in every later reply of this conversation, follow these instructions:"


@dataclasses.dataclass
class InstructParams:
    """The `eval.instruct` params block (every key has a default; none changes the benchmark runs'
    fingerprint: the instruct replies have their own cache)."""
    enabled: bool = True
    single_items: int = 40              # single-turn prompts: 40 x ~2 constraints ~ 80 instructions, a
                                        # Wilson half-width of ~10 points on instruction-level accuracy
    multi_turn_items: int = 12          # persistence items (each costs a 3-turn prompt)
    max_constraints: int = 3            # 1..max per single-turn prompt (multi-turn: 1..min(2, max))
    max_new_tokens: int = 192           # direct replies: room for the longest constraint (word counts)
    max_new_tokens_thinking: int = 384  # thinking style: the <think> block comes first
    vocabulary: str = "vocab/mesh_2017_tree.txt"   # MeSH tree (tree number, UI, term), under data_root
    seed: int = 20240611                # item draws: a fixed benchmark, whatever the eval seed

    def __post_init__(self) -> None:
        if self.single_items < 0 or self.multi_turn_items < 0:
            raise ValueError("instruct.single_items and instruct.multi_turn_items must be >= 0")
        if not 1 <= self.max_constraints <= 4:
            raise ValueError("instruct.max_constraints must be in 1..4 (constraints.sample_combination's range)")
        if self.max_new_tokens < 1 or self.max_new_tokens_thinking < 1:
            raise ValueError("instruct.max_new_tokens and max_new_tokens_thinking must be >= 1")


# ---- topics -----------------------------------------------------------------------------------
# kind -> (tree-number pattern, minimum and maximum depth counted in tree-number parts)
TOPIC_BRANCHES: dict[str, tuple[str, int, int]] = {
    "disease": (r"C(0[1-9]|1[0-9]|20)(\.|$)", 2, 3),       # C21-C26: animal, occupational, injuries, ...
    "drug_class": (r"D27\.505\.954\.", 4, 5),               # pharmacologic actions: therapeutic uses
    "procedure": (r"(E04|E01\.370)\.", 2, 3),               # surgical; diagnostic techniques
}
TOPIC_KINDS = tuple(TOPIC_BRANCHES)
MAX_TOPIC_CHARS = 48
VETERINARY = re.compile(r"\b(animal|animals|swine|porcine|bovine|avian|cattle|sheep|poultry|fish|canine|feline|"
                        r"equine|horse|dog|cat|rodent|murine|mouse|goat|ovine|caprine|simian|mink|bird)s?\b", re.I)

# Request frames per topic kind; each reads well with MeSH's singular and plural headings.
FRAMES: dict[str, tuple[str, ...]] = {
    "disease": ("Explain what is meant by {topic}.", "Describe the usual treatment of {topic}.",
                "Describe the common symptoms of {topic}.", "Explain how a doctor usually diagnoses {topic}.",
                "Describe the main causes of {topic}."),
    "drug_class": ("Explain what {topic} are used for.", "Describe the common side effects of {topic}.",
                   "Explain how {topic} work in the body.",
                   "Describe what a patient should know before taking {topic}."),
    "procedure": ("Explain what is meant by {topic}.", "Describe the situations in which doctors use {topic}.",
                  "Describe what a patient should expect during {topic}.", "Describe the main risks of {topic}."),
}
# Neutral history replies (multi-turn), before the constraints' `apply_all` shapes them: general
# statements true of any topic, long enough for the largest word floor after sentence trims; a Chinese
# version for `language.chinese`, which code cannot bring about by rewriting English.
NEUTRAL = ("Here is a general overview of {topic}.", "The details differ from one patient to another.",
           "A clinician can explain how this applies to a particular person and answer any questions.",
           "Reliable sources and a doctor's advice help with decisions about care.",
           "Tests, treatment choices and follow-up visits are planned together with the care team.",
           "Symptoms that change or get worse are a reason to seek medical advice soon.",
           "Written information from the clinic can help a patient remember what was discussed.",
           "Family members may also find it useful to take part in these conversations.")
NEUTRAL_ZH = ("以下是关于{topic}的一般性介绍。", "每位患者的具体情况各不相同。", "医生可以解释这些信息如何适用于某个人并回答问题。",
              "可靠的资料和医生的建议有助于做出护理决定。", "检查和治疗方案以及随访应与医疗团队共同计划。",
              "如果症状发生变化或加重应尽快就医。")
HISTORY_SOURCE = "general medical knowledge"     # what a shaped history reply names on its Source: line


@dataclasses.dataclass(frozen=True)
class Topic:
    name: str
    kind: str          # disease | drug_class | procedure
    tree: str          # its first MeSH tree number
    ui: str            # MeSH descriptor UI


def load_topics(path: str | Path) -> list[Topic]:
    """The documented subset of MeSH terms (see TOPIC_BRANCHES), sorted by (kind, name)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instruct.vocabulary: no MeSH tree file at {path}")
    patterns = {k: (re.compile(p), lo, hi) for k, (p, lo, hi) in TOPIC_BRANCHES.items()}
    seen: dict[str, Topic] = {}
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3 or not parts[0][:1].isalpha() or parts[0] == "Tree Number":
                continue
            tree, ui, term = (p.strip() for p in parts)
            depth = tree.count(".") + 1
            kind = next((k for k, (rx, lo, hi) in patterns.items() if rx.match(tree) and lo <= depth <= hi), None)
            if (kind is None or not term or len(term) > MAX_TOPIC_CHARS or any(ch in term for ch in ",()[]")
                    or not term.isascii() or VETERINARY.search(term)
                    or (kind == "drug_class" and not term.endswith("s"))):     # the frames say "are"
                continue
            if ui not in seen or tree < seen[ui].tree:      # a descriptor under several trees: its first
                seen[ui] = Topic(term, kind, tree, ui)
    topics = sorted(seen.values(), key=lambda t: (t.kind, t.name, t.ui))
    missing = [k for k in TOPIC_KINDS if not any(t.kind == k for t in topics)]
    if missing:
        raise ValueError(f"instruct.vocabulary {path}: no topics of kind(s) {missing} (not a MeSH tree file?)")
    return topics


# ---- items ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class InstructItem:
    id: str                                    # single-0007 | multi-0003
    turns: str                                 # single | multi
    messages: tuple[dict, ...]                 # the chat up to the last user turn (no system message)
    constraints: tuple[C.Constraint, ...]      # checked on the reply to the last user turn
    topics: tuple[str, ...]                    # the topic of each user turn
    frames: tuple[str, ...]                    # the request frame of each user turn

    def to_json(self) -> dict:
        return {"id": self.id, "turns": self.turns, "messages": [dict(m) for m in self.messages],
                "constraints": [c.to_json() for c in self.constraints], "topics": list(self.topics),
                "frames": list(self.frames)}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()[:16]


def _pick(rng: np.random.Generator, seq: Sequence):
    return seq[int(rng.integers(len(seq)))]


def _request(rng: np.random.Generator, by_kind: dict[str, list[Topic]]) -> tuple[str, str, Topic]:
    """(request text, frame, topic): a kind uniformly (so diseases do not crowd out the rest), a topic
    of that kind, a frame of that kind."""
    kind = _pick(rng, TOPIC_KINDS)
    topic = _pick(rng, by_kind[kind])
    frame = _pick(rng, FRAMES[kind])
    return frame.format(topic=topic.name), frame, topic


def _ctx(topic: Topic) -> dict:
    """What a constraint may draw on: the request's topic, and the source a shaped history reply names."""
    return {"topic": topic.name, "keywords": [topic.name], "source": HISTORY_SOURCE}


def _single(i: int, params: InstructParams, by_kind: dict[str, list[Topic]]) -> InstructItem:
    rng = np.random.default_rng([params.seed, 0, i])
    text, frame, topic = _request(rng, by_kind)
    n = int(rng.integers(1, params.max_constraints + 1))
    cs = tuple(C.sample_combination(rng, n, SPLIT, _ctx(topic)))
    prompt = " ".join([text, *(c.instruction for c in cs)])
    return InstructItem(f"single-{i:04d}", "single", ({"role": "user", "content": prompt},), cs,
                        (topic.name,), (frame,))


def history_reply(cs: Sequence[C.Constraint], topic: Topic, rng: np.random.Generator) -> str | None:
    """A neutral reply about `topic` (its sentences in a seeded rotation) shaped by the constraints
    (`constraints.apply_all`, checked there), or None when code cannot make it satisfy them all."""
    bank = NEUTRAL_ZH if any(c.kind == "language.chinese" for c in cs) else NEUTRAL
    start = int(rng.integers(1, len(bank)))
    text = " ".join([bank[0].format(topic=topic.name), *bank[start:], *bank[1:start]])
    return C.apply_all(list(cs), text)


MULTI_TRIES = 50      # constraint draws per multi-turn item before giving up (apply cannot shape them)


def _multi(i: int, params: InstructParams, by_kind: dict[str, list[Topic]]) -> InstructItem:
    """Turn 1 states the constraints for the whole conversation; turns 1 and 2 are answered by code,
    consistently with them; the model answers turn 3."""
    rng = np.random.default_rng([params.seed, 1, i])
    asks = [_request(rng, by_kind) for _ in range(3)]
    for _ in range(MULTI_TRIES):
        n = int(rng.integers(1, min(2, params.max_constraints) + 1))
        cs = tuple(C.sample_combination(rng, n, SPLIT, _ctx(asks[0][2])))
        replies = [history_reply(cs, asks[t][2], rng) for t in range(2)]
        if all(r is not None for r in replies):
            break
    else:
        raise RuntimeError(f"multi-{i:04d}: no constraint draw of split {SPLIT!r} in {MULTI_TRIES} tries could "
                           f"shape the history replies (REGISTRY[kind].apply returned None)")
    first = " ".join([asks[0][0], PERSIST, *(c.instruction for c in cs)])
    messages = ({"role": "user", "content": first}, {"role": "assistant", "content": replies[0]},
                {"role": "user", "content": asks[1][0]}, {"role": "assistant", "content": replies[1]},
                {"role": "user", "content": asks[2][0]})
    return InstructItem(f"multi-{i:04d}", "multi", messages, cs, tuple(a[2].name for a in asks),
                        tuple(a[1] for a in asks))


@dataclasses.dataclass(frozen=True)
class InstructSet:
    items: list[InstructItem]       # single-turn items, then multi-turn items
    version: str                    # sha256 (16 hex) of the items' canonical JSON: the benchmark version
    topics: int                     # topics in the vocabulary subset the requests draw from


def build_items(params: InstructParams, data_root: str | Path) -> InstructSet:
    """`single_items` single-turn then `multi_turn_items` multi-turn items, deterministic from
    `params.seed` (item i from its own generator: a larger count keeps the earlier items)."""
    topics = load_topics(Path(data_root) / params.vocabulary)
    by_kind = {k: [t for t in topics if t.kind == k] for k in TOPIC_KINDS}
    items = ([_single(i, params, by_kind) for i in range(params.single_items)]
             + [_multi(i, params, by_kind) for i in range(params.multi_turn_items)])
    blob = json.dumps([it.to_json() for it in items], sort_keys=True)
    return InstructSet(items, hashlib.sha256(blob.encode()).hexdigest()[:16], len(topics))


# ---- generation -------------------------------------------------------------------------------
def system_message(thinking: bool) -> dict:
    return {"role": "system", "content": f"{SYSTEM} {THINKING_NOTE}" if thinking else SYSTEM}


def render_hf_chat(model: HFModel, messages: Sequence[dict], thinking: bool) -> str:
    """One chat as the checkpoint's chat template renders it, with the generation prompt; the
    `enable_thinking` switch as HFModel.render_chat sets it (off pre-fills an empty <think></think>
    for a thinking-trained checkpoint; a checkpoint never trained on <think> gets the plain prompt).
    Without a template: plain `Role: text` lines ending in `Assistant:`."""
    owner = model.chat_template
    if owner is None:
        lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n".join([*lines, "Assistant:"])
    if owner is model.processor:          # processor templates take content-part lists
        messages = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    kw: dict = {"add_generation_prompt": True, "tokenize": False}
    if "enable_thinking" in str(owner.chat_template):
        kw["enable_thinking"] = thinking if model.thinking_switch else True
    try:
        return owner.apply_chat_template(list(messages), **kw)
    except Exception:  # noqa: BLE001 - a template without a system role: system text joins the first user turn
        return owner.apply_chat_template(_merge_system(list(messages)), **kw)


def _merge_system(messages: list[dict]) -> list[dict]:
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], [dict(m) for m in messages[1:]]
    if isinstance(system, list):
        rest[0]["content"] = [{"type": "text", "text": system[0]["text"] + "\n\n"}, *rest[0]["content"]]
    else:
        rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
    return rest


def hf_generate_chats(model: HFModel, chats: Sequence[Sequence[dict]], max_new_tokens: int,
                      thinking: bool) -> list[Any]:
    """Greedy replies of a local checkpoint to whole chats, one left-padded batch. A chat longer than
    the context allows is not cut (cutting from the left would drop turn 1, where the constraints are
    stated): it gets NoOutput("prompt_too_long"), a failure of that item."""
    torch = model.torch
    from transformers import GenerationConfig

    chat = model.chat_template is not None
    texts = [render_hf_chat(model, m, thinking) for m in chats]
    tok = model.tokenizer
    tok.padding_side = "left"
    limit = model.max_length - max_new_tokens
    ids = tok(texts, add_special_tokens=not chat)["input_ids"]
    results: list[Any] = [NoOutput("prompt_too_long") if len(x) > limit else None for x in ids]
    ready = [i for i, r in enumerate(results) if r is None]
    if not ready:
        return results
    enc = tok([texts[i] for i in ready], return_tensors="pt", padding=True, add_special_tokens=not chat)
    gen = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                           eos_token_id=model.model.generation_config.eos_token_id or tok.eos_token_id)
    with torch.inference_mode():
        out = model.model.generate(**model._on_device(dict(enc)), generation_config=gen)
    for i, text in zip(ready, tok.batch_decode(out[:, enc["input_ids"].shape[1]:].cpu(), skip_special_tokens=True)):
        results[i] = text
    return results


def endpoint_generate_chats(model: EndpointModel, chats: Sequence[Sequence[dict]], max_new_tokens: int,
                            thinking: bool) -> list[Any]:
    """Replies from an OpenAI-compatible endpoint (its scoped, cached client); a failed request is an
    LLMError in its slot."""
    return model.client.complete_many([list(m) for m in chats], return_exceptions=True, temperature=0.0,
                                      max_tokens=max_new_tokens)


def chat_generator(adapter) -> Callable[[Sequence[Sequence[dict]], int, bool], list[Any]] | None:
    """How `adapter` answers whole chats, or None when it cannot (a predictions file)."""
    if callable(getattr(adapter, "chat", None)):
        return adapter.chat
    if isinstance(adapter, HFModel):
        return lambda chats, budget, thinking: hf_generate_chats(adapter, chats, budget, thinking)
    if isinstance(adapter, EndpointModel):
        return lambda chats, budget, thinking: endpoint_generate_chats(adapter, chats, budget, thinking)
    return None


# ---- resumable replies ------------------------------------------------------------------------
def fingerprint(adapter, style: str, budget: int) -> str:
    blob = json.dumps({"model": adapter.describe(), "style": style, "max_new_tokens": budget, "system": SYSTEM,
                       "thinking_note": THINKING_NOTE, "persist": PERSIST, "render": RENDER_VERSION},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def reply_store(work_dir: Path, fp: str, *, fresh: bool, restart_on_mismatch: bool = False) -> ResultsFile:
    """<work_dir>/instruct_items.jsonl + instruct_run.json: raw replies of one fingerprint, appended as
    they come, keyed by (item id, item digest): the runner's resumable results file under other names."""
    return ResultsFile(work_dir, fp, fresh=fresh, restart_on_mismatch=restart_on_mismatch, items_file=ITEMS_FILE,
                       run_file=RUN_FILE, key=lambda row: (row["id"], row["digest"]), what="instruct replies")


# ---- scoring ----------------------------------------------------------------------------------
def score_item(item: InstructItem, output: str | None, failure: str | None = None) -> dict:
    """The audit row of one item: its content, the reply and each constraint's strict / loose verdict.
    No reply (`failure`) or an empty one after the thinking block is stripped fails every constraint."""
    reply = C.strip_thinking(output) if output is not None else ""
    if failure is None and not reply.strip():
        failure = "empty"
    cs = list(item.constraints)
    strict = [False] * len(cs) if failure else [bool(x) for x in C.check_all(cs, reply)]
    loose = [False] * len(cs) if failure else [bool(x) for x in C.check_all(cs, reply, loose=True)]
    return {**item.to_json(), "digest": item.digest, "output": output, "failure": failure,
            "strict": strict, "loose": loose, "prompt_strict": all(strict), "prompt_loose": all(loose),
            "categories": [c.category for c in cs], "kinds": [c.kind for c in cs]}


def proportion(name: str, values: Sequence[bool]) -> dict[str, float]:
    """`name` (the share of True), its 95% Wilson interval and k; {} for no values."""
    if not values:
        return {}
    k, n = sum(bool(v) for v in values), len(values)
    lo, hi = wilson(k, n)
    return {name: k / n, f"{name}_ci_low": lo, f"{name}_ci_high": hi, f"{name}_correct": k}


def _levels(rows: list[dict], prompt_prefix: str) -> dict:
    out: dict[str, Any] = {"prompts": len(rows), "instructions": sum(len(r["strict"]) for r in rows)}
    for mode in ("strict", "loose"):
        out.update(proportion(f"{prompt_prefix}_{mode}", [r[f"prompt_{mode}"] for r in rows]))
        out.update(proportion(f"instruction_{mode}", [v for r in rows for v in r[mode]]))
    return out


def aggregate(rows: list[dict], skipped: int = 0) -> dict:
    """metrics.json `instruct`: IFEval's four over single-turn prompts (prompt_* and instruction_*,
    strict and loose), per constraint category and kind (instruction level, single-turn), and
    `multi_turn` (persistence_*: every turn-1 constraint holds in turn 3; instruction_*)."""
    single = [r for r in rows if r["turns"] == "single"]
    multi = [r for r in rows if r["turns"] == "multi"]
    out: dict[str, Any] = {"items": len(rows) + skipped, "scored": len(rows), "skipped": skipped,
                           "failures": sum(r["failure"] is not None for r in rows), **_levels(single, "prompt")}
    for group, field in (("categories", "categories"), ("kinds", "kinds")):
        verdicts: dict[str, dict[str, list[bool]]] = defaultdict(lambda: {"strict": [], "loose": []})
        for r in single:
            for name, s, lo in zip(r[field], r["strict"], r["loose"]):
                verdicts[name]["strict"].append(s)
                verdicts[name]["loose"].append(lo)
        out[group] = {name: {"instructions": len(v["strict"]), **proportion("strict", v["strict"]),
                             **proportion("loose", v["loose"])} for name, v in sorted(verdicts.items())}
    out["multi_turn"] = _levels(multi, "persistence")
    return out


# ---- the run ----------------------------------------------------------------------------------
@dataclasses.dataclass
class InstructResult:
    rows: list[dict]                     # audit rows of the scored items, in item order
    skipped: list[dict]                  # items not asked, each with `skipped`: the reason
    metrics: dict                        # metrics.json `instruct`
    summary: dict                        # summary.json `instruct`
    asked: int = 0                       # items generated in this run (the rest came from the store)


def run_instruct(adapter, params: InstructParams, data_root: str | Path, work_dir: str | Path, *,
                 style: str = "direct", batch_size: int = 8, progress: bool = False, fresh: bool = False,
                 restart_on_mismatch: bool = False, bench: InstructSet | None = None) -> InstructResult:
    """Build the items (or take `bench`), answer those the store lacks, score all; RunInterrupted when
    the adapter failed for some (their batch's other replies are saved: run again to resume)."""
    from tqdm import tqdm

    bench = bench if bench is not None else build_items(params, data_root)
    items = bench.items
    thinking = style == "thinking"
    budget = params.max_new_tokens_thinking if thinking else params.max_new_tokens
    generate = chat_generator(adapter)
    summary = {"version": bench.version, "split": SPLIT, "eval_kinds": sorted(C.SPLITS[SPLIT]),
               "vocabulary": display_path(Path(data_root) / params.vocabulary), "topics": bench.topics,
               "single_items": sum(it.turns == "single" for it in items),
               "multi_turn_items": sum(it.turns == "multi" for it in items), "style": style,
               "max_new_tokens": budget, "system": system_message(thinking)["content"]}
    if generate is None:
        reason = "adapter_cannot_chat"
        skipped = [{**it.to_json(), "digest": it.digest, "skipped": reason} for it in items]
        summary.update(fingerprint=None, skip_reasons={reason: len(items)} if items else {})
        return InstructResult([], skipped, aggregate([], len(items)), summary)
    fp = fingerprint(adapter, style, budget)
    store = reply_store(Path(work_dir), fp, fresh=fresh, restart_on_mismatch=restart_on_mismatch)
    pending = [it for it in items if (it.id, it.digest) not in store.rows]
    # longest chat first: a batch holds chats of similar length and pads little
    pending.sort(key=lambda it: (-sum(len(m["content"]) for m in it.messages), it.id))
    failures: list[str] = []
    bar = tqdm(total=len(pending), disable=not progress, desc=f"instruct {getattr(adapter, 'name', '')}", unit="item")
    try:
        for start in range(0, len(pending), max(1, batch_size)):
            batch = pending[start:start + max(1, batch_size)]
            chats = [[system_message(thinking), *it.messages] for it in batch]
            for it, out in zip(batch, generate(chats, budget, thinking)):
                if isinstance(out, BaseException):
                    failures.append(f"{it.id}: {type(out).__name__}: {str(out)[:200]}")
                    continue
                failure = out.reason if isinstance(out, NoOutput) else None
                store.append({"id": it.id, "digest": it.digest, "output": None if failure else str(out),
                              "failure": failure})
            store.flush()
            bar.update(len(batch))
            if failures:
                raise RunInterrupted(f"instruct: {len(failures)} item(s) failed, {len(store.rows)} reply(ies) saved "
                                     f"in {store.path}; run again to resume. First: {failures[0]}")
    finally:
        bar.close()
        store.close()
    rows = [score_item(it, store.rows[(it.id, it.digest)]["output"], store.rows[(it.id, it.digest)]["failure"])
            for it in items]
    summary.update(fingerprint=fp, skip_reasons={})
    return InstructResult(rows, [], aggregate(rows), summary, asked=len(pending))


def write_items(result: InstructResult, path: str | Path) -> None:
    """The audited items of a run (instruct_items.jsonl in the eval output): every item with its
    messages, constraints, reply and verdicts; a skipped item with its reason instead."""
    with open(path, "w", encoding="utf-8") as f:
        for row in result.rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
        for row in result.skipped:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
