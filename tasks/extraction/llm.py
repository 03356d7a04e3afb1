"""The paper's LLM entity extractor (§3.2.1 Stage 1 and 2) through the project's one LLM client.

Batch chunking: sentences from a stream of documents are packed into batches of at most
`batch_sentences` sentences and `max_batch_chars` characters, and one request asks for every
sentence of the batch at once. The reply must be one JSON object with one key per sentence,
`Sentence0` ... `Sentence<n-1>`, whose value is "None" when the sentence has no medical entity:

    stage1 (untyped, §3.2.1 Stage 1):     {"Sentence0": "E1,E2", "Sentence1": "None"}
    stage2 (typed, Supp. C, the default): {"Sentence0": ["Disease:E1", "Chemical:E2"], "Sentence1": "None"}

The prompts are our own wording of the paper's requirements (medical entities only, no duplicates,
explicit "None", strict JSON; Stage 2 adds types, robustness to OCR/formatting noise and splitting
over-long phrases). Replies are parsed by `tasks.llm.parsing.parse_json_like`, which accepts JSON and
the paper's single-quoted Python-dict style and never evaluates anything.

Failure handling, per sentence: a reply that does not parse, is not a dict, lacks a sentence's key,
or gives a value of the wrong shape is retried once with a repair turn (the bad reply plus a short
correction, so the request differs from the cached one); sentences the repair still does not resolve,
and every sentence of a request that failed for good (timeouts and 5xx are retried by the client
first), are recorded in `DocResult.failures` with the raw reply text. Nothing is dropped silently.

Entity strings are mapped back to character offsets in their sentence (exact, then case- and
whitespace-insensitive; every occurrence that does not cut a word); strings that cannot be found
become mentions with start/end None.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Literal, Sequence

from tasks.extraction.common import (DocResult, check_entity, clean_surface, dedupe_mentions,
                                      entity_rejection, find_occurrences, mention, split_sentences)

NONE_WORDS = frozenset({"none", "null", "n/a", ""})
RAW_CHARS = 4000        # raw reply text kept per failure record

DEFAULT_TYPES = ["Disease", "Symptom", "Chemical", "Drug", "Gene", "Protein", "Anatomy", "Procedure",
                 "Test", "Organism"]


@dataclasses.dataclass
class LLMExtractParams:
    prompt: Literal["stage2", "stage1"] = "stage2"   # stage2 = joint extraction + typing (Supp. C)
    batch_sentences: int = 8          # sentences per request (the paper's batch chunking)
    max_batch_chars: int = 1200       # sentence characters per request (fits n_ctx 2048 with the reply)
    max_tokens: int = 384             # reply budget per request
    max_docs: int = 200               # corpus documents sent to the LLM when extractor = llm
    constrained_json: bool = True     # response_format json_object + per-batch schema (llama.cpp, vLLM)
    max_entities_json: int = 6        # constrained decoding: entities per sentence at most
    max_entity_chars_json: int = 60   # constrained decoding: characters per entity name at most
    untyped_type: str = "Entity"      # type of entities returned without one (stage1, or "flu" in stage2)
    types: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_TYPES))

    def __post_init__(self):
        if self.batch_sentences < 1 or self.max_batch_chars < 1 or self.max_tokens < 1:
            raise ValueError("batch_sentences, max_batch_chars and max_tokens must be >= 1")


SYSTEM = "You are a careful medical information extraction system. You answer only with JSON."

_RULES_COMMON = (
    "Rules:\n"
    "1. Keep only informative medical terms: named diseases, symptoms, drugs and chemicals, genes and "
    "proteins, anatomy, procedures, tests, organisms. Leave out general words such as patients, study, "
    "treatment, effect or increase.\n"
    "2. List each entity once per sentence, copied as it is written in the sentence.\n"
)
PROMPT_STAGE1 = (
    "Find the medical entities in each numbered sentence below.\n\n" + _RULES_COMMON +
    "3. Join the entities of one sentence with commas in a single string.\n"
    '4. If a sentence has no medical entity, its value is the string "None".\n'
    "5. Reply with one JSON object and nothing else, with exactly one key per sentence "
    "(Sentence0 to Sentence{last}). Example:\n"
    '{{"Sentence0": "<entity>,<entity>", "Sentence1": "None"}}\n\n'
    "Sentences:\n{lines}"
)
PROMPT_STAGE2 = (
    "Find the medical entities in each numbered sentence below and give the type of each one.\n\n"
    + _RULES_COMMON +
    "3. Split an over-long phrase into the separate entities it names, e.g. \"renal and hepatic "
    'failure" gives "renal failure" and "hepatic failure".\n'
    "4. The sentences may contain stray symbols, broken words or extra spaces from OCR or formatting: "
    "ignore that noise.\n"
    '5. Write each entity as "Type:entity". Prefer these types: {types}.\n'
    '6. If a sentence has no medical entity, its value is the string "None".\n'
    "7. Reply with one JSON object and nothing else, with exactly one key per sentence "
    "(Sentence0 to Sentence{last}). Example:\n"
    '{{"Sentence0": ["<Type>:<entity>", "<Type>:<entity>"], "Sentence1": "None"}}\n\n'
    "Sentences:\n{lines}"
)
REPAIR = ("That reply could not be used ({problem}). Answer again with only the JSON object: keys "
          'Sentence0 to Sentence{last}, each value a list of "Type:entity" strings or the string "None".')
REPAIR_STAGE1 = ("That reply could not be used ({problem}). Answer again with only the JSON object: keys "
                 'Sentence0 to Sentence{last}, each value a comma-separated string of entities or "None".')

STAT_KEYS = ("batches", "sentences", "parsed_first", "repairs", "parsed_after_repair", "failed_sentences",
             "failed_unparseable", "failed_wrong_shape", "failed_missing_sentence", "failed_request_failed",
             "extra_keys", "entities_returned", "entities_unlocated")
_KEY = re.compile(r"^\s*sentence\s*[_ ]?(\d+)\s*$", re.IGNORECASE)


class SentenceProblem(ValueError):
    """A sentence value that has the wrong shape."""


def batch_messages(sentences: Sequence[str], params: LLMExtractParams) -> list[dict[str, str]]:
    """The chat for one batch of sentences (whitespace-collapsed in the prompt)."""
    lines = "\n".join(f"Sentence{i}: {' '.join(s.split())}" for i, s in enumerate(sentences))
    tmpl = PROMPT_STAGE2 if params.prompt == "stage2" else PROMPT_STAGE1
    user = tmpl.format(lines=lines, last=len(sentences) - 1, types=", ".join(params.types))
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def response_format(n: int, params: "LLMExtractParams") -> dict:
    """A JSON schema for a batch of n sentences, for grammar-constrained decoding (llama.cpp, vLLM).

    Each value is "None" or a short list of short strings ("Type:entity" for stage2), so the reply
    is valid JSON by construction and its length is bounded; the strict parser still checks it.
    """
    if params.prompt == "stage2":
        item = {"type": "string", "pattern": "^[A-Z][A-Za-z ]{0,23}:[^\"\\\\]{1,%d}$" % params.max_entity_chars_json}
        value = {"anyOf": [{"enum": ["None"]},
                           {"type": "array", "items": item, "minItems": 1,
                            "maxItems": params.max_entities_json}]}
    else:
        value = {"type": "string", "minLength": 1,
                 "maxLength": params.max_entities_json * (params.max_entity_chars_json + 1)}
    keys = [f"Sentence{i}" for i in range(n)]
    return {"type": "json_object",
            "schema": {"type": "object", "properties": {k: value for k in keys}, "required": keys}}


def make_batches(lengths: Sequence[int], max_sentences: int, max_chars: int) -> list[list[int]]:
    """Consecutive index groups of at most max_sentences items and max_chars characters (an item
    longer than max_chars gets a batch of its own)."""
    batches: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, n in enumerate(lengths):
        if cur and (len(cur) >= max_sentences or size + n > max_chars):
            batches.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += n
    if cur:
        batches.append(cur)
    return batches


def _known_type(name: str, types: Sequence[str]) -> str | None:
    low = name.strip().lower()
    return next((t for t in types if t.lower() == low), None)


def canonical_type(raw: str, params: LLMExtractParams) -> str:
    """A type as the table stores it: the spelling of a listed type, else trimmed with a capital."""
    t = " ".join(str(raw).strip().strip("<>[]\"'").split())
    if not t:
        return params.untyped_type
    return _known_type(t, params.types) or (t[0].upper() + t[1:])


def split_item(item: str, params: LLMExtractParams) -> tuple[str, str]:
    """("Type", "entity") from "Type:entity"; an item without a plausible type prefix is untyped."""
    if ":" in item:
        left, right = item.split(":", 1)
        if _known_type(right, params.types) and not _known_type(left, params.types):
            left, right = right, left                      # "metformin:Drug"
        if left.strip() and len(left) <= 40 and len(left.split()) <= 4:
            return canonical_type(left, params), right
    return params.untyped_type, item


def sentence_items(value: object, params: LLMExtractParams) -> list[tuple[str, str]]:
    """(type, raw entity string) pairs of one sentence's value; SentenceProblem if misshapen."""
    if value is None:
        return []
    if isinstance(value, str):
        if value.strip().lower() in NONE_WORDS:
            return []
        items = value.split(",")
    elif isinstance(value, list):
        items = []
        for v in value:
            if v is None:
                continue
            if not isinstance(v, str):
                raise SentenceProblem(f"list item of type {type(v).__name__}, expected a string")
            items.append(v)
    else:
        raise SentenceProblem(f"value of type {type(value).__name__}, expected a string or a list")
    out = []
    for it in items:
        if it.strip().lower() in NONE_WORDS and it.strip():
            continue                                     # "None" inside a list
        out.append(split_item(it, params))
    return out


