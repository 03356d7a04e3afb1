"""The entity type taxonomy and the typed dictionary it is read from (paper §3.2.1 Stage 2: open typing).

Types. Eight medical entity types, taken from the MeSH 2017 tree's category letters rather than
invented here, so that every type has a published definition and every dictionary term a tree number
that justifies its type:

    Anatomy    A        (body regions, organs, tissues, cells, fluids)
    Disease    C, F03   (diseases; mental disorders)
    Symptom    C23.888  (Signs and Symptoms; not when the descriptor is also an infection,
                         a neoplasm or a congenital disorder: MeSH cross-lists syndromes there)
    Chemical   D        (chemicals and drugs)
    Procedure  E02-E04, E06  (therapeutics, anaesthesia, surgery, dentistry)
    Test       E01.370  (diagnostic techniques and procedures: lab tests, imaging, examinations)
    Organism   B        (bacteria, viruses, fungi, animals, ...)
    Gene       G05.360.340.024 (genes and gene components) + gene symbols named as such in text

A descriptor with tree numbers in several categories takes the first type of `priority` whose rule
it meets (e.g. Arthralgia, C05 and C23.888: Symptom; BRCA1 Protein, D12: Chemical).

Terms. MeSH writes descriptors inverted ("Diabetes Mellitus, Type 2"); a term gives its uninverted
form ("Type 2 Diabetes Mellitus"), the descriptor as written when it has no comma, and the other
number of the last word ("Mammary Glands" -> "mammary gland", "Lung" -> "lungs"). Terms shorter than `min_term_chars`, and the
`stop_terms` (MeSH descriptors that are ordinary words in text: "humans", "male", "face", ...) are
left out: they would label most sentences of the corpus. A gene symbol from "Genes, BRCA1" is kept
as a Gene term of its own.

Held-out terms. A seeded share of the terms (by a hash of the term, so the split does not depend on
the order of the file) is never used to label training text: the entities stage measures the trained
extractor's recall on those terms' occurrences, which a dictionary cannot find by construction. That
is the measurement of "generalises beyond dictionary strings".

Why MeSH: it is the one vocabulary here that covers all eight kinds (DOID has diseases only, HPO
phenotypes only, ICD-10-CM diagnoses only). Because it helps build the entity table, the entity_map
stage reports MeSH as a building vocabulary in its coverage table, not as independent evidence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import Counter, defaultdict
from pathlib import Path

ENTITY_TYPES = ("Anatomy", "Disease", "Symptom", "Chemical", "Procedure", "Test", "Organism", "Gene")
# What the gold corpora call our types: BC5CDR and NCBI-disease annotate signs and symptoms as
# Disease, so a predicted Symptom is scored as a Disease against them.
GOLD_TYPE_OF = {"Symptom": "Disease"}


def _default_rules() -> dict[str, dict[str, list[str]]]:
    return {
        "Symptom": {"include": ["C23.888"], "exclude": ["C01", "C04", "C16"]},
        "Disease": {"include": ["C", "F03"], "exclude": []},
        "Gene": {"include": ["G05.360.340.024"], "exclude": []},
        "Organism": {"include": ["B"], "exclude": []},
        "Anatomy": {"include": ["A"], "exclude": []},
        "Chemical": {"include": ["D"], "exclude": []},
        "Test": {"include": ["E01.370"], "exclude": []},
        "Procedure": {"include": ["E02", "E03", "E04", "E06"], "exclude": []},
    }


_STOP_TERMS = [
    "humans", "human", "animals", "animal", "male", "female", "men", "women", "child", "infant", "adult",
    "face", "head", "back", "hand", "arm", "body", "cells", "cell", "tissues", "water", "air",
    "light", "sound", "pressure", "weight", "heat", "cold", "time", "rest", "sleep", "diet", "exercise",
    "lead", "gold", "silver", "tin", "salt", "sugar", "oil", "milk", "food", "fruit", "wine",
    "beer", "coffee", "tea", "eggs", "meat", "fish", "plants", "seeds", "bees", "cats", "dogs", "horses",
    "mice", "rats", "cattle", "sheep", "swine", "chickens", "therapy", "therapeutics", "diagnosis",
    "surgery", "drug", "drugs", "disease", "syndrome", "signs and symptoms", "symptom", "genes",
    "gene", "proteins", "protein", "vitamins", "hormones", "acids", "ions", "patients", "pregnancy",
    "orientation", "mass", "role", "aging", "death", "population", "family", "mothers",
    "fathers", "parents", "research", "methods", "standards", "risk", "health", "nutrition", "use",
    "control", "polymers", "solutions", "powders", "tablets", "capsules", "placebos",
]


@dataclasses.dataclass
class VocabularyParams:
    path: str = "vocab/mesh_2017_tree.txt"        # under data_root: Tree Number, Desc Ui, Term
    rules: dict[str, dict[str, list[str]]] = dataclasses.field(default_factory=_default_rules)
    priority: list[str] = dataclasses.field(default_factory=lambda: ["Symptom", "Disease", "Gene",
                                                                     "Organism", "Anatomy", "Chemical",
                                                                     "Test", "Procedure"])
    min_term_chars: int = 3
    stop_terms: list[str] = dataclasses.field(default_factory=lambda: list(_STOP_TERMS))
    heldout_term_fraction: float = 0.2            # terms never used to label training text

    def __post_init__(self):
        unknown = set(self.rules) - set(ENTITY_TYPES)
        if unknown:
            raise ValueError(f"vocabulary rules name unknown types {sorted(unknown)}; types: {ENTITY_TYPES}")
        if sorted(self.priority) != sorted(self.rules):
            raise ValueError("vocabulary priority must list every ruled type exactly once")
        if not 0.0 <= self.heldout_term_fraction < 1.0:
            raise ValueError("heldout_term_fraction must be in [0, 1)")


@dataclasses.dataclass
class TypedVocabulary:
    """term (casefolded surface) -> type, split into the terms that label text and the held-out ones."""
    terms: dict[str, str]
    heldout: dict[str, str]
    stats: dict

    def all_terms(self) -> dict[str, str]:
        return {**self.terms, **self.heldout}


def descriptor_type(tree_numbers: set[str], params: VocabularyParams) -> str | None:
    """The type of a MeSH descriptor with these tree numbers (first rule of `priority` it meets)."""
    for t in params.priority:
        rule = params.rules[t]
        if any(n.startswith(p) for n in tree_numbers for p in rule["include"]) and not any(
                n.startswith(p) for n in tree_numbers for p in rule.get("exclude", [])):
            return t
    return None


_PAREN = re.compile(r"\s*\([^)]*\)")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,11}$")


def _singular(word: str) -> str | None:
    low = word.lower()
    if len(low) > 4 and low.endswith("ies"):
        return word[:-3] + "y"
    if len(low) > 4 and low.endswith("s") and not low.endswith(("ss", "us", "is", "ics")):
        return word[:-1]
    return None


def term_surfaces(term: str) -> list[str]:
    """The text forms of one MeSH descriptor name (module docstring), casefolded, in a stable order."""
    base = _PAREN.sub("", term).strip()
    if not base:
        return []
    parts = [p.strip() for p in base.split(",") if p.strip()]
    forms = [" ".join([*reversed(parts[1:]), parts[0]]) if len(parts) > 1 else base]
    words = forms[0].split()
    if words:
        sing = _singular(words[-1])
        # the other number of the last word: "Mammary Glands" -> "mammary gland", "Lung" -> "lungs"
        other = sing if sing else (words[-1] + "s" if words[-1][-1:].isalpha()
                                   and words[-1][-1:].lower() not in "sxy" else None)
        if other:
            forms.append(" ".join([*words[:-1], other]))
    out: list[str] = []
    for f in forms:
        f = " ".join(f.split()).casefold()
        if f not in out:
            out.append(f)
    return out


def gene_symbol(term: str) -> str | None:
    """"Genes, BRCA1" -> "brca1"; None for generic gene descriptors ("Genes, Dominant")."""
    parts = [p.strip() for p in term.split(",")]
    if len(parts) == 2 and parts[0] == "Genes" and _SYMBOL.match(parts[1]) and (
            any(c.isdigit() for c in parts[1]) or parts[1].isupper()):
        return parts[1].casefold()
    return None


def _heldout(term: str, seed: int, fraction: float) -> bool:
    if fraction <= 0:
        return False
    h = hashlib.sha256(f"{seed}|{term}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2 ** 64 < fraction


def load_mesh_vocabulary(path: Path, params: VocabularyParams, seed: int) -> TypedVocabulary:
    """The typed MeSH dictionary (module docstring); FileNotFoundError / ValueError on a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MeSH tree file {path} does not exist")
    numbers: dict[str, set[str]] = defaultdict(set)
    with path.open(encoding="utf-8-sig") as f:
        header = f.readline().rstrip("\n").split("\t")
        if len(header) < 3:
            raise ValueError(f"{path}: expected a tab-separated header 'Tree Number, Desc Ui, Term'")
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 3 and cols[0] and cols[2]:
                numbers[cols[2]].add(cols[0])
    stop = {s.casefold() for s in params.stop_terms}
    typed: dict[str, str] = {}
    conflicts = 0
    skipped: Counter = Counter()
    for term in sorted(numbers):
        etype = descriptor_type(numbers[term], params)
        if etype is None:
            skipped["untyped_category"] += 1
            continue
        forms = term_surfaces(term)
        sym = gene_symbol(term) if etype == "Gene" else None
        if sym:
            forms.append(sym)
        for form in forms:
            if len(form) < params.min_term_chars:
                skipped["too_short"] += 1
                continue
            if form in stop:
                skipped["stop_term"] += 1
                continue
            prev = typed.get(form)
            if prev is not None and prev != etype:
                conflicts += 1       # two descriptors, one surface: the higher-priority type keeps it
                if params.priority.index(prev) <= params.priority.index(etype):
                    continue
            typed[form] = etype
    terms, heldout = {}, {}
    for form, etype in typed.items():
        (heldout if _heldout(form, seed, params.heldout_term_fraction) else terms)[form] = etype
    stats = {"descriptors": len(numbers), "terms": len(terms), "heldout_terms": len(heldout),
             "terms_by_type": dict(sorted(Counter(terms.values()).items())),
             "heldout_terms_by_type": dict(sorted(Counter(heldout.values()).items())),
             "surface_type_conflicts": conflicts, "skipped": dict(sorted(skipped.items()))}
    return TypedVocabulary(terms, heldout, stats)
