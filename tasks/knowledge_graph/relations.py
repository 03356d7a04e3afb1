"""The knowledge graph's relation vocabulary, sentence units, and the local (lexical) relation extractor.

Relation vocabulary. One set of typed relations is shared by every edge source that types relations
(the lexical patterns here, the LLM path in llm.py, MedQuAD question types and PubTator CID), so
an edge means the same thing whichever source produced it. Relations are condition-centred: the head
is the condition (disease, disorder), the tail the other entity, as in "asthma has_symptom wheezing":

    caused_by, treated_by, has_symptom, diagnosed_by, prevented_by, has_risk_factor,
    has_complication, located_in          directed, head = condition
    associated_with                       symmetric (head/tail stored in norm order)
    co_occurs_with                        symmetric, only from sentence co-occurrence statistics

Active forms a model may answer with ("treats", "causes", "symptom_of", ...) are mapped to the
canonical relation with head and tail swapped (`canonical_relation`). Which entity types each
relation may connect is written in tasks/knowledge_graph/signatures.py; every edge source's edges are
checked against it before they enter the graph.

Sentence units. A document's text is cut with the project's sentence splitter
(tasks.extraction.common.split_sentences) and the entity_map hits (offsets into the record's text)
are assigned to the sentence that contains them; a sentence with two or more distinct tree entities
is where co-occurrence is counted and where relations are extracted.

Local extractor. Transparent lexical patterns over the text *between two adjacent entity hits* of a
sentence (plus, for "symptoms of Y include X", the few words before the first hit), e.g.

    "X-induced Y"                   Y caused_by X       "Y caused by / due to X"    Y caused_by X
    "X causes / leads to Y"         Y caused_by X       "Y in patients treated with X"  Y caused_by X
    "X for the treatment of Y"      Y treated_by X      "Y treated with X"          Y treated_by X
    "symptoms of Y include X"       Y has_symptom X     "X is a symptom of Y"       Y has_symptom X
    "X for the diagnosis of Y"      Y diagnosed_by X    "X prevents Y"              Y prevented_by X
    "X is a risk factor for Y"      Y has_risk_factor X "Y complicated by X"        Y has_complication X
    "X is associated with Y"        X associated_with Y
    "Y of / in the X"               Y located_in X      "Y affecting / located in the X"  Y located_in X

The pattern must match the whole gap between the two hits (fullmatch), so an intervening entity or
clause never produces an edge; a list after the right-hand entity ("..., X2 and X3") extends the
same relation to each item; an abbreviation in parentheses right after an entity ("hypertension
(HTN)") is folded into that entity's hit, whether or not the abbreviation is a tree entity itself. Why patterns: deterministic, explainable (each edge names its pattern),
no model to download; recall is low by design, precision high. The LLM path types the same relations.
The `located_in` patterns are the exception: "Y of the X" and "Y in the X" say "located in" only when
X is a body part ("cancer of the breast", "pain in the chest"), and say something else otherwise
("complications of diabetes", "hypertension in pregnancy"). They are kept because the signature
check (located_in: Disease|Symptom -> Anatomy) rejects every non-anatomy tail, with the reason,
so the pattern only has to find the syntax and the types decide.
"""

from __future__ import annotations

import bisect
import dataclasses
import re

from tasks.extraction.common import split_sentences

DIRECTED = ("caused_by", "treated_by", "has_symptom", "diagnosed_by", "prevented_by", "has_risk_factor",
            "has_complication", "located_in")
ASSOCIATED = "associated_with"
CO_OCCURS = "co_occurs_with"
RELATIONS = (*DIRECTED, ASSOCIATED)                  # what the pattern and LLM paths may return
SYMMETRIC = frozenset({ASSOCIATED, CO_OCCURS})
ALL_RELATIONS = (*RELATIONS, CO_OCCURS)