def parse_batch_reply(reply: str, n: int, params: LLMExtractParams
                      ) -> tuple[dict[int, list[tuple[str, str]]], dict[int, tuple[str, str]], int]:
    """Parse one batch reply for n sentences.

    Returns (items per resolved sentence, (kind, detail) per unresolved sentence, extra keys).
    kinds: unparseable (no JSON object at all), wrong_shape, missing_sentence.
    """
    from tasks.llm.parsing import ParseError, parse_json_like

    try:
        obj = parse_json_like(reply, expect=dict, allow_bare_items=True)
    except ParseError as e:
        # A reply whose first structure is a complete list is the wrong shape; anything else
        # (prose, a truncated object whose inner lists still parse) is unparseable.
        first = re.search(r"[{\[]", reply or "")
        if first and first.group() == "[":
            try:
                parse_json_like(reply[first.start():], expect=list, allow_bare_items=True)
                return {}, {i: ("wrong_shape", "top level is a list, not an object") for i in range(n)}, 0
            except ParseError:
                pass
        return {}, {i: ("unparseable", str(e)[:300]) for i in range(n)}, 0
    values: dict[int, object] = {}
    extra = 0
    for k, v in obj.items():
        m = _KEY.match(k) if isinstance(k, str) else None
        idx = int(m.group(1)) if m else -1
        if 0 <= idx < n and idx not in values:
            values[idx] = v
        else:
            extra += 1
    ok: dict[int, list[tuple[str, str]]] = {}
    bad: dict[int, tuple[str, str]] = {}
    for i in range(n):
        if i not in values:
            bad[i] = ("missing_sentence", f"no key Sentence{i}")
            continue
        try:
            ok[i] = sentence_items(values[i], params)
        except SentenceProblem as e:
            bad[i] = ("wrong_shape", str(e))
    return ok, bad, extra


