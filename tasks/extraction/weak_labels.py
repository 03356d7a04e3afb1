"""Weak supervision for the eight entity types: dictionary labels from the typed vocabulary, combined
with the gold PubTator training spans, as training data for the CRF (tasks/extraction/local.py).

Labelling functions (`WeakLabeller.spans`):
- the typed dictionary (tasks/extraction/vocabulary.py) through the project's word-boundary
  Aho-Corasick matcher (tasks/mapping/automaton.py: leftmost-longest, non-overlapping, casefolded);
- gene symbols named as genes: "the CFTR gene", "BRCA1 and BRCA2 genes" -> Gene on the symbol (an
  upper-case token of 2-10 characters with a digit or at least three letters).

Training text (`weak_training_docs`): corpus documents from the `entities` stage's own input, selected
by a seeded hash of the document id (never the PubTator abstracts: the gold test abstracts are in the
corpus). Each sentence with at least one dictionary label becomes one training unit. A sentence that
holds a held-out term is not trained on at all -- labelling it O would teach the CRF that the term is
not an entity, labelling it would leak the term -- and sentences of a disjoint set of documents that
hold held-out terms become the generalisation test (`heldout_term_sentences`): the CRF's recall on
those spans, which the dictionary cannot find.

Gold documents (`augment_gold`): BC5CDR annotates chemicals and diseases, NCBI-disease diseases only;
the types a corpus does not annotate get dictionary labels where they do not overlap a gold span, and
a gold Disease span whose text is a dictionary Symptom term becomes Symptom (BC5CDR annotates signs as
diseases; scoring maps Symptom back to Disease, tasks/extraction/vocabulary.py GOLD_TYPE_OF). Gold
spans always win over dictionary labels.

Why weak supervision rather than the dictionary as the extractor: the CRF learns from context, affixes
and word shape, so it tags terms the dictionary does not hold (measured on the held-out terms), and
the gold spans keep chemical/disease boundaries as the annotators drew them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from tasks.common.io import iter_records
from tasks.extraction.common import split_sentences
from tasks.extraction.gold import GoldDoc
from tasks.extraction.vocabulary import ENTITY_TYPES, TypedVocabulary
from tasks.mapping.automaton import EntityMatcher

_GENE_NAMED = re.compile(r"\b([A-Z][A-Z0-9]{1,9}(?:-[A-Z0-9]{1,4})?)((?:\s*(?:,|and|or)\s*[A-Z][A-Z0-9]{1,9}"
                         r"(?:-[A-Z0-9]{1,4})?)*)\s+genes?\b")
_SYMBOL_IN_LIST = re.compile(r"[A-Z][A-Z0-9]{1,9}(?:-[A-Z0-9]{1,4})?")


def _gene_like(symbol: str) -> bool:
    letters = sum(c.isalpha() for c in symbol)
    return any(c.isdigit() for c in symbol) or letters >= 3


@dataclasses.dataclass
class WeakParams:
    max_docs: int = 1500             # corpus documents whose sentences are weakly labelled for training
    max_sentences: int = 6000        # weakly labelled training sentences at most
    eval_docs: int = 3000            # other documents searched for held-out-term sentences
    max_eval_sentences: int = 1500
    exclude_sources: list[str] = dataclasses.field(default_factory=lambda: ["pubtator"])
    gene_pattern: bool = True        # "the CFTR gene" -> Gene


class WeakLabeller:
    """Typed spans of a text from the dictionary (and the gene-symbol pattern)."""

    def __init__(self, terms: dict[str, str], gene_pattern: bool = True):
        self.matcher = EntityMatcher(sorted(terms.items()))
        self.gene_pattern = gene_pattern

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, type), sorted, non-overlapping (dictionary hits win over the gene pattern)."""
        spans = [(s, e, t) for s, e, t in self.matcher.scan(text)]
        if self.gene_pattern and "gene" in text:
            taken = [(s, e) for s, e, _ in spans]
            for m in _GENE_NAMED.finditer(text):
                for sm in _SYMBOL_IN_LIST.finditer(text[m.start():m.end()]):
                    s, e = m.start() + sm.start(), m.start() + sm.end()
                    if _gene_like(sm.group()) and not any(a < e and s < b for a, b in taken):
                        spans.append((s, e, "Gene"))
                        taken.append((s, e))
        return sorted(spans)


def _hash(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}|{key}".encode()).digest()[:8], "big")