RELATION_GLOSS = {
    "caused_by": "the first entity is caused or induced by the second (a drug, chemical, gene, infection or other condition)",
    "treated_by": "the first entity is treated by the second",
    "has_symptom": "the first entity has the second as a symptom or sign",
    "diagnosed_by": "the first entity is diagnosed or detected by the second",
    "prevented_by": "the first entity is prevented by the second",
    "has_risk_factor": "the second entity raises the risk of the first",
    "has_complication": "the second entity is a complication of the first",
    "located_in": "the first entity (a disease or symptom) is located in or affects the second (a body part)",
    "associated_with": "the two are associated, with no more specific relation stated",
}

# Active or inverse spellings -> (canonical relation, swap head and tail)
_ALIASES = {
    "causes": ("caused_by", True), "cause": ("caused_by", True), "induces": ("caused_by", True),
    "induced_by": ("caused_by", False), "leads_to": ("caused_by", True),
    "treats": ("treated_by", True), "treat": ("treated_by", True), "treated_with": ("treated_by", False),
    "symptom_of": ("has_symptom", True), "sign_of": ("has_symptom", True),
    "diagnoses": ("diagnosed_by", True), "detects": ("diagnosed_by", True),
    "prevents": ("prevented_by", True), "risk_factor_of": ("has_risk_factor", True),
    "risk_factor_for": ("has_risk_factor", True), "increases_risk_of": ("has_risk_factor", True),
    "complication_of": ("has_complication", True), "location": ("located_in", False),
    "located_at": ("located_in", False), "occurs_in": ("located_in", False), "found_in": ("located_in", False),
    "affects": ("located_in", False), "site_of": ("located_in", True), "associated": (ASSOCIATED, False),
    "related_to": (ASSOCIATED, False),
}


def canonical_relation(raw: object) -> tuple[str, bool] | None:
    """(relation, swap) for a relation name as a model may write it, or None if unknown."""
    if not isinstance(raw, str):
        return None
    key = re.sub(r"[\s\-]+", "_", raw.strip().strip("\"'<>[]").casefold())
    if key in RELATIONS:
        return key, False
    return _ALIASES.get(key)


# ----------------------------------------------------------------------------- sentence units
@dataclasses.dataclass
class Hit:
    node: int           # graph node index of the entity
    start: int          # offsets into the record's text, end exclusive
    end: int


@dataclasses.dataclass
class Sentence:
    doc_id: str
    index: int          # sentence number within the document
    start: int
    end: int
    text: str
    hits: list[Hit]     # in text order, non-overlapping (leftmost-longest from the automaton)

    @property
    def nodes(self) -> list[int]:
        """Distinct entity nodes in order of first occurrence."""
        seen: dict[int, None] = {}
        for h in self.hits:
            seen.setdefault(h.node, None)
        return list(seen)

    def provenance(self) -> dict:
        return {"doc_id": self.doc_id, "sentence": self.index, "start": self.start, "end": self.end,
                "text": self.text}


def sentence_units(doc_id: str, text: str, hits: list[Hit], max_chars: int) -> tuple[list[Sentence], int]:
    """The document's sentences with their hits; also the number of hits that straddle a boundary."""
    spans = split_sentences(text, max_chars) if text else []
    starts = [s for s, _ in spans]
    out = [Sentence(doc_id, i, s, e, text[s:e], []) for i, (s, e) in enumerate(spans)]
    straddling = 0
    for h in sorted(hits, key=lambda h: (h.start, h.end)):
        i = bisect.bisect_right(starts, h.start) - 1
        if i < 0 or h.end > spans[i][1]:
            straddling += 1
            continue
        out[i].hits.append(h)
    return out, straddling


_ALIAS_OPEN = re.compile(r"\s*\(\s*")
_ALIAS_CLOSE = re.compile(r"\s*\)")


