"""Gold entity mentions from the PubTator files (BC5CDR, NCBI-disease), read with the project's
PubTator connector (`tasks.corpus.connectors.text_sources.read_pubtator`).

Offsets refer to `title + " " + abstract`, exactly the record text the connector builds. Types are
mapped to the two the CRF learns: BC5CDR's Chemical and Disease, and NCBI-disease's
SpecificDisease / Modifier / CompositeMention / DiseaseClass -> Disease.

A document is identified by corpus and PMID. `CDR_TrainingSet` here also holds the 500 development
abstracts, so documents repeated across train files are read once (first file wins), and any train
document whose PMID is in a test file is dropped: test abstracts are never trained on. Mentions whose
text does not match the document at their offsets are counted and skipped, never trusted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from tasks.corpus.connectors.base import SourceContext
from tasks.corpus.connectors.text_sources import read_pubtator

TYPE_MAP = {"Chemical": "Chemical", "Disease": "Disease", "SpecificDisease": "Disease",
            "Modifier": "Disease", "CompositeMention": "Disease", "DiseaseClass": "Disease"}
# Which of our types each corpus annotates: a predicted Chemical in an NCBI-disease abstract is
# not a false positive, NCBI-disease just never marks chemicals.
ANNOTATED_TYPES = {"BC5CDR": ("Chemical", "Disease"), "NCBI-disease": ("Disease",)}


@dataclass
class GoldDoc:
    doc_id: str                      # "<corpus>:<pmid>"
    corpus: str                      # BC5CDR | NCBI-disease
    pmid: str
    text: str
    mentions: list[tuple[int, int, str]] = field(default_factory=list)   # (start, end, type), sorted

    @property
    def annotated_types(self) -> tuple[str, ...]:
        return ANNOTATED_TYPES.get(self.corpus, ("Chemical", "Disease"))


def read_pubtator_file(path: Path) -> tuple[list[GoldDoc], Counter]:
    """The gold documents of one PubTator file and counts of what was skipped (by reason)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gold PubTator file {path} does not exist")
    ctx = SourceContext(name="pubtator", path=path, images=None, max_text_bytes=10_000_000)
    docs: list[GoldDoc] = []
    skipped: Counter = Counter()
    for record, rej, _ in read_pubtator(ctx):
        if record is None:
            skipped[f"block_{rej['reason']}"] += 1
            continue
        meta, text = record["meta"], record["text"]
        spans = []
        for m in meta["mentions"]:
            etype = TYPE_MAP.get(m["type"])
            if etype is None:
                skipped[f"type_{m['type']}"] += 1
                continue
            s, e = m["start"], m["end"]
            if not (0 <= s < e <= len(text)) or text[s:e] != m["text"]:
                skipped["offset_mismatch"] += 1
                continue
            spans.append((s, e, etype))
        docs.append(GoldDoc(f"{meta['corpus']}:{meta['pmid']}", meta["corpus"], meta["pmid"], text,
                            sorted(set(spans))))
    return docs, skipped


def load_gold(directory: Path, files: Iterable[str], *, exclude_pmids: set[str] = frozenset(),
              max_docs: int = 0) -> tuple[list[GoldDoc], dict]:
    """Documents of several PubTator files in file order, each (corpus, pmid) once.

    Returns (docs, stats) with stats = documents per file, duplicates, excluded and skipped counts.
    """
    seen: set[str] = set()
    docs: list[GoldDoc] = []
    stats: dict = {"files": {}, "duplicates": 0, "excluded_test_pmids": 0, "skipped": {}}
    skipped: Counter = Counter()
    for name in files:
        file_docs, file_skipped = read_pubtator_file(Path(directory) / name)
        skipped.update(file_skipped)
        stats["files"][name] = len(file_docs)
        for d in file_docs:
            if d.doc_id in seen:
                stats["duplicates"] += 1
                continue
            if d.pmid in exclude_pmids:
                stats["excluded_test_pmids"] += 1
                continue
            seen.add(d.doc_id)
            docs.append(d)
    if max_docs:
        docs = docs[:max_docs]
    stats["skipped"] = dict(sorted(skipped.items()))
    stats["docs"] = len(docs)
    stats["mentions"] = dict(sorted(Counter(t for d in docs for _, _, t in d.mentions).items()))
    return docs, stats