def _selected_docs(shards: list[Path], params: WeakParams, seed: int, max_text_chars: int
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training docs, eval docs) as (id, text): the documents with the smallest seeded id hashes.

    Bounded memory: one heap of max_docs + eval_docs entries, whatever the corpus size."""
    k = params.max_docs + params.eval_docs
    excluded = set(params.exclude_sources)

    def candidates():
        for rec, rej in iter_records(shards):
            if rej is not None or rec["source"] in excluded or not rec["text"].strip():
                continue
            yield _hash(seed, rec["id"]), rec["id"], rec["text"][:max_text_chars]

    chosen = heapq.nsmallest(k, candidates())
    docs = [(i, t) for _, i, t in chosen]
    return docs[:params.max_docs], docs[params.max_docs:]


@dataclasses.dataclass
class WeakData:
    train: list[GoldDoc]                 # one unit per weakly labelled sentence
    heldout_eval: list[GoldDoc]          # sentences with held-out-term spans (recall only)
    stats: dict


def weak_training_docs(shards: list[Path], vocab: TypedVocabulary, params: WeakParams, seed: int,
                       max_sentence_chars: int, max_text_chars: int = 20_000) -> WeakData:
    """Weakly labelled training sentences and the held-out-term test sentences (module docstring)."""
    labeller = WeakLabeller(vocab.terms, params.gene_pattern)
    heldout = WeakLabeller(vocab.heldout, gene_pattern=False)
    train_docs, eval_docs = _selected_docs(shards, params, seed, max_text_chars)
    train: list[GoldDoc] = []
    counts: Counter = Counter()
    spans_by_type: Counter = Counter()
    for doc_id, text in train_docs:
        counts["train_docs"] += 1
        for s, e in split_sentences(text, max_sentence_chars):
            if len(train) >= params.max_sentences:
                break
            sent = text[s:e]
            counts["train_sentences_read"] += 1
            if heldout.matcher.scan(sent):
                counts["train_sentences_with_heldout_term"] += 1
                continue
            spans = labeller.spans(sent)
            if not spans:
                counts["train_sentences_unlabelled"] += 1
                continue
            spans_by_type.update(t for _, _, t in spans)
            train.append(GoldDoc(f"weak:{doc_id}:{s}", "weak", doc_id, sent, spans))
    evals: list[GoldDoc] = []
    for doc_id, text in eval_docs:
        if len(evals) >= params.max_eval_sentences:
            break
        for s, e in split_sentences(text, max_sentence_chars):
            sent = text[s:e]
            spans = heldout.spans(sent)
            if spans:
                evals.append(GoldDoc(f"heldout:{doc_id}:{s}", "heldout_terms", doc_id, sent, spans))
                if len(evals) >= params.max_eval_sentences:
                    break
    stats = {**dict(sorted(counts.items())), "train_sentences": len(train),
             "train_spans_by_type": {t: spans_by_type[t] for t in ENTITY_TYPES if spans_by_type[t]},
             "heldout_eval_sentences": len(evals),
             "heldout_eval_spans_by_type": dict(sorted(Counter(t for d in evals for *_, t in d.mentions).items()))}
    return WeakData(train, evals, stats)


def augment_gold(docs: Iterable[GoldDoc], vocab: TypedVocabulary, gene_pattern: bool = True
                 ) -> tuple[list[GoldDoc], dict]:
    """Gold training documents with dictionary labels for the types their corpus does not annotate
    (module docstring); returns (new docs, counts of added and relabelled spans by type)."""
    labeller = WeakLabeller(vocab.terms, gene_pattern)
    added: Counter = Counter()
    relabelled = 0
    out = []
    for d in docs:
        gold = []
        for s, e, t in d.mentions:
            if t == "Disease" and vocab.terms.get(d.text[s:e].casefold()) == "Symptom":
                t = "Symptom"
                relabelled += 1
            gold.append((s, e, t))
        extra = []
        for s, e, t in labeller.spans(d.text):
            if t in d.annotated_types or (t == "Symptom" and "Disease" in d.annotated_types):
                continue                 # the annotators decided these: what they left out is not one
            if any(gs < e and s < ge for gs, ge, _ in gold):
                continue
            extra.append((s, e, t))
            added[t] += 1
        out.append(dataclasses.replace(d, mentions=sorted(gold + extra)))
    return out, {"added_by_type": dict(sorted(added.items())), "disease_relabelled_symptom": relabelled}
