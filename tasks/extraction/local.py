"""The local entity extractor: a linear-chain CRF (sklearn-crfsuite) with BIO tags, trained inside
the pipeline on the PubTator training splits (BC5CDR train + dev, NCBI-disease train).

Features per token (as crfsuite binary feature strings, which keeps memory flat): the lower-cased
word, prefixes and suffixes of 2-4 characters, word shape (full and compressed: `Xxxx-dd` ->
`Xx-d`), case and digit flags, token length bucket, and the same for neighbours within `window`
tokens (word, shape, suffix-3), plus sentence begin/end markers. Training is L-BFGS with L1+L2
regularisation; crfsuite is deterministic given the order of the training data, which is the gold
files' order, so a re-run gives the same model file byte for byte.

`CRFExtractor.extract(docs)` returns `DocResult`s with the same mention contract as the LLM path
(tasks/extraction/common.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from tasks.extraction.common import (
    DocResult,
    check_entity,
    dedupe_mentions,
    entity_rejection,
    mention,
    split_sentences,
    tokenize,
)
from tasks.extraction.gold import GoldDoc

OUTSIDE = "O"


@dataclasses.dataclass
class CRFParams:
    c1: float = 0.1                 # L1 (sparsity)
    c2: float = 0.1                 # L2
    max_iterations: int = 100
    window: int = 2                 # neighbour tokens on each side that contribute features
    max_train_docs: int = 0         # 0 = every training document (the tiny profile caps it)
    all_possible_transitions: bool = True


_SHAPE_MAP = str.maketrans({**{c: "X" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
                            **{c: "x" for c in "abcdefghijklmnopqrstuvwxyz"},
                            **{c: "d" for c in "0123456789"}})
_RUNS = re.compile(r"(.)\1+")


def word_shape(token: str) -> str:
    """`Naloxone` -> `Xxxxxxxx`; non-ASCII letters stay themselves."""
    return token.translate(_SHAPE_MAP)


def short_shape(token: str) -> str:
    """The shape with runs collapsed: `Xxxxxxxx` -> `Xx`, `dd-Xx` -> `d-Xx`."""
    return _RUNS.sub(r"\1", word_shape(token))


def _token_features(tok: str) -> list[str]:
    low = tok.lower()
    n = len(tok)
    feats = [f"w={low}", f"sh={short_shape(tok)}", f"len={n if n < 6 else ('6-9' if n < 10 else '10+')}"]
    if n <= 12:
        feats.append(f"shf={word_shape(tok)}")
    for k in (2, 3, 4):
        if n > k:
            feats.append(f"p{k}={low[:k]}")
            feats.append(f"s{k}={low[-k:]}")
    if tok.isupper() and n > 1:
        feats.append("upper")
    if tok[:1].isupper() and tok[1:].islower():
        feats.append("title")
    if tok.isdigit():
        feats.append("digit")
    elif any(c.isdigit() for c in tok):
        feats.append("has_digit")
    if n == 1 and not tok.isalnum():
        feats.append(f"punct={tok}")
    return feats


def sentence_features(tokens: Sequence[str], window: int = 2) -> list[list[str]]:
    """crfsuite feature strings for each token of one sentence."""
    base = [_token_features(t) for t in tokens]
    lows = [t.lower() for t in tokens]
    shapes = [short_shape(t) for t in tokens]
    out = []
    n = len(tokens)
    for i in range(n):
        f = ["bias", *base[i]]
        if i == 0:
            f.append("BOS")
        if i == n - 1:
            f.append("EOS")
        for d in range(1, window + 1):
            for j, side in ((i - d, f"-{d}"), (i + d, f"+{d}")):
                if 0 <= j < n:
                    f.append(f"{side}w={lows[j]}")
                    f.append(f"{side}sh={shapes[j]}")
                    if d == 1:
                        f.append(f"{side}s3={lows[j][-3:]}")
                        f.append(f"{side}w|w={lows[min(i, j)]}|{lows[max(i, j)]}")
        out.append(f)
    return out


def bio_labels(tokens: list[tuple[str, int, int]], spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """BIO tags for tokens given gold (start, end, type) spans; a token overlapping a span is in it.

    Overlapping gold spans: the earliest (then longest) wins, the other is not encoded.
    """
    labels = [OUTSIDE] * len(tokens)
    for s, e, etype in sorted(spans, key=lambda x: (x[0], -(x[1] - x[0]))):
        idx = [i for i, (_, ts, te) in enumerate(tokens) if ts < e and te > s]
        if not idx or any(labels[i] != OUTSIDE for i in idx):
            continue
        labels[idx[0]] = f"B-{etype}"
        for i in idx[1:]:
            labels[i] = f"I-{etype}"
    return labels


def bio_spans(tokens: list[tuple[str, int, int]], labels: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, type) spans from BIO tags; a stray I- (no B- before it) starts a span."""
    spans = []
    cur: list | None = None
    for (_, ts, te), lab in zip(tokens, labels):
        if lab == OUTSIDE:
            cur = None
            continue
        tag, _, etype = lab.partition("-")
        if tag == "I" and cur is not None and cur[2] == etype:
            cur[1] = te
            continue
        cur = [ts, te, etype]
        spans.append(cur)
    return [tuple(s) for s in spans]