def fold_aliases(sentence: Sentence) -> tuple[list[Hit], list[tuple[int, int]]]:
    """Hits with "X (ABBR)" folded into X's hit (its span now ends after the ")"), and the
    (X, ABBR) node pairs found. An abbreviation is another name of X, never a second entity that X
    relates to ("tuberculosis (TB)" must not give "tuberculosis prevented_by tb")."""
    hits, pairs = sentence.hits, []
    out: list[Hit] = []
    text, base = sentence.text, sentence.start
    i = 0
    while i < len(hits):
        h = hits[i]
        if i + 1 < len(hits) and hits[i + 1].node != h.node:
            nxt = hits[i + 1]
            close = _ALIAS_CLOSE.match(text, nxt.end - base)
            if close and _ALIAS_OPEN.fullmatch(text, h.end - base, nxt.start - base):
                pairs.append((h.node, nxt.node))
                out.append(Hit(h.node, h.start, close.end() + base))
                i += 2
                continue
        out.append(h)
        i += 1
    return out, pairs


# ----------------------------------------------------------------------------- lexical patterns
@dataclasses.dataclass(frozen=True)
class Pattern:
    name: str
    relation: str
    head: str                      # "left" or "right": which of the two entities is the head
    between: re.Pattern            # must match the whole gap between the two hits
    before: re.Pattern | None = None   # must match the end of the text before the left hit


_PAREN = r"\s*(?:\([^()]{0,40}\)\s*)?"      # "Y (ABC) caused by X": an abbreviation in the gap is fine
_ART = r"(?:(?:the|an?)\s+)?"
_AUX = r"(?:(?:is|are|was|were|be|been|being|has been|have been|may be|can be|often|usually|commonly|mainly|mostly|frequently|probably|possibly|typically|sometimes)\s+)"
_SIDE = r"(?:(?:left|right|upper|lower|both|inner|outer|middle)\s+)?"     # "pain in the left arm"
_GROUP = r"(?:patients|subjects|children|adults|women|men|infants|rats|mice|individuals|people|volunteers|cases)"


def _p(name: str, relation: str, head: str, between: str, before: str | None = None) -> Pattern:
    return Pattern(name, relation, head, re.compile(_PAREN + between, re.IGNORECASE),
                   re.compile(before + r"$", re.IGNORECASE) if before else None)


