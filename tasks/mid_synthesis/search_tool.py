"""A real search tool over the project's cleaned corpus: BM25 over sentence-window passages.

    from tasks.mid_synthesis.search_tool import SearchParams, SearchTool, SEARCH_SCHEMA
    tool = SearchTool.from_corpus("data/quality/kept", SearchParams(max_docs=25_000))
    hits = tool.search("aarskog-scott syndrome cause", k=5)
    # [{"doc_id", "passage_id", "score", "text"}, ...] best first
    tool.call({"query": "...", "k": 5})          # the tool turn's content: the same hits as text
    tools=[SEARCH_SCHEMA]                         # OpenAI function schema of search(query, k)

Passages: each document's text (records of data/quality/kept/part-*.jsonl: {id, source, text, ...};
records without text, e.g. images, are skipped) is cut into sentences by the project's splitter
(tasks.extraction.common.split_sentences, the same one the KG's provenance offsets come from) and grouped
into windows of `window` sentences every `stride` sentences, each cut at `passage_chars`. WHY windows:
a KG fact is one sentence, but the sentence around it often carries the entity name ("It is caused
by ..."), so a small window lets a query on the entity find the fact. A window that does not start the
document is prefixed with the document's first sentence when that is short (<= `title_chars`): in this
corpus it is the title (MedQuAD's question "What causes X ?", a PubMed title), which names the entity the
whole document is about; without it the passages deep in a long answer never mention their subject. `max_docs` and `max_passages` bound
the index (memory and build time on 2 cores).

Scoring: Okapi BM25 (k1, b) with the non-negative idf log(1 + (N - df + 0.5) / (df + 0.5)), computed
once into a sparse passage x term matrix (scipy CSC), so a query is a sum of a few columns. WHY BM25
written here: `rank_bm25` is not a project dependency, and this is ~40 lines of numpy; no model, no
download, exact and deterministic. Tokens: case-folded runs of letters/digits, a short stopword list
removed (they carry no evidence and dominate tf). Ties are broken by passage order (corpus file order,
then window order), so the same query always returns the same list; scores are rounded to 4 decimals
before ranking so float noise cannot reorder equal scores.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from tasks.extraction.common import split_sentences

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
STOPWORDS = frozenset("""
a an and are as at be been but by can could did do does for from had has have how i if in into is it its
may might more most no not of on or other our should so such than that the their them then there these
they this those to was were what when where which while who why will with would you your also about
""".split())

SEARCH_SCHEMA = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the medical reference corpus. Returns the k most relevant passages, best first, "
                       "each with its document id, passage id and BM25 score.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Keywords to search for."},
                "k": {"type": "integer", "description": "How many passages to return.", "minimum": 1,
                      "maximum": 20, "default": 5},
            },
            "required": ["query"],
        },
    },
}


@dataclasses.dataclass
class SearchParams:
    corpus_dir: str = "data/quality/kept"
    max_docs: int = 25_000            # documents indexed, in file order (0 = all)
    max_passages: int = 200_000       # hard bound on index rows
    window: int = 3                   # sentences per passage
    stride: int = 2                   # sentences between passage starts (window - stride overlap)
    passage_chars: int = 600          # a passage is cut at this many characters
    min_passage_chars: int = 20       # shorter windows carry no fact
    title_chars: int = 160            # a first sentence this short is the title, shown with every window
    k1: float = 1.2
    b: float = 0.75
    max_k: int = 20                   # the schema's bound on k

    def __post_init__(self):
        if self.window < 1 or not 1 <= self.stride <= self.window:
            raise ValueError("window >= 1 and 1 <= stride <= window are required")
        if self.passage_chars < self.min_passage_chars or self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError("passage_chars >= min_passage_chars, k1 >= 0 and 0 <= b <= 1 are required")


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.casefold()) if t not in STOPWORDS]


@dataclasses.dataclass(frozen=True)
class Passage:
    doc_id: str
    passage_id: str                   # "<doc_id>#<window index>"
    start: int                        # char offsets of the window in the document text
    end: int
    text: str                         # the window, after the document title for windows past the first


def passages_of(doc_id: str, text: str, params: SearchParams) -> list[Passage]:
    """Sentence windows of one document (module docstring)."""
    spans = split_sentences(text, max_chars=params.passage_chars)
    if not spans:
        return []
    title = text[spans[0][0]:spans[0][1]] if spans[0][1] - spans[0][0] <= params.title_chars else ""
    windows = [(i, min(i + params.window, len(spans))) for i in
               range(0, max(len(spans) - params.window, 0) + 1, params.stride)]
    if windows[-1][1] < len(spans):       # the tail sentences after the last full window stay reachable
        windows.append((windows[-1][0] + params.stride, len(spans)))
    out: list[Passage] = []
    for w, (i, j) in enumerate(windows):
        s, e = spans[i][0], spans[j - 1][1]
        e = min(e, s + params.passage_chars)
        if e - s >= params.min_passage_chars:
            body = text[s:e]
            out.append(Passage(doc_id, f"{doc_id}#{w}", s, e, f"{title}\n{body}" if title and i > 0 else body))
    return out


def read_corpus(corpus_dir: str, max_docs: int) -> Iterable[tuple[str, str]]:
    """(doc_id, text) of the records with text, files in name order, lines in file order."""
    n = 0
    for path in sorted(glob.glob(os.path.join(corpus_dir, "part-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                rec = json.loads(line)
                text = rec.get("text") or ""
                if not text.strip():
                    continue
                yield rec["id"], text
                n += 1
                if max_docs and n >= max_docs:
                    return


class BM25Index:
    """Okapi BM25 over a fixed list of texts; `top(query, k)` -> [(row, score)] best first, ties by row."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75):
        vocab: dict[str, int] = {}
        indptr, indices = [0], []
        for t in texts:
            indices.extend(vocab.setdefault(tok, len(vocab)) for tok in tokenize(t))
            indptr.append(len(indices))
        n = len(texts)
        ind = np.asarray(indices, dtype=np.int64)
        tf = sparse.csr_matrix((np.ones(len(ind), np.float32), ind, np.asarray(indptr, np.int64)),
                               shape=(n, len(vocab)))
        tf.sum_duplicates()                        # one entry per (passage, term) with its count
        dl = np.diff(np.asarray(indptr)).astype(np.float64)
        avgdl = max(float(dl.mean()) if n else 0.0, 1e-9)
        df = np.bincount(tf.indices, minlength=len(vocab)).astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        rows = np.repeat(np.arange(n), np.diff(tf.indptr))
        f = tf.data.astype(np.float64)
        w = idf[tf.indices] * f * (k1 + 1) / (f + k1 * (1 - b + b * dl[rows] / avgdl))
        self.weights = sparse.csr_matrix((w.astype(np.float32), tf.indices, tf.indptr), shape=tf.shape).tocsc()
        self.vocab = vocab
        self.n = n

    def scores(self, query: str) -> np.ndarray:
        ids = [self.vocab[t] for t in tokenize(query) if t in self.vocab]
        if not ids or not self.n:
            return np.zeros(self.n, np.float64)
        ids_u, counts = np.unique(ids, return_counts=True)     # a repeated query term counts again
        return np.asarray(self.weights[:, ids_u] @ counts.astype(np.float32), dtype=np.float64).ravel()

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        s = np.round(self.scores(query), 4)
        cand = np.flatnonzero(s > 0)
        if not len(cand):
            return []
        if len(cand) > k:                                      # keep every row tied with the k-th score
            kth = np.partition(s[cand], len(cand) - k)[len(cand) - k]
            cand = cand[s[cand] >= kth]
        order = np.lexsort((cand, -s[cand]))[:k]              # score desc, then row asc
        return [(int(cand[i]), float(s[cand[i]])) for i in order]