class LLMExtractor:
    """Batch entity extraction through an `LLMClient` (see module docstring)."""

    name = "llm"

    def __init__(self, client, params: LLMExtractParams | None = None, *, max_sentence_chars: int = 600,
                 max_entity_chars: int = 100):
        self.client = client
        self.params = params or LLMExtractParams()
        self.max_sentence_chars = max_sentence_chars
        self.max_entity_chars = max_entity_chars
        self.stats: Counter = Counter({k: 0 for k in STAT_KEYS})

    def _kwargs(self, n: int) -> dict:
        kw: dict = {"max_tokens": self.params.max_tokens}
        if self.params.constrained_json:
            kw["response_format"] = response_format(n, self.params)
        return kw

    def _complete(self, chats: list[list[dict]], sizes: list[int]) -> list:
        """Replies (str or LLMError) in order; grouped by batch size so each group shares kwargs."""
        out: list = [None] * len(chats)
        for n in sorted(set(sizes)):
            idx = [i for i, s in enumerate(sizes) if s == n]
            replies = self.client.complete_many([chats[i] for i in idx], return_exceptions=True,
                                                **self._kwargs(n))
            for i, r in zip(idx, replies):
                out[i] = r
        return out

    def extract(self, docs: Sequence[tuple[str, str]]) -> list[DocResult]:
        """DocResults for (doc_id, text) pairs, in order; sentences of several documents may share
        a request."""
        from tasks.llm.client import LLMError

        p = self.params
        results = [DocResult(doc_id) for doc_id, _ in docs]
        units: list[tuple[int, int, int, int]] = []          # (doc, sentence index, start, end)
        for di, (_, text) in enumerate(docs):
            spans = split_sentences(text or "", self.max_sentence_chars)
            results[di].sentences = len(spans)
            units.extend((di, si, s, e) for si, (s, e) in enumerate(spans))
        if not units:
            return results
        sent_text = [docs[di][1][s:e] for di, _, s, e in units]
        batches = make_batches([len(t) for t in sent_text], p.batch_sentences, p.max_batch_chars)
        chats = [batch_messages([sent_text[u] for u in b], p) for b in batches]
        sizes = [len(b) for b in batches]
        self.stats["batches"] += len(batches)
        self.stats["sentences"] += len(units)
        first = self._complete(chats, sizes)

        items: dict[int, list[tuple[str, str]]] = {}            # unit -> parsed items
        problems: dict[int, dict] = {}                           # unit -> failure record
        repair_chats, repair_batches = [], []
        for b, chat, reply in zip(batches, chats, first):
            if isinstance(reply, LLMError):
                for u in b:
                    problems[u] = {"kind": "request_failed", "detail": str(reply)[:500], "raw": None}
                continue
            ok, bad, extra = parse_batch_reply(reply, len(b), p)
            self.stats["extra_keys"] += extra
            for j, its in ok.items():
                items[b[j]] = its
            self.stats["parsed_first"] += len(ok)
            if bad:
                for j, (kind, detail) in bad.items():
                    problems[b[j]] = {"kind": kind, "detail": detail, "raw": reply[:RAW_CHARS]}
                kinds = sorted({k for k, _ in bad.values()})
                tmpl = REPAIR if p.prompt == "stage2" else REPAIR_STAGE1
                fix = tmpl.format(problem=", ".join(kinds), last=len(b) - 1)
                repair_chats.append(chat + [{"role": "assistant", "content": reply},
                                            {"role": "user", "content": fix}])
                repair_batches.append((b, sorted(bad)))
        if repair_chats:
            self.stats["repairs"] += len(repair_chats)
            second = self._complete(repair_chats, [len(b) for b, _ in repair_batches])
            for (b, todo), reply in zip(repair_batches, second):
                if isinstance(reply, LLMError):
                    for j in todo:
                        problems[b[j]]["raw_repair"] = None
                        problems[b[j]]["detail"] += f"; repair request failed: {str(reply)[:300]}"
                    continue
                ok, bad, extra = parse_batch_reply(reply, len(b), p)
                for j in todo:
                    if j in ok:
                        items[b[j]] = ok[j]
                        del problems[b[j]]
                        self.stats["parsed_after_repair"] += 1
                    else:
                        problems[b[j]]["raw_repair"] = reply[:RAW_CHARS]
                        problems[b[j]]["detail"] += f"; after repair: {bad[j][0]}: {bad[j][1]}"

        for u, (di, si, s, e) in enumerate(units):
            res = results[di]
            if u in problems:
                self.stats[f"failed_{problems[u]['kind']}"] += 1
                self.stats["failed_sentences"] += 1
                res.failures.append({"doc_id": res.doc_id, "sentence": si,
                                     "sentence_head": sent_text[u][:200], **problems[u]})
                continue
            self._add_mentions(res, docs[di][1], s, e, items[u])
        for res in results:
            res.entities = dedupe_mentions(res.entities)
        return results

    def _add_mentions(self, res: DocResult, text: str, s: int, e: int, its: list[tuple[str, str]]) -> None:
        sentence = text[s:e]
        for etype, raw in its:
            self.stats["entities_returned"] += 1
            reason = check_entity(raw, self.max_entity_chars)
            if reason:
                res.rejected.append(entity_rejection(raw, etype, reason, self.max_entity_chars))
                continue
            surface = clean_surface(raw)
            reason = check_entity(surface, self.max_entity_chars)
            if reason:
                res.rejected.append(entity_rejection(raw, etype, reason, self.max_entity_chars))
                continue
            found = find_occurrences(sentence, surface)
            if not found:
                self.stats["entities_unlocated"] += 1
                res.entities.append(mention(surface, etype, None, None))
            for a, b in found:
                res.entities.append(mention(sentence[a:b], etype, s + a, s + b))
