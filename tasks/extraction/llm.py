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

Failure handling goes through the project's one parse/repair loop (`tasks.llm.ask.ask_parsed`), per
batch request: a reply that resolves every sentence of its batch is used; one that does not (no JSON
object, not a dict, a sentence's key missing, a value of the wrong shape) gets one repair turn (the bad
reply plus a short correction naming the problems, so the request differs from the cached one), and a
repaired reply is used whole. When the repair does not resolve every sentence either, the sentences
either reply resolved are kept (the first reply's first) and each of the others is recorded in
`DocResult.failures` with its kind, both raw replies and what went wrong each time; every sentence of
a request that failed for good (timeouts and 5xx are retried by the client first) is recorded as
`request_failed`. Nothing is dropped silently. `ask_keyed_batches` is that loop for any
`{"Sentence<i>": value}` batch prompt (the kg stage's relation prompt uses it too).

Entity strings are mapped back to character offsets in their sentence (exact, then case- and
whitespace-insensitive; every occurrence that does not cut a word); strings that cannot be found
become mentions with start/end None.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from typing import Literal, Sequence

from tasks.extraction.common import (
    DocResult,
    check_entity,
    clean_surface,
    dedupe_mentions,
    entity_rejection,
    find_occurrences,
    mention,
    split_sentences,
)

NONE_WORDS = frozenset({"none", "null", "n/a", ""})

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


class ValueShapeError(ValueError):
    """A sentence's value that has the wrong shape."""


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
    """(type, raw entity string) pairs of one sentence's value; ValueShapeError if misshapen."""
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
                raise ValueShapeError(f"list item of type {type(v).__name__}, expected a string")
            items.append(v)
    else:
        raise ValueShapeError(f"value of type {type(value).__name__}, expected a string or a list")
    out = []
    for it in items:
        if it.strip().lower() in NONE_WORDS and it.strip():
            continue                                     # "None" inside a list
        out.append(split_item(it, params))
    return out


def parse_keyed_reply(reply: str, n: int, parse_value: Callable[[object], list], *,
                      allow_bare_items: bool = False
                      ) -> tuple[dict[int, list], dict[int, tuple[str, str]], int]:
    """Parse a `{"Sentence<i>": value}` batch reply for n sentences with `parse_value` per value.

    Returns (parsed items per resolved sentence, (kind, detail) per unresolved sentence, extra keys);
    kinds: unparseable (no JSON object at all), wrong_shape (ValueShapeError from `parse_value`, or a
    top-level list), missing_sentence.
    """
    from tasks.llm.parsing import ParseError, parse_json_like

    try:
        obj = parse_json_like(reply, expect=dict, allow_bare_items=allow_bare_items)
    except ParseError as e:
        # A reply whose first structure is a complete list is the wrong shape; anything else
        # (prose, a truncated object whose inner lists still parse) is unparseable.
        first = re.search(r"[{\[]", reply or "")
        if first and first.group() == "[":
            try:
                parse_json_like(reply[first.start():], expect=list, allow_bare_items=allow_bare_items)
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
    ok: dict[int, list] = {}
    bad: dict[int, tuple[str, str]] = {}
    for i in range(n):
        if i not in values:
            bad[i] = ("missing_sentence", f"no key Sentence{i}")
            continue
        try:
            ok[i] = parse_value(values[i])
        except ValueShapeError as e:
            bad[i] = ("wrong_shape", str(e))
    return ok, bad, extra


def parse_batch_reply(reply: str, n: int, params: LLMExtractParams
                      ) -> tuple[dict[int, list[tuple[str, str]]], dict[int, tuple[str, str]], int]:
    """Parse one entity batch reply for n sentences (see parse_keyed_reply): items are
    (type, raw entity string) pairs; bare list items (the paper's Stage 2 style) are accepted."""
    return parse_keyed_reply(reply, n, lambda v: sentence_items(v, params), allow_bare_items=True)


@dataclasses.dataclass
class BatchOutcome:
    """What one batch request came to, per sentence index of the batch."""
    items: dict[int, list] = dataclasses.field(default_factory=dict)     # resolved sentences
    failures: dict[int, dict] = dataclasses.field(default_factory=dict)  # {kind, detail, raw[, raw_repair]}
    parsed_first: int = 0            # sentences resolved by the first reply
    parsed_after_repair: int = 0     # sentences resolved by the repair reply
    repaired: bool = False           # a repair turn was asked
    extra_keys: int = 0              # keys that name no sentence of the batch (first reply)


def ask_keyed_batches(client, chats: Sequence[list[dict]], sizes: Sequence[int],
                      parse_reply: Callable[[str, int], tuple[dict, dict, int]], repair: str,
                      params_for: Callable[[int], dict]) -> list[BatchOutcome]:
    """Batch prompts answered `{"Sentence<i>": value}` through `ask_parsed` (module docstring).

    `chats[i]` asks for `sizes[i]` sentences; `parse_reply(reply, n)` is a parse_keyed_reply; `repair`
    is the correction turn with `{problem}` and `{last}` (the last sentence key); `params_for(n)` the
    request params for batches of n sentences (grouped by n: the schema names the sentence keys)."""
    from tasks.llm.ask import RAW_CHARS, ask_parsed

    out: list[BatchOutcome] = [BatchOutcome() for _ in chats]
    for n in sorted(set(sizes)):
        idx = [i for i, s in enumerate(sizes) if s == n]
        seen: dict[str, tuple[dict, dict, int]] = {}     # raw text a failure records -> its parse

        def parse(reply: str, n: int = n, seen: dict = seen):
            ok, bad, extra = seen[reply[:RAW_CHARS]] = parse_reply(reply, n)
            if bad:
                raise ValueError(", ".join(sorted({kind for kind, _ in bad.values()})))
            return ok, extra

        answers = ask_parsed(client, [chats[i] for i in idx], parse, repair.replace("{last}", str(n - 1)),
                             **params_for(n))
        for i, a in zip(idx, answers):
            out[i] = _outcome(a, n, seen)
    return out


def merge_outcomes(batches: Sequence[Sequence[int]], outcomes: Sequence[BatchOutcome],
                   stats) -> tuple[dict[int, list], dict[int, dict]]:
    """Per-batch outcomes keyed by the units each batch asked about (`batches[i][j]` is the unit of
    sentence j of batch i): (unit -> parsed items, unit -> failure record); counts go to `stats`."""
    items: dict[int, list] = {}
    problems: dict[int, dict] = {}
    for b, o in zip(batches, outcomes):
        for key in ("parsed_first", "parsed_after_repair", "extra_keys"):
            stats[key] += getattr(o, key)
        stats["repairs"] += o.repaired
        items.update((b[j], its) for j, its in o.items.items())
        problems.update((b[j], f) for j, f in o.failures.items())
    return items, problems


def _outcome(answer, n: int, seen: dict) -> BatchOutcome:
    o = BatchOutcome()
    if answer.ok:
        (o.items, o.extra_keys), o.repaired = answer.value, answer.repaired
        o.parsed_after_repair, o.parsed_first = (n, 0) if o.repaired else (0, n)
        return o
    f = answer.failure
    if f["kind"] == "request_failed":
        o.failures = {j: {"kind": "request_failed", "detail": f["detail"], "raw": None} for j in range(n)}
        return o
    o.repaired = True
    ok, bad, o.extra_keys = seen[f["raw"]]
    o.items = dict(ok)
    o.parsed_first = len(ok)
    o.failures = {j: {"kind": kind, "detail": detail, "raw": f["raw"], "raw_repair": f.get("raw_repair")}
                  for j, (kind, detail) in bad.items()}
    if f.get("raw_repair") is None:                      # the repair request itself failed
        why = f["detail"].split("; repair request failed: ", 1)[-1]
        for x in o.failures.values():
            x["detail"] += f"; repair request failed: {why}"
        return o
    ok2, bad2, _ = seen[f["raw_repair"]]
    for j in sorted(o.failures):
        if j in ok2:
            o.items[j] = ok2[j]
            o.parsed_after_repair += 1
            del o.failures[j]
        else:
            o.failures[j]["detail"] += f"; after repair: {bad2[j][0]}: {bad2[j][1]}"
    return o


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

    def extract(self, docs: Sequence[tuple[str, str]]) -> list[DocResult]:
        """DocResults for (doc_id, text) pairs, in order; sentences of several documents may share
        a request."""
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
        repair = REPAIR if p.prompt == "stage2" else REPAIR_STAGE1
        outcomes = ask_keyed_batches(self.client, chats, sizes, lambda reply, n: parse_batch_reply(reply, n, p),
                                     repair, self._kwargs)
        items, problems = merge_outcomes(batches, outcomes, self.stats)   # unit -> items / failure record

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
