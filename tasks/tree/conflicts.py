"""Conflict resolution (paper §3.2 Stage 3, "Conflict Resolution via ReAct Agent").

An entity with more than one candidate parent (several types placing it differently, candidates
within the similarity margin, or several valid LLM insertion paths) goes to a resolver that must
ground its decision in retrieved evidence and the paper's two principles:

1. Etiological dominance: a parent defined by pathological mechanism or anatomical location beats
   one defined by clinical symptoms.
2. Specificity: the more specific parent (deeper; a descendant of the other) wins.

Evidence comes from local sources only (no web here): BM25 (rank-bm25) over the sentences of the
quality-filtered corpus and the `def:` lines of the Disease Ontology (evidence text only: the
ontology never seeds the tree). Both resolvers write the same audit record:

    {"entity", "text", "candidates": [{node_id, path, similarity, via, scores}],
     "decision": {"keep", "keep_node", "delete"}, "reasoning", "evidence": [{doc_id, snippet, score}],
     "path": "local" | "llm", ...}

- `LocalResolver`: scores each candidate: evidence (BM25 of the candidate's name and member terms over
  the retrieved snippets), etiology (cue lexicon: etiology/anatomy words minus symptom words),
  specificity (tier depth, + a bonus when it descends from another candidate) and the attachment
  similarity, weighted by `resolver_weights`.
- `LLMResolver`: a ReAct loop (Thought / Action: search[query] / Observation) of at most `max_steps`
  model turns per conflict, run in lockstep across a batch with `complete_many`. The final answer must
  be the paper's `<SearchEvidence>..</SearchEvidence><Reasoning>..</Reasoning><FinalAction>Keep: P,
  Delete: Q</FinalAction>` after at least one search, with P one of the candidate paths. Anything else
  costs a step; when steps run out (or the endpoint fails) the local decision is used and the audit
  says so, with the raw transcript.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.tree.attach import Candidate, Decision
from tasks.tree.build import subtree_entities
from tasks.tree.model import Tree, norm_name

_TOKEN = re.compile(r"[a-z0-9]+")
_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[\"'])")
STOPWORDS = frozenset("""a an and are as at be been but by can for from has have in is it its of on or
that the their this to was were which with without not no into than then there these those what who
will may also such other more most other some any all both each""".split())

# Cue lexicons for the etiological-dominance principle. A stem of 5+ characters matches as a
# prefix (infect -> infection, infectious); shorter entries match whole tokens only.
ETIOLOGY_ANATOMY = (
    "infect", "viral", "virus", "bacteri", "fungal", "parasit", "genetic", "hereditar", "congenital",
    "mutation", "neoplas", "tumor", "tumour", "tumors", "cancer", "carcinom", "lymphom", "leukemi",
    "sarcoma", "malignan", "inflamm", "autoimmun", "immune", "metabol", "toxic", "toxicity", "poison",
    "deficien", "degenerat", "vascular", "ischemi", "lesion", "trauma", "injur", "damage", "disorder",
    "disease", "patholog", "neurolog", "nervous", "brain", "cerebr", "neuron", "neural", "spinal",
    "cardia", "cardio", "heart", "coronar", "arteri", "venous", "vein", "veins", "hepat", "liver",
    "renal", "kidney", "nephr", "pulmon", "lung", "lungs", "respirat", "gastr", "intestin", "colon",
    "bowel", "pancrea", "endocrin", "thyroid", "adrenal", "muscul", "muscle", "skelet", "bone",
    "bones", "joint", "joints", "skin", "dermat", "ocular", "eye", "eyes", "retina", "retinal", "ear",
    "blood", "hemat", "haemat", "lobe", "lobes", "temporal", "tissue", "organ", "organs", "gland",
    "cell", "cells", "chromosom", "anatom", "etiolog", "mechanism",
)
SYMPTOM = (
    "symptom", "sign", "signs", "pain", "painful", "ache", "aches", "fever", "nausea", "vomit",
    "cough", "rash", "dizzi", "dizzy", "fatigue", "itch", "itching", "pruritus", "diarrh", "constipat",
    "headache", "malaise", "weakness", "swelling", "somnolen", "drowsi", "tremor", "confusion",
    "agitation", "complaint", "discomfort", "dyspnea", "palpitat", "clinical", "manifestation",
)


def tokenize(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


def cue_hits(tokens: list[str], lexicon: tuple[str, ...]) -> list[str]:
    """The tokens that are cues of `lexicon` (5+ char stems as prefixes, shorter ones exact)."""
    return sorted({t for t in tokens if any(t == c or (len(c) >= 5 and t.startswith(c)) for c in lexicon)})


class EvidenceIndex:
    """BM25 over evidence snippets [(doc_id, text)], built lazily on the first search."""

    def __init__(self, docs: list[tuple[str, str]] | None = None, loader=None):
        self._docs = docs
        self._loader = loader      # called once, on first use: sources are read only if needed
        self._bm25 = None

    @property
    def docs(self) -> list[tuple[str, str]]:
        if self._docs is None:
            self._docs = self._loader() if self._loader else []
        return self._docs

    @property
    def loaded(self) -> bool:
        return self._docs is not None

    @classmethod
    def from_sources(cls, corpus_dir: Path | None, obo_path: Path | None, *, max_sentences: int = 300_000,
                     min_chars: int = 30, max_chars: int = 600) -> "EvidenceIndex":
        """Lazily: sentences of the corpus shards (kept/part-*.jsonl records), then DOID `def:` lines."""
        return cls(loader=lambda: read_sources(corpus_dir, obo_path, max_sentences=max_sentences,
                                               min_chars=min_chars, max_chars=max_chars))

    def _index(self):
        if self._bm25 is None:
            from rank_bm25 import BM25Okapi
            tokens = [tokenize(t) or ["_"] for _, t in self.docs]
            self._bm25 = BM25Okapi(tokens) if tokens else False
            # postings: only documents holding a query term can score > 0, so BM25 is computed on
            # those alone (get_batch_scores; same scores as get_scores, without a pass over all docs)
            self._postings: dict[str, list[int]] = {}
            for i, toks in enumerate(tokens):
                for t in set(toks):
                    self._postings.setdefault(t, []).append(i)
        return self._bm25

    def search(self, query: str, k: int = 5, snippet_chars: int = 300) -> list[dict]:
        q = tokenize(query)
        bm = self._index()
        if not q or not bm:
            return []
        ids = sorted({i for t in set(q) for i in self._postings.get(t, ())})
        if not ids:
            return []
        scores = np.asarray(bm.get_batch_scores(q, ids))
        top = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))[:k]
        return [{"doc_id": self.docs[ids[j]][0], "snippet": self.docs[ids[j]][1][:snippet_chars],
                 "score": round(float(scores[j]), 4)} for j in top if scores[j] > 0]


def read_sources(corpus_dir: Path | None, obo_path: Path | None, *, max_sentences: int = 300_000,
                 min_chars: int = 30, max_chars: int = 600) -> list[tuple[str, str]]:
    """[(doc_id, sentence)]: corpus sentences (record id + sentence index), then DOID definitions."""
    import json
    docs: list[tuple[str, str]] = []
    if corpus_dir is not None:
        for shard in sorted(Path(corpus_dir).glob("part-*.jsonl*")):
            opener = gzip.open if shard.suffix == ".gz" else open
            with opener(shard, "rt", encoding="utf-8", errors="replace") as f:
                for line in f:
                    if len(docs) >= max_sentences:
                        break
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if not isinstance(rec, dict):
                        continue
                    text, rid = rec.get("text"), rec.get("id")
                    if not isinstance(text, str) or not isinstance(rid, str):
                        continue
                    for j, s in enumerate(_SENT.split(text)):
                        s = " ".join(s.split())
                        if min_chars <= len(s) <= max_chars:
                            docs.append((f"{rid}#s{j}", s))
    if obo_path is not None:
        docs.extend(read_obo_definitions(obo_path))
    return docs


_OBO_DEF = re.compile(r'^def:\s*"((?:[^"\\]|\\.)*)"')


def read_obo_definitions(path: Path) -> list[tuple[str, str]]:
    """[(DOID id, "name: definition")] of live terms with a def: line."""
    out, term = [], {}

    def flush():
        if term.get("id") and term.get("def") and not term.get("obsolete"):
            out.append((term["id"], f"{term.get('name', '')}: {term['def']}"))

    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("["):
                flush()
                term = {} if line == "[Term]" else {"skip": True}
            elif term.get("skip"):
                continue
            elif line.startswith("id: "):
                term["id"] = line[4:].strip()
            elif line.startswith("name: "):
                term["name"] = line[6:].strip()
            elif line.startswith("def: "):
                m = _OBO_DEF.match(line)
                if m:
                    term["def"] = m.group(1).replace('\\"', '"')
            elif line.strip() == "is_obsolete: true":
                term["obsolete"] = True
    flush()
    return out


@dataclass
class ResolverParams:
    evidence_k: int = 5
    w_evidence: float = 1.0
    w_etiology: float = 1.0
    w_specificity: float = 0.5
    w_similarity: float = 1.0
    member_terms: int = 5          # member names of a candidate used as its description
    max_steps: int = 4             # ReAct model turns per conflict (LLM path)
    snippet_chars: int = 200       # evidence shown to the LLM per snippet


class LocalResolver:
    """Evidence + principles scoring; no LLM."""

    path = "local"

    def __init__(self, tree: Tree, index: EvidenceIndex, params: ResolverParams | None = None,
                 max_tier: int = 4):
        self.tree = tree
        self.index = index
        self.p = params or ResolverParams()
        self.max_tier = max_tier

    def describe(self, c: Candidate) -> list[str]:
        """Name terms of a candidate parent: its path names + its most frequent member names."""
        names = self.tree.path_names(c.node_id)
        norms = subtree_entities(self.tree, c.node_id)
        ents = sorted((self.tree.nodes[f"e:{n}"] for n in norms), key=lambda n: (-n.frequency, n.name))
        return names + [n.name for n in ents[:self.p.member_terms]]

    def score(self, d: Decision, evidence: list[dict]) -> list[dict]:
        from rank_bm25 import BM25Okapi
        cands = d.candidates
        ev_tokens = [tokenize(e["snippet"]) or ["_"] for e in evidence]
        mini = BM25Okapi(ev_tokens) if ev_tokens else None
        entity_tokens = set(tokenize(d.entity.text) + tokenize(d.entity.norm))
        rows = []
        for c in cands:
            terms = self.describe(c)
            toks = [t for t in tokenize(" ".join(terms)) if t not in entity_tokens]
            ev = float(np.sum(mini.get_scores(toks))) if mini is not None and toks else 0.0
            name_toks = tokenize(" ".join(self.tree.path_names(c.node_id)) + " " + " ".join(terms))
            etio, symp = cue_hits(name_toks, ETIOLOGY_ANATOMY), cue_hits(name_toks, SYMPTOM)
            etiology = (len(etio) - len(symp)) / max(1, len(etio) + len(symp))
            tier = self.tree.nodes[c.node_id].tier
            spec = tier / max(1, self.max_tier)
            if any(o.node_id in self.tree.ancestors(c.node_id) for o in cands if o is not c):
                spec += 1.0  # a subset of another candidate: the more specific parent
            rows.append({"evidence_bm25": round(ev, 4), "etiology": round(etiology, 4),
                         "etiology_cues": etio, "symptom_cues": symp, "specificity": round(spec, 4),
                         "similarity": c.similarity, "terms": terms})
        top_ev = max((r["evidence_bm25"] for r in rows), default=0.0)
        for r in rows:
            ev_n = r["evidence_bm25"] / top_ev if top_ev > 0 else 0.0
            r["evidence"] = round(ev_n, 4)
            r["total"] = round(self.p.w_evidence * ev_n + self.p.w_etiology * r["etiology"]
                               + self.p.w_specificity * r["specificity"]
                               + self.p.w_similarity * (r["similarity"] or 0.0), 4)
        return rows

    def resolve(self, d: Decision, evidence: list[dict] | None = None) -> dict:
        if evidence is None:
            evidence = self.index.search(d.entity.text, self.p.evidence_k)
        rows = self.score(d, evidence)
        order = sorted(range(len(rows)), key=lambda i: (-rows[i]["total"], i))
        win = order[0]
        return audit_record(d, rows, win, evidence, self.path, reasoning(d, rows, win))

    def resolve_batch(self, conflicts: list[Decision]) -> list[dict]:
        return [self.resolve(d) for d in conflicts]


def reasoning(d: Decision, rows: list[dict], win: int) -> str:
    parts = []
    for i, (c, r) in enumerate(zip(d.candidates, rows)):
        kind = ("etiology/anatomy-based" if r["etiology"] > 0 else
                "symptom-based" if r["etiology"] < 0 else "neutral")
        parts.append(f"{chr(65 + i)} {c.path}: evidence {r['evidence']:.2f} (bm25 {r['evidence_bm25']:.2f}), "
                     f"{kind} (etiology/anatomy cues {r['etiology_cues'][:4]}, symptom cues "
                     f"{r['symptom_cues'][:4]}), specificity {r['specificity']:.2f}, similarity "
                     f"{r['similarity'] if r['similarity'] is not None else 'n/a'}, total {r['total']:.2f}")
    keep = d.candidates[win].path
    return ("; ".join(parts) + f". By etiological dominance and specificity weighted with the "
            f"retrieved evidence, keep {chr(65 + win)} ({keep}).")


def audit_record(d: Decision, rows: list[dict] | None, win: int, evidence: list[dict], path: str,
                 why: str, **extra) -> dict:
    cands = []
    for i, c in enumerate(d.candidates):
        item = {"label": chr(65 + i), **c.to_json()}
        if rows is not None:
            item["scores"] = {k: v for k, v in rows[i].items() if k != "terms"}
        cands.append(item)
    keep = d.candidates[win]
    return {"entity": d.entity.norm, "text": d.entity.text, "type": d.entity.type,
            "candidates": cands,
            "decision": {"keep": keep.path, "keep_node": keep.node_id,
                         "delete": [c.path for c in d.candidates if c is not keep]},
            "reasoning": why, "evidence": evidence, "path": path, "attacher": d.method, **extra}


REACT_SYSTEM = "You are a rigorous medical knowledge base construction Agent."
REACT_PROMPT = """Your task is to resolve entity classification conflicts. The current entity "{entity}" is attached to multiple parent nodes:
{paths}
You must search for the exact medical definition with the search tool and adjudicate based on the following principles:
1. Principle of Etiological Dominance: classification based on pathological mechanism or anatomical location takes precedence over clinical symptoms.
2. Principle of Specificity: if one parent is a subset of another and describes the entity more accurately, prefer the more specific one.

