"""Caption refinement and rubric filtering (paper §3.3.3).

    from tasks.cpt_synthesis.caption_refine import (FactIndex, LocalReviser, LocalRubric, RefineParams,
                                          matcher_extractor, refine_captions)
    out = refine_captions(caption_samples, matcher_extractor(matcher), FactIndex(nodes, edges),
                          LocalReviser(), LocalRubric(), RefineParams())

The paper's steps, each a replaceable part:
1. draft: the caption of a `caption` sample (tasks/cpt_synthesis/image_knowledge.py), with its attributes;
2. entity extraction: `extract(text) -> [entity norm]` -- by default the project's word-bounded
   Aho-Corasick matcher over the Medical Entity Tree (tasks.mapping.automaton.EntityMatcher);
3. knowledge retrieval: `retrieve(norm) -> [fact sentence]` -- by default `FactIndex`, the typed KG edges
   touching the entity, stated as sentences (the same wording as the KG QA templates);
4. revision suggestions and 5. rewrite: `Reviser.suggest/rewrite`. Local: rules (name the anatomical
   region the attributes give; soften certainty words the evidence cannot carry; add up to
   `max_facts` retrieved facts about the caption's entities as background). LLM: two prompts (suggestions
   as a JSON list; the rewritten caption as JSON);
6. rubric score: `Rubric.score(caption, attrs, facts)` -> criteria in [0, 1]: anatomical localization,
   morphology, evidence strictness (no unsupported claims), combined with `weights` (a criterion that
   does not apply -- morphology for an image without any finding -- is left out and the weights
   renormalised). Local: lexicons + negation-aware claim check against the attributes and facts. LLM:
   a rubric prompt returning the three scores. Captions below `threshold`, or with evidence below
   `min_evidence` (an ungrounded diagnostic claim), are rejected with the scores and issues.
Kept samples have task `caption_refined`; meta keeps the draft, suggestions, facts and scores.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from tasks.cpt_synthesis.kg_qa import DEFAULT_RELATIONS, Fact, KGQAParams, display_name
from tasks.cpt_synthesis.samples import Outcome, make_sample
from tasks.llm.ask import ask_parsed, json_object

ANATOMY = re.compile(
    r"\b(?:chest|thorax|thoracic|lungs?|lobes?|pulmonary|pleura\w*|hil(?:um|ar)|mediastin\w*|heart|cardiac|aort\w*|"
    r"abdomen|abdominal|liver|hepatic|kidneys?|renal|spleen|splenic|pancrea\w*|bowel|colon|cecum|stomach|"
    r"gallbladder|bladder|pelvi\w*|brain|cerebr\w*|cortex|cortical|ventricle\w*|basal ganglia|head|skull|"
    r"spine|spinal|vertebra\w*|ribs?|diaphragm|hemidiaphragm|costophrenic|neck|bone|left|right|bilateral\w*|"
    r"upper|lower|apical|basal|anterior|posterior|axial|coronal|sagittal|frontal|lateral)\b", re.IGNORECASE)
MORPHOLOGY = re.compile(
    r"\b(?:opacit\w*|consolidation|infiltrat\w*|mass(?:es)?|nodul\w*|lesions?|densit\w*|hyperdens\w*|hypodens\w*|"
    r"hyperintens\w*|hypointens\w*|isointens\w*|enhanc\w*|effusions?|dilat\w*|thicken\w*|calcifi\w*|cystic|solid|"
    r"homogen\w*|heterogen\w*|well-defined|ill-defined|patchy|focal|diffuse|airspace|air bronchograms?|"
    r"stranding|fractures?|enlarged|size|shape|margins?|contours?|obstruct\w*|clear)\b", re.IGNORECASE)
FINDING_TERMS = re.compile(
    r"\b(?:pneumonia|effusion|pneumothorax|fracture|mass|tumou?r|carcinoma|cancer|metasta\w+|hemorrhage|haemorrhage|"
    r"infarct\w*|edema|oedema|cardiomegaly|nodule|consolidation|atelectasis|obstruction|abscess|cyst|stroke|"
    r"embolism|aneurysm|appendicitis|cholecystitis|hydronephrosis|lymphadenopathy|tuberculosis)\b", re.IGNORECASE)
OVERCLAIM = re.compile(r"\b(?:definitely|certainly|undoubtedly|unequivocally|pathognomonic|diagnostic of|confirms?|"
                       r"proves?|clearly shows)\b", re.IGNORECASE)
NEGATION = re.compile(r"\b(?:no|not|without|negative for|absence of|absent|free of|rule[sd]? out)\b[^.;]*$", re.IGNORECASE)
SOFTEN = {"definitely": "likely", "certainly": "likely", "undoubtedly": "likely", "unequivocally": "likely",
          "pathognomonic": "suggestive", "diagnostic of": "consistent with", "confirms": "is consistent with",
          "confirm": "are consistent with", "proves": "suggests", "prove": "suggest", "clearly shows": "shows"}
CRITERIA = ("anatomical_localization", "morphology", "evidence")


@dataclasses.dataclass
class RefineParams:
    max_facts: int = 2                # retrieved facts added to a caption (local reviser)
    facts_per_entity: int = 3         # facts retrieved per entity
    threshold: float = 0.7            # weighted rubric score a caption needs (anatomy + evidence alone: 0.65)
    min_evidence: float = 0.5         # evidence strictness a caption needs, whatever its total
    weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"anatomical_localization": 0.3, "morphology": 0.35, "evidence": 0.35})
    max_tokens: int = 384

    def __post_init__(self):
        if set(self.weights) != set(CRITERIA) or any(w < 0 for w in self.weights.values()):
            raise ValueError(f"weights need exactly the criteria {CRITERIA}, each >= 0")


# ----------------------------------------------------------------------------- extraction + retrieval
def matcher_extractor(matcher, min_chars: int = 4) -> Callable[[str], list[str]]:
    """Entity norms found by an EntityMatcher whose payloads are (norm, node id), in text order.
    Hits shorter than `min_chars` are dropped: case-folded matching turns units ("mm") into
    abbreviations ("MM")."""
    def extract(text: str) -> list[str]:
        return list(dict.fromkeys(p[0] if isinstance(p, tuple) else str(p) for a, b, p in matcher.scan(text)
                                  if b - a >= min_chars))
    return extract


class FactIndex:
    """entity norm -> fact sentences from typed KG edges where it is the head (strongest support first)."""

    def __init__(self, nodes: Sequence[dict], edges: Iterable[dict], relations: Sequence[str] = DEFAULT_RELATIONS,
                 per_entity: int = 3):
        p = KGQAParams()
        names = {i: display_name(n, p) for i, n in enumerate(nodes)}
        found: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for e in edges:
            h, t = e.get("head_idx"), e.get("tail_idx")
            if e.get("relation") not in relations or not names.get(h) or not names.get(t):
                continue
            s = Fact(names[h], e["relation"], names[t]).statement()
            # indexed under the head (the condition) only: "pneumonia" retrieves what causes it and its
            # symptoms, while a tail such as a drug or an organ would pull in unrelated conditions
            found[nodes[h].get("norm", names[h].lower())].append((-float(e.get("support", 1)), s))
        self.facts = {k: [s for _, s in sorted(v)[:per_entity]] for k, v in found.items()}

    def __call__(self, norm: str) -> list[str]:
        return self.facts.get(norm, [])


# ----------------------------------------------------------------------------- revisers
class Reviser(Protocol):
    name: str

    def suggest(self, drafts: Sequence[str], facts: Sequence[list[str]], attrs: Sequence[dict]) -> list: ...

    def rewrite(self, drafts: Sequence[str], suggestions: Sequence[list[str]], facts: Sequence[list[str]]) -> list: ...


class LocalReviser:
    name = "local"

    def __init__(self, max_facts: int = 2):
        self.max_facts = max_facts

    def suggest(self, drafts, facts, attrs) -> list[list[str]]:
        out = []
        for d, fs, a in zip(drafts, facts, attrs):
            s = []
            if not ANATOMY.search(d) and a.get("anatomy"):
                s.append(f"State the anatomical region: {a['anatomy']}.")
            for m in dict.fromkeys(x.group(0).lower() for x in OVERCLAIM.finditer(d)):
                s.append(f"Replace the overstatement '{m}' with '{SOFTEN.get(m, 'consistent with')}'.")
            for f in [f for f in fs if f not in d][:self.max_facts]:
                s.append(f"Add background knowledge: {f}")
            out.append(s)
        return out

    def rewrite(self, drafts, suggestions, facts) -> list[str]:
        out = []
        for d, sug in zip(drafts, suggestions):
            text, background = d, []
            for s in sug:
                if s.startswith("State the anatomical region: "):
                    text = f"Region: {s.split(': ', 1)[1]} {text}"
                elif s.startswith("Replace the overstatement '"):
                    old, new = re.match(r"Replace the overstatement '(.+?)' with '(.+?)'", s).groups()
                    text = re.sub(rf"\b{re.escape(old)}\b", new, text, flags=re.IGNORECASE)
                elif s.startswith("Add background knowledge: "):
                    background.append(s.split(": ", 1)[1])
            if background:
                text = f"{text} Background: {' '.join(background)}"
            out.append(text)
        return out


SYSTEM = "You are a senior radiologist reviewing image captions. You answer only with JSON."
SUGGEST_PROMPT = ("Draft caption:\n{draft}\n\nStructured findings (JSON):\n{attrs}\n\nDomain knowledge:\n{facts}\n\n"
                  "List specific revision suggestions that make the caption accurate, precise about anatomy and "
                  "morphology, and free of claims the findings do not support. Reply with only JSON: "
                  '{{"suggestions": ["...", "..."]}}')
REWRITE_PROMPT = ("Draft caption:\n{draft}\n\nRevision suggestions:\n{suggestions}\n\nDomain knowledge:\n{facts}\n\n"
                  'Rewrite the caption applying the suggestions. Reply with only JSON: {{"caption": "..."}}')
RUBRIC_PROMPT = ("Score this medical image caption against the rubric, each criterion from 0 to 1.\n"
                 "anatomical_localization: the anatomy/region is named precisely.\n"
                 "morphology: findings are described by their appearance (shape, density, size, margins).\n"
                 "evidence: every claim is supported by the structured findings or the domain knowledge; "
                 "unsupported diagnoses or overstatements score low.\n\nCaption:\n{caption}\n\nStructured findings "
                 "(JSON):\n{attrs}\n\nDomain knowledge:\n{facts}\n\nReply with only JSON: "
                 '{{"anatomical_localization": 0.0, "morphology": 0.0, "evidence": 0.0, "issues": ["..."]}}')
REPAIR = "That reply could not be used ({problem}). Answer again with only the JSON described above."


def _facts_text(fs: Sequence[str]) -> str:
    return "\n".join(f"- {f}" for f in fs) or "(none)"


def parse_suggestions(reply: str) -> list[str]:
    obj = json_object(reply, {"suggestions": list})
    items = [s.strip() for s in obj["suggestions"] if isinstance(s, str) and s.strip()]
    if len(items) != len(obj["suggestions"]):
        raise ValueError("every suggestion must be a non-empty string")
    return items


class LLMReviser:
    name = "llm"

    def __init__(self, client, max_tokens: int = 384):
        self.client, self.max_tokens = client, max_tokens

    def _ask(self, prompts, parse):
        chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
        return [a.value if a.ok else {"failure": a.failure}
                for a in ask_parsed(self.client, chats, parse, REPAIR, max_tokens=self.max_tokens)]

    def suggest(self, drafts, facts, attrs) -> list:
        return self._ask([SUGGEST_PROMPT.format(draft=d, attrs=json.dumps(a, sort_keys=True), facts=_facts_text(f))
                          for d, f, a in zip(drafts, facts, attrs)], parse_suggestions)

    def rewrite(self, drafts, suggestions, facts) -> list:
        return self._ask([REWRITE_PROMPT.format(draft=d, suggestions=_facts_text(s), facts=_facts_text(f))
                          for d, s, f in zip(drafts, suggestions, facts)],
                         lambda r: json_object(r, {"caption": str})["caption"].strip())


# ----------------------------------------------------------------------------- rubric
class Rubric(Protocol):
    name: str

    def score(self, captions: Sequence[str], attrs: Sequence[dict], facts: Sequence[list[str]]) -> list: ...


def unsupported_claims(caption: str, support: str) -> list[str]:
    """Finding terms asserted (not negated) in the caption that the support text never mentions."""
    out = []
    for m in FINDING_TERMS.finditer(caption):
        term = m.group(0).lower()
        before = caption[max(0, caption.rfind(".", 0, m.start()) + 1):m.start()]
        if NEGATION.search(before) or term in support:
            continue
        out.append(term)
    return list(dict.fromkeys(out))


class LocalRubric:
    """Rule-based rubric (module docstring): lexicons for anatomy and morphology, claims checked
    against the attributes and retrieved facts, overstatements penalised."""
    name = "local"

    def score(self, captions, attrs, facts) -> list[dict]:
        out = []
        for c, a, fs in zip(captions, attrs, facts):
            support = (json.dumps(a, ensure_ascii=False) + " " + " ".join(fs)).lower()
            issues = []
            anat = 1.0 if ANATOMY.search(c) else 0.0
            if not anat:
                issues.append("no anatomical localization")
            has_finding = bool(a.get("finding") or a.get("qa"))
            morph = (1.0 if MORPHOLOGY.search(c) else 0.0) if has_finding else None
            if morph == 0.0:
                issues.append("no morphological description")
            claims = unsupported_claims(c, support)
            over = list(dict.fromkeys(m.group(0).lower() for m in OVERCLAIM.finditer(c)))
            evidence = max(0.0, 1.0 - 0.6 * len(claims) - 0.25 * len(over))   # one ungrounded claim fails min_evidence
            issues += [f"unsupported claim: {t}" for t in claims] + [f"overstatement: {t}" for t in over]
            out.append({"anatomical_localization": anat, "morphology": morph, "evidence": evidence, "issues": issues})
        return out


def parse_rubric(reply: str) -> dict:
    obj = json_object(reply, {})
    out = {}
    for k in CRITERIA:
        v = obj.get(k)
        if v is None and k == "morphology":
            out[k] = None
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{k!r} must be a number in [0, 1]")
        out[k] = float(v)
    issues = obj.get("issues", [])
    out["issues"] = [str(i) for i in issues] if isinstance(issues, list) else [str(issues)]
    return out


class LLMRubric:
    name = "llm"

    def __init__(self, client, max_tokens: int = 256):
        self.client, self.max_tokens = client, max_tokens

    def score(self, captions, attrs, facts) -> list:
        chats = [[{"role": "system", "content": SYSTEM},
                  {"role": "user", "content": RUBRIC_PROMPT.format(caption=c, attrs=json.dumps(a, sort_keys=True),
                                                                   facts=_facts_text(f))}]
                 for c, a, f in zip(captions, attrs, facts)]
        return [a.value if a.ok else {"failure": a.failure}
                for a in ask_parsed(self.client, chats, parse_rubric, REPAIR, max_tokens=self.max_tokens)]


def weighted(scores: dict, weights: dict[str, float]) -> float:
    used = {k: w for k, w in weights.items() if scores.get(k) is not None}
    total = sum(used.values())
    return round(sum(scores[k] * w for k, w in used.items()) / total, 4) if total else 0.0


# ----------------------------------------------------------------------------- pipeline
def _fail(r) -> dict | None:
    return r["failure"] if isinstance(r, dict) and "failure" in r else None


def refine_captions(samples: Sequence[dict], extract: Callable[[str], list[str]], retrieve: Callable[[str], list[str]],
                    reviser: Reviser, rubric: Rubric, params: RefineParams) -> Outcome:
    """Refined, rubric-filtered caption samples from `caption` samples (module docstring)."""
    out = Outcome()
    drafts, attrs, facts, ents, todo = [], [], [], [], []
    for s in samples:
        draft = s["messages"][-1]["content"] if s.get("messages") else ""
        if not isinstance(draft, str) or not draft.strip():
            out.reject("empty_text", "caption sample without a draft", {"id": s.get("id")})
            continue
        found = extract(draft)
        fs = list(dict.fromkeys(f for e in found for f in retrieve(e)[:params.facts_per_entity]))
        todo.append(s)
        drafts.append(draft)
        attrs.append(s["meta"].get("attrs") or {})
        facts.append(fs)
        ents.append(found)
    suggestions = reviser.suggest(drafts, facts, attrs)
    live = [i for i, sg in enumerate(suggestions) if not _fail(sg)]
    rewritten = dict(zip(live, reviser.rewrite([drafts[i] for i in live], [suggestions[i] for i in live],
                                               [facts[i] for i in live])))
    ready = [i for i in live if not _fail(rewritten[i]) and isinstance(rewritten[i], str) and rewritten[i].strip()]
    scores = dict(zip(ready, rubric.score([rewritten[i] for i in ready], [attrs[i] for i in ready],
                                          [facts[i] for i in ready])))
    for i, s in enumerate(todo):
        loc = {"id": s["id"], "draft": drafts[i][:300]}
        step, fail = next(((name, _fail(x)) for name, x in (("suggest", suggestions[i]), ("rewrite", rewritten.get(i)),
                                                               ("rubric", scores.get(i))) if _fail(x)), (None, None))
        if fail:
            out.reject("llm_failed", f"{step}: {fail['detail']}", {**loc, "failure": fail})
            continue
        if i not in scores:
            out.reject("empty_text", "the rewrite is empty", loc)
            continue
        sc = scores[i]
        total = weighted(sc, params.weights)
        rubric_meta = {**{k: sc.get(k) for k in CRITERIA}, "total": total, "issues": sc.get("issues", [])}
        if sc["evidence"] < params.min_evidence:
            out.reject("unsupported_claims", "; ".join(sc.get("issues", [])) or f"evidence {sc['evidence']}",
                       {**loc, "caption": rewritten[i], "rubric": rubric_meta})
            continue
        if total < params.threshold:
            out.reject("rubric_below_threshold", f"score {total} < {params.threshold}: " + "; ".join(sc.get("issues", [])),
                       {**loc, "caption": rewritten[i], "rubric": rubric_meta})
            continue
        msgs = [s["messages"][0], {"role": "assistant", "content": rewritten[i]}]
        out.kept.append(make_sample(s["kind"], "caption_refined", s["source_ids"], images=s["images"], messages=msgs,
                                    generator=reviser.name, rubric_generator=rubric.name, attrs=attrs[i],
                                    draft=drafts[i], entities=ents[i], facts=facts[i], suggestions=suggestions[i],
                                    rubric=rubric_meta))
    return out
