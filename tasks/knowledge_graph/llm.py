"""The LLM relation extractor (paper §3.3.1: "we extracted precise medical entities and relationships")
for sentences where two or more tree entities co-occur, through the project's one LLM client.

Sentences are packed into batches (tasks.extraction.llm.make_batches: at most `batch_sentences`
sentences and `max_batch_chars` characters per request); each sentence is shown with the tree
entities found in it, and the reply must be one JSON object with one key per sentence:

    {"Sentence0": [["asthma", "has_symptom", "wheezing"]], "Sentence1": "None"}

A relation is [first entity, relation type, second entity] with the type from the same vocabulary the
local pattern extractor uses (tasks.knowledge_graph.relations.RELATIONS; active spellings such as "treats" are
accepted and turned around). `{"head": .., "relation": .., "tail": ..}` objects are accepted too.

Failure handling is the entity extractor's (tasks.extraction.llm.ask_keyed_batches over the project's
one parse/repair loop, tasks.llm.ask.ask_parsed): replies go through the strict data-only parser
(tasks.llm.parsing.parse_json_like: JSON or Python-dict style, never eval); a batch reply that leaves a
sentence unresolved (its value does not parse, is missing, or has the wrong shape) gets one repair turn
(the bad reply plus a correction), and a repaired reply is used whole; sentences that neither reply
resolves, and every sentence of a request that failed for good (timeouts and 5xx are retried by the
client first), become failure records with the raw replies (relation_failures.jsonl, an MLflow
artifact). Relations that parse but cannot become edges -- an entity not among the sentence's
entities, an unknown relation type, head == tail -- are item rejections, counted by reason. Nothing is
dropped silently.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence

from tasks.extraction.common import normalize_entity
from tasks.extraction.llm import (
    NONE_WORDS,
    SYSTEM,
    ValueShapeError,
    ask_keyed_batches,
    make_batches,
    merge_outcomes,
    parse_keyed_reply,
)
from tasks.knowledge_graph.relations import (
    RELATION_GLOSS,
    RELATIONS,
    SYMMETRIC,
    Relation,
    Sentence,
    canonical_relation,
)


@dataclasses.dataclass
class LLMRelationParams:
    batch_sentences: int = 4          # sentences per request
    max_batch_chars: int = 1000       # sentence characters per request (prompt + reply fit n_ctx 2048)
    max_tokens: int = 256             # reply budget per request
    max_sentences: int = 200          # co-occurrence sentences sent to the LLM (seeded selection)
    max_entities: int = 6             # entities listed per sentence (first by position)
    constrained_json: bool = True     # response_format json_object + schema (llama.cpp, vLLM)
    max_relations_json: int = 6       # constrained decoding: relations per sentence at most

    def __post_init__(self):
        if min(self.batch_sentences, self.max_batch_chars, self.max_tokens, self.max_entities) < 1:
            raise ValueError("batch_sentences, max_batch_chars, max_tokens and max_entities must be >= 1")


PROMPT = (
    "Find the relations that each numbered sentence below states between the medical entities listed "
    "under it.\n\nRules:\n"
    "1. Use only the listed entities of that sentence, copied exactly.\n"
    "2. Relation types:\n{types}\n"
    "3. Write each relation as [first entity, relation type, second entity].\n"
    '4. If a sentence states no relation between its listed entities, its value is the string "None".\n'
    "5. Reply with one JSON object and nothing else, with exactly one key per sentence "
    "(Sentence0 to Sentence{last}). Example:\n"
    '{{"Sentence0": [["<entity>", "treated_by", "<entity>"]], "Sentence1": "None"}}\n\n'
    "Sentences:\n{lines}"
)
REPAIR = ("That reply could not be used ({problem}). Answer again with only the JSON object: keys Sentence0 "
          'to Sentence{last}, each value a list of [entity, relation type, entity] lists or the string "None".')
STAT_KEYS = ("batches", "sentences", "parsed_first", "repairs", "parsed_after_repair", "failed_sentences",
             "failed_unparseable", "failed_wrong_shape", "failed_missing_sentence", "failed_request_failed",
             "extra_keys", "relations_returned", "relations_kept", "rejected_unknown_entity",
             "rejected_unknown_relation", "rejected_self_loop", "duplicates")


def triples(value: object) -> list[tuple[str, str, str]]:
    """The (first, relation, second) strings of one sentence's value; ValueShapeError if misshapen."""
    if value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS):
        return []
    if not isinstance(value, list):
        raise ValueShapeError(f"value of type {type(value).__name__}, expected a list of relations or \"None\"")
    if len(value) == 3 and all(isinstance(v, str) for v in value) and canonical_relation(value[1]):
        value = [value]                                  # one bare triple, not wrapped in a list
    out = []
    for item in value:
        if isinstance(item, dict):
            parts = [item.get("head", item.get("first")), item.get("relation", item.get("type")),
                     item.get("tail", item.get("second"))]
        elif isinstance(item, list):
            parts = item
        elif isinstance(item, str) and item.strip().lower() in NONE_WORDS:
            continue
        else:
            raise ValueShapeError(f"relation of type {type(item).__name__}, expected [entity, relation, entity]")
        if len(parts) != 3 or not all(isinstance(p, str) for p in parts):
            raise ValueShapeError(f"relation {str(item)[:80]} is not [entity, relation, entity] strings")
        out.append((parts[0], parts[1], parts[2]))
    return out