Work step by step. To search, reply exactly:
Thought: <what you need to know>
Action: search[<query terms>]
You will receive an Observation with evidence. When you have evidence, reply with the final answer:
<SearchEvidence>excerpt from the evidence</SearchEvidence><Reasoning>Since evidence shows ..., according to the Principle of ..., Path X is more appropriate.</Reasoning><FinalAction>Keep: <path>, Delete: <other paths></FinalAction>"""

_ACTION = re.compile(r"Action\s*:\s*search\s*\[([^\]\n]{1,300})\]", re.IGNORECASE)
_KEEP = re.compile(r"Keep\s*:\s*(.+?)\s*(?:,\s*Delete\s*:|$)", re.IGNORECASE | re.DOTALL)


class LLMResolver:
    """ReAct agent over the project LLM client; falls back to `LocalResolver` (recorded)."""

    path = "llm"

    def __init__(self, client, local: LocalResolver, params: ResolverParams | None = None):
        self.client = client
        self.local = local
        self.p = params or local.p
        self.stats = {"conflicts": 0, "decided": 0, "fallback": 0, "searches": 0, "format_errors": 0,
                      "request_failures": 0}

    def _match_keep(self, text: str, d: Decision) -> int | None:
        key = norm_name(text.strip().strip("\"'`"))
        for i, c in enumerate(d.candidates):
            label = chr(65 + i)
            if key in (norm_name(c.path), label.lower(), f"path {label.lower()}",
                       f"parent path {label.lower()}"):
                return i
            if key.startswith(f"path {label.lower()}:") or key.startswith(f"{label.lower()}:"):
                rest = key.split(":", 1)[1].strip()
                if rest == norm_name(c.path):
                    return i
        return None

    def step(self, d: Decision, reply, state: dict) -> str | None:
        """Process one model turn; returns the next user message or None when finished."""
        from tasks.llm.client import LLMError
        from tasks.llm.parsing import extract_tags
        if isinstance(reply, LLMError):
            self.stats["request_failures"] += 1
            state["failure"] = f"request_failed: {str(reply)[:200]}"
            return None
        reply = reply if isinstance(reply, str) else ""
        state["transcript"].append({"role": "assistant", "content": reply})
        finals = extract_tags(reply, "FinalAction")
        if finals:
            m = _KEEP.search(finals[0])
            win = self._match_keep(m.group(1), d) if m else None
            if not state["evidence"]:
                self.stats["format_errors"] += 1
                return ("Observation: no evidence yet. You must search first: "
                        "Action: search[<query terms>]")
            if win is None:
                self.stats["format_errors"] += 1
                return ("Observation: Keep must name one of the parent paths exactly: "
                        + "; ".join(c.path for c in d.candidates))
            state["win"] = win
            state["reasoning"] = (extract_tags(reply, "Reasoning") or [""])[0][:1000]
            state["claimed_evidence"] = (extract_tags(reply, "SearchEvidence") or [""])[0][:1000]
            return None
        m = _ACTION.search(reply)
        if m:
            self.stats["searches"] += 1
            query = m.group(1).strip()
            hits = self.local.index.search(query, self.p.evidence_k, self.p.snippet_chars)
            seen = {e["doc_id"] for e in state["evidence"]}
            state["evidence"].extend(h for h in hits if h["doc_id"] not in seen)
            state["queries"].append(query)
            if not hits:
                return "Observation: no results. Try other query terms."
            return "Observation:\n" + "\n".join(f"[{h['doc_id']}] {h['snippet']}" for h in hits)
        self.stats["format_errors"] += 1
        return ("Observation: invalid format. Reply with 'Thought: ...' and 'Action: search[...]', or "
                "with the final <SearchEvidence>..</SearchEvidence><Reasoning>..</Reasoning>"
                "<FinalAction>Keep: <path>, Delete: <path></FinalAction>.")

    def resolve_batch(self, conflicts: list[Decision]) -> list[dict]:
        states = []
        for d in conflicts:
            self.stats["conflicts"] += 1
            paths = "\n".join(f"{i + 1}. Parent Path {chr(65 + i)}: {c.path}"
                              for i, c in enumerate(d.candidates))
            states.append({"messages": [{"role": "system", "content": REACT_SYSTEM},
                                        {"role": "user", "content": REACT_PROMPT.format(
                                            entity=d.entity.text, paths=paths)}],
                           "transcript": [], "evidence": [], "queries": [], "win": None,
                           "failure": None, "done": False, "steps": 0})
        for _ in range(self.p.max_steps):
            active = [i for i, s in enumerate(states) if not s["done"]]
            if not active:
                break
            replies = self.client.complete_many([states[i]["messages"] for i in active],
                                                return_exceptions=True)
            for i, reply in zip(active, replies):
                s = states[i]
                s["steps"] += 1
                nxt = self.step(conflicts[i], reply, s)
                if nxt is None:
                    s["done"] = True
                else:
                    s["messages"] = s["messages"] + [{"role": "assistant", "content": reply},
                                                     {"role": "user", "content": nxt}]
                    s["transcript"].append({"role": "user", "content": nxt})
        out = []
        for d, s in zip(conflicts, states):
            extra = {"steps": s["steps"], "queries": s["queries"], "transcript": s["transcript"]}
            if s["win"] is not None:
                self.stats["decided"] += 1
                rows = self.local.score(d, s["evidence"])   # recorded for the audit, not used to decide
                out.append(audit_record(d, rows, s["win"], s["evidence"], "llm", s["reasoning"],
                                        decided_by="llm", search_evidence=s["claimed_evidence"], **extra))
                continue
            self.stats["fallback"] += 1
            failure = s["failure"] or f"no valid FinalAction within {self.p.max_steps} steps"
            evidence = s["evidence"] or self.local.index.search(d.entity.text, self.p.evidence_k)
            rec = self.local.resolve(d, evidence)
            rec.update(path="llm", decided_by="local_fallback", llm_failure=failure, **extra)
            out.append(rec)
        return out