# Order matters: the first pattern whose gap regex matches wins.
PATTERNS: tuple[Pattern, ...] = (
    _p("x_induced_y", "caused_by", "right", r"-\s*(?:induced|triggered|provoked)\s+" + _ART),
    _p("y_caused_by_x", "caused_by", "left",
       _AUX + r"{0,2}(?:caused|induced|triggered|provoked|mediated)\s+by\s+" + _ART),
    _p("y_due_to_x", "caused_by", "left",
       _AUX + r"{0,2}(?:due|secondary|attributable|attributed)\s+to\s+" + _ART),
    _p("y_resulting_from_x", "caused_by", "left", r"(?:resulting|arising)\s+from\s+" + _ART),
    _p("y_in_patients_treated_with_x", "caused_by", "left",
       r"(?:in|among)\s+(?:\w+\s+){0,2}" + _GROUP + r"\s+(?:who\s+(?:were|are|had been|have been)\s+)?"
       r"(?:treated\s+with|receiving|given|taking|exposed\s+to|on)\s+" + _ART),
    _p("x_associated_with_increased_risk_of_y", "has_risk_factor", "right",
       _AUX + r"{0,3}(?:associated|linked)\s+with\s+(?:an?\s+)?(?:increased|higher|elevated)\s+risk\s+of\s+"),
    _p("x_increases_risk_of_y", "has_risk_factor", "right",
       r"(?:(?:may|can|might|greatly|significantly)\s+)?(?:increases?|increased|raises?|raised)\s+"
       r"(?:the\s+)?(?:risk|chance|likelihood)\s+(?:of|for)\s+(?:developing\s+|getting\s+)?" + _ART),
    _p("x_risk_factor_for_y", "has_risk_factor", "right",
       r"(?:is|are|was|were)\s+(?:(?:a|an|the|one)\s+)?(?:\w+\s+)?risk\s+factors?\s+(?:for|of)\s+" + _ART),
    _p("x_causes_y", "caused_by", "right",
       r"(?:(?:can|may|might|often|commonly|frequently|also)\s+)?(?:causes?|caused|induces?|induced|"
       r"leads?\s+to|led\s+to|results?\s+in|resulted\s+in|produces?|produced|provokes?|provoked|"
       r"triggers?|triggered)\s+" + _ART),
    _p("x_for_treatment_of_y", "treated_by", "right",
       r"(?:(?:is|are|was|were|has been|have been)\s+)?(?:(?:widely|commonly|successfully|effectively|"
       r"also)\s+)?(?:(?:used|effective|approved|indicated|given)\s+)?(?:for|in)\s+the\s+"
       r"(?:treatment|therapy|management)\s+of\s+(?:(?:patients|children|adults)\s+with\s+)?" + _ART),
    _p("x_to_treat_y", "treated_by", "right",
       r"(?:(?:is|are|was|were|can be|may be)\s+)?(?:(?:used|given|prescribed)\s+)?to\s+(?:treat|manage|"
       r"control|relieve)\s+" + _ART),
    _p("x_therapy_for_y", "treated_by", "right", r"(?:therapy|treatment|treatments)\s+(?:for|of)\s+" + _ART),
    _p("y_treated_with_x", "treated_by", "left",
       _AUX + r"{0,2}(?:(?:successfully|effectively|usually)\s+)?(?:treated|managed|controlled)\s+"
       r"(?:with|by|using)\s+" + _ART),
    _p("symptoms_of_y_include_x", "has_symptom", "left",
       r"(?:(?:may|can|often|usually|commonly)\s+)?(?:include|includes|included|are|is|consist\s+of)\s*:?\s*"
       + _ART, before=r"(?:symptoms?|signs?|features?|manifestations?)(?:\s+and\s+(?:symptoms?|signs?))?"
       r"\s+(?:of|in)\s+" + _ART),
    _p("x_symptom_of_y", "has_symptom", "right",
       r"(?:is|are|was|were|may be|can be)\s+(?:(?:a|an|the|one)\s+)?(?:(?:common|frequent|early|main|"
       r"major|typical|classic|first|rare)\s+)?(?:symptoms?|signs?|manifestations?)\s+of\s+" + _ART),
    _p("y_characterized_by_x", "has_symptom", "left",
       _AUX + r"{0,2}(?:characterized|characterised|manifested|marked|accompanied)\s+by\s+" + _ART),
    _p("y_presenting_with_x", "has_symptom", "left", r"(?:presents?|presented|presenting)\s+with\s+" + _ART),
    _p("x_for_diagnosis_of_y", "diagnosed_by", "right",
       r"(?:(?:is|are|was|were)\s+)?(?:(?:used|useful|helpful|important)\s+)?(?:for|in)\s+the\s+"
       r"(?:diagnosis|detection|evaluation|screening)\s+(?:of|for)\s+" + _ART),
    _p("x_to_diagnose_y", "diagnosed_by", "right",
       r"(?:(?:is|are|can be|may be)\s+)?(?:used\s+)?to\s+(?:diagnose|detect|confirm)\s+" + _ART),
    _p("y_diagnosed_by_x", "diagnosed_by", "left",
       _AUX + r"{0,2}(?:diagnosed|detected|confirmed)\s+(?:by|using|through|on)\s+" + _ART),
    _p("x_prevents_y", "prevented_by", "right",
       r"(?:(?:can|may|might|helps?(?:\s+to)?|to)\s+)?(?:prevents?|prevented|protects?\s+against)\s+" + _ART),
    _p("x_for_prevention_of_y", "prevented_by", "right",
       r"(?:(?:is|are|was|were)\s+)?(?:used\s+)?(?:for|in)\s+the\s+prevention\s+of\s+" + _ART),
    _p("y_complicated_by_x", "has_complication", "left", _AUX + r"{0,2}complicated\s+by\s+" + _ART),
    _p("x_complication_of_y", "has_complication", "right",
       r"(?:is|are|was|were|may be|can be)\s+(?:(?:a|an|the|one)\s+)?(?:(?:common|rare|serious|major|"
       r"frequent)\s+)?complications?\s+of\s+" + _ART),
    _p("complications_of_y_include_x", "has_complication", "left",
       r"(?:(?:may|can)\s+)?(?:include|includes|are)\s*:?\s*" + _ART,
       before=r"complications?\s+(?:of|in)\s+" + _ART),
    _p("x_associated_with_y", ASSOCIATED, "left",
       _AUX + r"{0,3}(?:(?:strongly|significantly|closely|frequently|often)\s+)?(?:associated|linked|"
       r"correlated)\s+with\s+" + _ART),
    # located_in: the syntax alone is ambiguous; the signature check keeps only anatomy tails (docstring)
    _p("y_located_in_x", "located_in", "left",
       r"(?:(?:is|are|was|were)\s+)?(?:(?:usually|mainly|mostly|often|typically)\s+)?(?:located|found|situated|"
       r"seen|occurring|occurs?|arising|originating|localized|localised)\s+(?:in|on|at|within)\s+" + _ART + _SIDE),
    _p("y_affecting_x", "located_in", "left",
       r"(?:(?:that|which)\s+)?(?:affecting|affects?|affected|involving|involves?|involved)\s+" + _ART + _SIDE),
    _p("y_of_x", "located_in", "left", r"of\s+" + _ART + _SIDE),
    _p("y_in_x", "located_in", "left", r"in\s+(?:the\s+)?" + _SIDE),
)