class SearchTool:
    """The `search` tool: BM25 over passages; `search` gives dicts, `call` gives the tool turn's text."""

    name = "search"
    schema = SEARCH_SCHEMA

    def __init__(self, passages: Sequence[Passage], params: SearchParams | None = None):
        self.params = params or SearchParams()
        self.passages = list(passages)[: self.params.max_passages]
        self.index = BM25Index([p.text for p in self.passages], self.params.k1, self.params.b)

    @classmethod
    def from_docs(cls, docs: Iterable[tuple[str, str]], params: SearchParams | None = None) -> SearchTool:
        params = params or SearchParams()
        out: list[Passage] = []
        for doc_id, text in docs:
            out.extend(passages_of(doc_id, text, params))
            if len(out) >= params.max_passages:
                break
        return cls(out, params)

    @classmethod
    def from_corpus(cls, corpus_dir: str | None = None, params: SearchParams | None = None) -> SearchTool:
        params = params or SearchParams()
        return cls.from_docs(read_corpus(corpus_dir or params.corpus_dir, params.max_docs), params)

    @property
    def doc_ids(self) -> set[str]:
        return {p.doc_id for p in self.passages}

    def search(self, query: str, k: int = 5) -> list[dict]:
        k = max(1, min(int(k), self.params.max_k))
        return [{"doc_id": self.passages[i].doc_id, "passage_id": self.passages[i].passage_id, "score": score,
                 "text": self.passages[i].text} for i, score in self.index.top(query, k)]

    def call(self, arguments: dict) -> str:
        """Run the tool on a tool call's arguments; the rendered results (what the tool turn carries)."""
        return render_results(self.search(str(arguments.get("query", "")), int(arguments.get("k", 5))))


def render_results(results: Sequence[dict]) -> str:
    """Search results as the tool turn's text: one numbered block per passage."""
    if not results:
        return "No results."
    return "\n\n".join(f"[{i}] {r['passage_id']} (score {r['score']:.4f})\n{r['text']}"
                       for i, r in enumerate(results, 1))