def shown_entities(sentence: Sentence, names: Sequence[str], max_entities: int) -> list[tuple[int, str]]:
    """(node, surface as written in the sentence) of the sentence's first `max_entities` entities."""
    out: dict[int, str] = {}
    for h in sentence.hits:
        if h.node not in out and len(out) < max_entities:
            surface = " ".join(sentence.text[h.start - sentence.start:h.end - sentence.start].split())
            out[h.node] = surface or names[h.node]
    return list(out.items())


def batch_messages(sentences: Sequence[Sentence], entities: Sequence[list[tuple[int, str]]]) -> list[dict]:
    lines = "\n".join(f"Sentence{i}: {' '.join(s.text.split())}\nEntities{i}: "
                      + "; ".join(name for _, name in ents)
                      for i, (s, ents) in enumerate(zip(sentences, entities)))
    types = "\n".join(f"   - {r}: {RELATION_GLOSS[r]}" for r in RELATIONS)
    user = PROMPT.format(types=types, last=len(sentences) - 1, lines=lines)
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def response_format(n: int, params: LLMRelationParams) -> dict:
    """JSON schema for n sentences: each value "None" or a short list of [string, relation, string]."""
    triple = {"type": "array", "minItems": 3, "maxItems": 3,
              "prefixItems": [{"type": "string", "maxLength": 80}, {"enum": list(RELATIONS)},
                              {"type": "string", "maxLength": 80}]}
    value = {"anyOf": [{"enum": ["None"]},
                       {"type": "array", "items": triple, "minItems": 1, "maxItems": params.max_relations_json}]}
    keys = [f"Sentence{i}" for i in range(n)]
    return {"type": "json_object",
            "schema": {"type": "object", "properties": {k: value for k in keys}, "required": keys}}


class LLMRelationExtractor:
    """Typed relation extraction for co-occurrence sentences through an `LLMClient`."""

    name = "llm"

    def __init__(self, client, names: Sequence[str], params: LLMRelationParams | None = None):
        self.client = client
        self.names = names                     # node index -> entity norm
        self.params = params or LLMRelationParams()
        self.stats: Counter = Counter({k: 0 for k in STAT_KEYS})
        self.failures: list[dict] = []
        self.rejections: list[dict] = []       # relations that parsed but could not become edges

    def _kwargs(self, n: int) -> dict:
        kw: dict = {"max_tokens": self.params.max_tokens}
        if self.params.constrained_json:
            kw["response_format"] = response_format(n, self.params)
        return kw

    def extract(self, sentences: Sequence[Sentence]) -> list[Relation]:
        p = self.params
        ents = [shown_entities(s, self.names, p.max_entities) for s in sentences]
        batches = make_batches([len(s.text) for s in sentences], p.batch_sentences, p.max_batch_chars)
        chats = [batch_messages([sentences[u] for u in b], [ents[u] for u in b]) for b in batches]
        self.stats["batches"] += len(batches)
        self.stats["sentences"] += len(sentences)
        outcomes = ask_keyed_batches(self.client, chats, [len(b) for b in batches],
                                     lambda reply, n: parse_keyed_reply(reply, n, triples), REPAIR, self._kwargs)
        items, problems = merge_outcomes(batches, outcomes, self.stats)

        out: list[Relation] = []
        for u, s in enumerate(sentences):
            if u in problems:
                self.stats["failed_sentences"] += 1
                self.stats[f"failed_{problems[u]['kind']}"] += 1
                self.failures.append({"doc_id": s.doc_id, "sentence": s.index, "sentence_text": s.text[:300],
                                      "entities": [name for _, name in ents[u]], **problems[u]})
                continue
            out.extend(self._relations(s, ents[u], items[u]))
        return out

    def _relations(self, s: Sentence, ents: list[tuple[int, str]], its: list) -> list[Relation]:
        lookup: dict[str, int] = {}
        for node, surface in ents:
            lookup.setdefault(normalize_entity(surface), node)
            lookup.setdefault(normalize_entity(self.names[node]), node)
        out, seen = [], set()
        for first, rel, second in its:
            self.stats["relations_returned"] += 1
            a, b = lookup.get(normalize_entity(first)), lookup.get(normalize_entity(second))
            canon = canonical_relation(rel)
            reason = ("unknown_entity" if a is None or b is None else "unknown_relation" if canon is None
                      else "self_loop" if a == b else None)
            if reason:
                self.stats[f"rejected_{reason}"] += 1
                self.rejections.append({"reason": reason, "doc_id": s.doc_id, "sentence": s.index,
                                        "item": [first, rel, second]})
                continue
            relation, swap = canon
            head, tail = (b, a) if swap else (a, b)
            if relation in SYMMETRIC and head > tail:
                head, tail = tail, head
            if (head, relation, tail) in seen:
                self.stats["duplicates"] += 1       # returned = kept + rejected_* + duplicates
                continue
            seen.add((head, relation, tail))
            self.stats["relations_kept"] += 1
            out.append(Relation(head, relation, tail, s, "llm"))
        return out