_LIST_SEP = re.compile(r"\s*(?:,|;|,?\s+and|,?\s+or|,?\s+and/or)\s+" + _ART + r"|\s*,\s*", re.IGNORECASE)


@dataclasses.dataclass
class Relation:
    """A typed relation found in one sentence (head, tail = graph node indices)."""
    head: int
    relation: str
    tail: int
    sentence: Sentence
    method: str         # the pattern name, or "llm"


class PatternExtractor:
    """The local relation extractor: `extract(sentence)` -> [Relation, ...] (see module docstring)."""

    name = "pattern"

    def __init__(self, patterns: tuple[Pattern, ...] = PATTERNS, max_gap_chars: int = 100,
                 max_list_items: int = 8, before_chars: int = 60):
        self.patterns = patterns
        self.max_gap_chars = max_gap_chars
        self.max_list_items = max_list_items
        self.before_chars = before_chars

    def match_gap(self, gap: str, before: str) -> Pattern | None:
        if len(gap) > self.max_gap_chars:
            return None
        for p in self.patterns:
            if p.before is not None and not p.before.search(before):
                continue
            if p.between.fullmatch(gap):
                return p
        return None

    def extract(self, sentence: Sentence) -> list[Relation]:
        hits, _ = fold_aliases(sentence)
        if len({h.node for h in hits}) < 2:
            return []
        base = sentence.start
        text = sentence.text
        out: list[Relation] = []
        seen: set[tuple[int, str, int]] = set()
        for i in range(len(hits) - 1):
            left, right = hits[i], hits[i + 1]
            if left.node == right.node:
                continue
            gap = text[left.end - base:right.start - base]
            before = text[max(0, left.start - base - self.before_chars):left.start - base]
            p = self.match_gap(gap, before)
            if p is None:
                continue
            # the right-hand entity, and a list continuing it ("X, Y and Z"), take the same role
            rights = [right]
            j = i + 1
            while j + 1 < len(hits) and len(rights) < self.max_list_items:
                sep = text[hits[j].end - base:hits[j + 1].start - base]
                if not _LIST_SEP.fullmatch(sep):
                    break
                rights.append(hits[j + 1])
                j += 1
            for r in rights:
                if r.node == left.node:
                    continue
                head, tail = (left.node, r.node) if p.head == "left" else (r.node, left.node)
                if p.relation in SYMMETRIC and head > tail:
                    head, tail = tail, head
                key = (head, p.relation, tail)
                if key not in seen:
                    seen.add(key)
                    out.append(Relation(head, p.relation, tail, sentence, p.name))
        return out