def training_sequences(docs: Iterable[GoldDoc], params: CRFParams, max_sentence_chars: int
                       ) -> Iterator[tuple[list[list[str]], list[str]]]:
    """(features, labels) per sentence of the gold documents, in document order."""
    for doc in docs:
        for s, e in split_sentences(doc.text, max_sentence_chars):
            toks = tokenize(doc.text[s:e], s)
            if not toks:
                continue
            spans = [(ms, me, t) for ms, me, t in doc.mentions if ms < e and me > s]
            yield sentence_features([t for t, _, _ in toks], params.window), bio_labels(toks, spans)


class CRFExtractor:
    """Train, save, load and apply the CRF. `model_path` is where crfsuite keeps the model."""

    name = "local"

    def __init__(self, model_path: Path, params: CRFParams | None = None, *,
                 max_sentence_chars: int = 600, max_entity_chars: int = 100):
        self.model_path = Path(model_path)
        self.params = params or CRFParams()
        self.max_sentence_chars = max_sentence_chars
        self.max_entity_chars = max_entity_chars
        self._crf = None
        self.train_stats: dict = {}

    def _estimator(self):
        import sklearn_crfsuite

        p = self.params
        return sklearn_crfsuite.CRF(algorithm="lbfgs", c1=p.c1, c2=p.c2, max_iterations=p.max_iterations,
                                    all_possible_transitions=p.all_possible_transitions,
                                    model_filename=str(self.model_path), keep_tempfiles=False)

    def train(self, docs: Sequence[GoldDoc]) -> dict:
        """Fit on the gold documents (in the given order); returns counts of what was trained on."""
        if self.params.max_train_docs:
            docs = docs[:self.params.max_train_docs]
        if not docs:
            raise ValueError("no training documents for the CRF")
        self.model_path.parent.mkdir(parents=True, exist_ok=True)
        counts = {"docs": len(docs), "sentences": 0, "tokens": 0}

        def counted(seqs):
            for x, y in seqs:
                counts["sentences"] += 1
                counts["tokens"] += len(y)
                yield x, y

        # Streamed: features are built sentence by sentence while crfsuite copies them into its
        # own compact store, so Python never holds the whole training set's feature strings.
        xs, ys = itertools.tee(counted(training_sequences(docs, self.params, self.max_sentence_chars)))
        crf = self._estimator()
        crf.fit((x for x, _ in xs), (y for _, y in ys))
        self._crf = crf
        counts["labels"] = sorted(crf.classes_)
        counts["active_features"] = int(crf.num_attributes_)
        counts["model_bytes"] = int(crf.size_)
        self.train_stats = counts
        return counts

    @classmethod
    def load(cls, model_path: Path, **kw) -> "CRFExtractor":
        ext = cls(model_path, **kw)
        if not ext.model_path.is_file():
            raise FileNotFoundError(f"CRF model {model_path} does not exist")
        ext._crf = ext._estimator()
        return ext

    @property
    def tagger(self):
        if self._crf is None:
            raise RuntimeError("the CRF is not trained or loaded")
        return self._crf.tagger_

    def predict_spans(self, text: str) -> tuple[list[tuple[int, int, str]], int]:
        """(entity spans, number of sentences) for one text."""
        spans: list[tuple[int, int, str]] = []
        sents = split_sentences(text, self.max_sentence_chars)
        tagger = self.tagger
        for s, e in sents:
            toks = tokenize(text[s:e], s)
            if toks:
                labels = tagger.tag(sentence_features([t for t, _, _ in toks], self.params.window))
                spans.extend(bio_spans(toks, labels))
        return spans, len(sents)

    def extract(self, docs: Sequence[tuple[str, str]]) -> list[DocResult]:
        """DocResults for (doc_id, text) pairs, in order."""
        out = []
        for doc_id, text in docs:
            spans, n = self.predict_spans(text or "")
            res = DocResult(doc_id, sentences=n)
            for s, e, etype in spans:
                surface = text[s:e]
                reason = check_entity(surface, self.max_entity_chars)
                if reason:
                    res.rejected.append(entity_rejection(surface, etype, reason, self.max_entity_chars))
                else:
                    res.entities.append(mention(surface, etype, s, e))
            res.entities = dedupe_mentions(res.entities)
            out.append(res)
        return out
