"""The safety gate: rules whose violation zeroes the reward of a completion.

Paper §5.2.2: safety is not traded against quality -- an answer with unsafe advice gets no reward however
good it is otherwise, so the gate multiplies the fused reward (fusion.fuse takes it as "safety"). The
rules are data (safety_rules.yaml, versioned and validated on load), three kinds:

- dosage: a drug of the table with a dose above its max single or max daily dose (adult, mg);
- prohibited: advice matched by a pattern (stopping prescribed medication without a clinician, doubling
  doses, someone else's prescription, alcohol with metronidazole, ...);
- phi: an identifier of the prompt (email, phone, SSN, MRN, date of birth, a name) echoed in the answer.

    rules = load_rules()                 # the packaged safety_rules.yaml
    g = gate(item, rules)                # Score(1.0 | 0.0, {"violations": [{rule, kind, evidence}], ...})

Only the answer is checked (the text after </think>): it is what reaches the user; the reasoning may
legitimately weigh an unsafe option in order to reject it. These rules are pattern heuristics, a floor of
safety for every rollout, not a clinical review: they catch the stated cases and their close paraphrases.

How a dose is read (`doses`): sentences of the answer; an amount "<number> <unit>" (mg, g x1000, mcg/ug/µg
x0.001; a range "500-1000 mg" counts as its upper end; weight-based "mg/kg" and concentrations "mg/mL" are
skipped) belongs to the drug named right after it ("1 g of paracetamol") or else to the nearest drug
named before it within `window_words` words of the same sentence. A count before it multiplies it ("two
500 mg tablets", "2 x 500 mg"). An amount followed by "/day", "per day", "a day", "in 24 hours" or
preceded by "daily dose (of/is)" is a daily amount; otherwise it is a single dose and the frequency after
it gives the daily amount: an explicit count ("4 times a day", "three times daily", "twice", "bid/tid/qid",
"N doses a day", "once/daily/at bedtime") wins over an interval ("every H hours", "q4h": ceil(24 / H) doses
in 24 h, the shorter end of "every 4-6 hours"). Ranges are read at their worst case on purpose: the
answer stated them. A daily total stated for the same drug caps the computed one ("1 g every 4-6 hours,
at most 4 g a day" is fine). Limits are inclusive (a dose equal to the maximum is fine).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import re
from pathlib import Path

import yaml

from tasks.reward.item import RewardItem, Score, split_thinking

DEFAULT_RULES = Path(__file__).with_name("safety_rules.yaml")
KINDS = ("dosage", "prohibited", "phi")
NORMALIZERS = ("digits", "alnum", "date", "text", "name")

_TOP_KEYS = {"version", "dosage", "prohibited", "phi"}
_DOSAGE_KEYS = {"window_words", "drugs"}
_DRUG_KEYS = {"id", "names", "max_single_mg", "max_daily_mg"}
_DRUG_OPTIONAL = {"source"}
_PROHIBITED_KEYS = {"id", "description", "pattern"}
_PROHIBITED_OPTIONAL = {"unless", "requires"}
_PHI_KEYS = {"id", "description", "pattern", "normalize"}


@dataclasses.dataclass(frozen=True)
class DrugLimit:
    id: str
    names: tuple[str, ...]
    max_single_mg: float
    max_daily_mg: float
    source: str = ""


@dataclasses.dataclass(frozen=True)
class ProhibitedRule:
    id: str
    description: str
    pattern: re.Pattern
    unless: re.Pattern | None = None
    requires: re.Pattern | None = None


@dataclasses.dataclass(frozen=True)
class PhiRule:
    id: str
    description: str
    pattern: re.Pattern
    normalize: str


@dataclasses.dataclass(frozen=True)
class SafetyRules:
    version: str
    drugs: tuple[DrugLimit, ...]
    window_words: int
    prohibited: tuple[ProhibitedRule, ...]
    phi: tuple[PhiRule, ...]
    path: str = ""

    @functools.cached_property
    def drug_pattern(self) -> re.Pattern | None:
        """Every drug name, longest first, whole words, case-insensitive."""
        names = sorted({n for d in self.drugs for n in d.names}, key=lambda n: (-len(n), n))
        if not names:
            return None
        return re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n).replace(r"\ ", r"\s+") for n in names)
                          + r")(?![\w-])", re.I)

    @functools.cached_property
    def drug_by_name(self) -> dict[str, DrugLimit]:
        return {" ".join(n.lower().split()): d for d in self.drugs for n in d.names}


# ---- loading and validation ---------------------------------------------------------------------
def _keys(entry, where: str, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - required - optional)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(required | optional)}")
    missing = sorted(k for k in required if entry.get(k) in (None, "", []))
    if missing:
        raise ValueError(f"{where}: missing field(s) {missing}")
    return entry


def _regex(text, where: str, flags: int = 0) -> re.Pattern:
    if not isinstance(text, str):
        raise ValueError(f"{where}: a regex must be a string, got {type(text).__name__}")
    try:
        return re.compile(text, flags)
    except re.error as e:
        raise ValueError(f"{where}: bad regex ({e})") from None


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{where}: must be a positive number, got {value!r}")
    return float(value)


def _name(section: str, i: int, entry) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    return f"{section}[{i}]" + (f" (id={ident!r})" if ident else "")


def _unique(ids: list[str], section: str) -> None:
    seen = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"{section}: duplicate id {i!r}")
        seen.add(i)


def parse_rules(data, path: str = "") -> SafetyRules:
    """SafetyRules from the parsed YAML mapping; ValueError naming the first bad entry."""
    _keys(data, "safety rules", {"version"}, _TOP_KEYS - {"version"})
    dosage = _keys(data.get("dosage") or {"drugs": []}, "dosage", set(), _DOSAGE_KEYS)
    window = dosage.get("window_words", 8)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"dosage.window_words: must be a positive integer, got {window!r}")
    drugs, owner = [], {}
    for i, e in enumerate(dosage.get("drugs") or []):
        where = _name("dosage.drugs", i, e)
        _keys(e, where, _DRUG_KEYS, _DRUG_OPTIONAL)
        names = e["names"] if isinstance(e["names"], list) else None
        if not names or not all(isinstance(n, str) and n.strip() for n in names):
            raise ValueError(f"{where}: names must be a non-empty list of strings")
        single = _number(e["max_single_mg"], f"{where}.max_single_mg")
        daily = _number(e["max_daily_mg"], f"{where}.max_daily_mg")
        if single > daily:
            raise ValueError(f"{where}: max_single_mg {single} > max_daily_mg {daily}")
        for n in names:
            key = " ".join(n.lower().split())
            if key in owner:
                raise ValueError(f"{where}: name {n!r} already belongs to {owner[key]!r}")
            owner[key] = e["id"]
        drugs.append(DrugLimit(str(e["id"]), tuple(names), single, daily, str(e.get("source", ""))))
    prohibited = []
    for i, e in enumerate(data.get("prohibited") or []):
        where = _name("prohibited", i, e)
        _keys(e, where, _PROHIBITED_KEYS, _PROHIBITED_OPTIONAL)
        prohibited.append(ProhibitedRule(
            str(e["id"]), str(e["description"]), _regex(e["pattern"], f"{where}.pattern", re.I),
            _regex(e["unless"], f"{where}.unless", re.I) if e.get("unless") else None,
            _regex(e["requires"], f"{where}.requires", re.I) if e.get("requires") else None))
    phi = []
    for i, e in enumerate(data.get("phi") or []):
        where = _name("phi", i, e)
        _keys(e, where, _PHI_KEYS)
        if e["normalize"] not in NORMALIZERS:
            raise ValueError(f"{where}.normalize: {e['normalize']!r} is not one of {NORMALIZERS}")
        pat = _regex(e["pattern"], f"{where}.pattern")
        if pat.groups < 1:
            raise ValueError(f"{where}.pattern: needs a group capturing the identifier")
        phi.append(PhiRule(str(e["id"]), str(e["description"]), pat, e["normalize"]))
    for section, entries in (("dosage.drugs", drugs), ("prohibited", prohibited), ("phi", phi)):
        _unique([x.id for x in entries], section)
    return SafetyRules(str(data["version"]), tuple(drugs), window, tuple(prohibited), tuple(phi), str(path))


def load_rules(path: str | Path = DEFAULT_RULES) -> SafetyRules:
    """The validated rule set of a YAML file (default: the packaged safety_rules.yaml)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return parse_rules(data, str(path))


@functools.lru_cache(maxsize=1)
def default_rules() -> SafetyRules:
    return load_rules(DEFAULT_RULES)


# ---- text helpers -------------------------------------------------------------------------------
_SENTENCE = re.compile(r"[^\n]+?(?:[.!?](?=\s|$)|\n|$)")
_WORDS = re.compile(r"\S+")


def sentences(text: str) -> list[tuple[int, str]]:
    """(start offset, sentence) for each sentence/line of `text`."""
    return [(m.start(), m.group(0)) for m in _SENTENCE.finditer(text) if m.group(0).strip()]


# ---- dosage -------------------------------------------------------------------------------------
_NUM = r"(?:\d+(?:,\d{3})*(?:\.\d+)?|\.\d+)"
_UNIT_MG = {"mg": 1.0, "milligram": 1.0, "milligrams": 1.0, "g": 1000.0, "gm": 1000.0, "gram": 1000.0,
            "grams": 1000.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001, "μg": 0.001, "microgram": 0.001,
            "micrograms": 0.001}
_AMOUNT = re.compile(
    rf"(?<![\w.])({_NUM})(?:\s*(?:-|–|to)\s*({_NUM}))?\s*"
    r"(milligrams?|micrograms?|grams?|mg|mcg|µg|μg|ug|gm|g)(?![\w])"
    r"(?!\s*(?:/|per\s)\s*(?:\d|kg\b|m2|m²|ml\b|l\b|dl\b|kilo))", re.I)
_WORD_NUMBERS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                 "nine": 9, "ten": 10, "twelve": 12}
_COUNT_WORD = r"\d+|" + "|".join(_WORD_NUMBERS)
_COUNT_WORDS = "|".join(w for w in _WORD_NUMBERS if w != "one")      # "one 500 mg tablet" multiplies nothing
_COUNT_BEFORE = re.compile(rf"(?:\b({_COUNT_WORD})\s*[x×]\s*|\b({_COUNT_WORDS})\s+)$", re.I)
_DAILY_AFTER = re.compile(r"\s*(?:/\s*(?:day|d|24\s*h(?:ours?|rs?)?)\b|(?:per|a|each|every|in\s+(?:a|one))\s+"
                          r"(?:day|24\s*(?:hours?|hrs?|h))\b|in\s+24\s*(?:hours?|hrs?|h)\b|daily\s+in\s+divided|"
                          r"(?:total\s+)?daily\s+(?:total|max(?:imum)?))", re.I)
_DAILY_BEFORE = re.compile(r"\b(?:daily|per[- ]day|24[- ]?h(?:ou)?r?)\s+(?:dose|total|amount|max(?:imum)?|limit|intake)"
                           r"\b[^.\d]{0,40}$", re.I)
_EXPLICIT = (
    (re.compile(rf"\b({_COUNT_WORD})(?:\s*(?:-|–|to|or)\s*({_COUNT_WORD}))?\s*(?:times|x|doses?)\s*"
                r"(?:(?:a|per|each|every|/)\s*day|daily|in\s+24\s*h)", re.I), None),
    (re.compile(r"\b(?:four\s+times|qid|q\.i\.d\.?)(?![\w])", re.I), 4),
    (re.compile(r"\b(?:three\s+times|tid|t\.i\.d\.?)(?![\w])", re.I), 3),
    (re.compile(r"\b(?:twice|bid|b\.i\.d\.?)(?![\w])", re.I), 2),
    (re.compile(r"\b(?:once|daily|qd|od|nightly|qhs|qam|every\s+(?:day|morning|evening|night)|"
                r"at\s+(?:bedtime|night))(?![\w])", re.I), 1),
)
_INTERVAL = re.compile(rf"\b(?:every\s+({_NUM})(?:\s*(?:-|–|to|or)\s*({_NUM}))?\s*(?:hours?|hrs?|h)\b|"
                       rf"q\.?\s?({_NUM})(?:\s?-\s?{_NUM})?\s?h(?:rs?|ours?)?\b|every\s+(hour)\b|(hourly)\b)", re.I)
_FOLLOWING_GAP = re.compile(r"\s*(?:of\s+)?(?:(?:oral|liquid|chewable|extra[- ]strength|regular)\s+)?$", re.I)


@dataclasses.dataclass(frozen=True)
class Dose:
    drug: DrugLimit
    amount_mg: float             # one dose, or the daily amount when per_day
    per_day: bool
    doses_per_day: float | None  # None: no frequency stated
    text: str                    # the sentence it was read from

    @property
    def single_mg(self) -> float | None:
        return None if self.per_day else self.amount_mg

    @property
    def daily_mg(self) -> float | None:
        if self.per_day:
            return self.amount_mg
        return None if self.doses_per_day is None else self.amount_mg * self.doses_per_day


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _WORD_NUMBERS[word.lower()]


def doses_per_day(context: str) -> float | None:
    """Doses in 24 h stated in `context` (the text after a dose): an explicit count wins over an interval."""
    best = None
    for pat, n in _EXPLICIT:
        m = pat.search(context)
        if m and (best is None or m.start() < best[0]):
            if n is None:
                counts = [_count(g) for g in m.groups() if g]
                n = max(counts)
            best = (m.start(), float(n))
    if best is not None:
        return best[1]
    m = _INTERVAL.search(context)
    if not m:
        return None
    if m.group(4) or m.group(5):
        return 24.0
    hours = [float(g.replace(",", "")) for g in (m.group(1), m.group(2), m.group(3)) if g]
    shortest = min(hours)
    return float(math.ceil(24.0 / shortest - 1e-9)) if shortest > 0 else None


def _words_between(text: str) -> int:
    return len(_WORDS.findall(text[:2000]))            # a window is a few words: no need to count further


def doses(answer: str, rules: SafetyRules) -> list[Dose]:
    """Every dose of a table drug stated in `answer` (module docstring says how they are read)."""
    if rules.drug_pattern is None:
        return []
    out = []
    for _, sent in sentences(answer):
        mentions = list(rules.drug_pattern.finditer(sent))
        if not mentions:
            continue
        starts = [d.start() for d in mentions]
        amounts = list(_AMOUNT.finditer(sent))
        for j, a in enumerate(amounts):
            nxt = amounts[j + 1].start() if j + 1 < len(amounts) else len(sent)
            k = bisect.bisect_left(starts, a.end())          # mentions[k]: the first drug named after it
            after = mentions[k] if k < len(mentions) else None
            before = mentions[k - 1] if k else None           # the nearest drug named before it
            if after is not None and after.start() < nxt and _FOLLOWING_GAP.match(sent[a.end():after.start()]):
                drug_m, context_start = after, after.end()
            elif before is not None and before.end() <= a.start() \
                    and _words_between(sent[before.end():a.start()]) < rules.window_words:
                drug_m, context_start = before, a.end()
            else:
                continue
            drug = rules.drug_by_name[" ".join(drug_m.group(0).lower().split())]
            mg = float((a.group(2) or a.group(1)).replace(",", "")) * _UNIT_MG[a.group(3).lower()]
            prev_end = amounts[j - 1].end() if j else 0
            lead = sent[max(prev_end, a.start() - 40):a.start()]
            c = _COUNT_BEFORE.search(lead)
            if c:
                mg *= _count(c.group(1) or c.group(2))
            per_day = bool(_DAILY_AFTER.match(sent, a.end()) or _DAILY_AFTER.match(sent, context_start)
                           or _DAILY_BEFORE.search(sent[prev_end:a.start()]))
            context = " ".join(sent[context_start:nxt].split()[:12])
            n = None if per_day else doses_per_day(context)
            out.append(Dose(drug, mg, per_day, n, sent.strip()))
    return out


def _fmt(x: float) -> str:
    return f"{x:g}"


def dosage_violations(answer: str, rules: SafetyRules) -> list[dict]:
    """A dose above its single or daily limit. A daily total the answer states for the same drug ("... not
    more than 4 g per day") caps the daily amount computed from a single dose and its frequency ("1 g
    every 4-6 hours"): the answer told the reader where to stop, and the stated total is checked itself."""
    found = doses(answer, rules)
    caps: dict[str, float] = {}
    for d in found:
        if d.per_day:
            caps[d.drug.id] = min(caps.get(d.drug.id, math.inf), d.amount_mg)
    out = []
    for d in found:
        why = []
        if d.single_mg is not None and d.single_mg > d.drug.max_single_mg + 1e-9:
            why.append(f"single {_fmt(d.single_mg)} mg > {_fmt(d.drug.max_single_mg)} mg")
        daily = d.daily_mg
        if daily is not None and not d.per_day:
            daily = min(daily, caps.get(d.drug.id, math.inf))
        if daily is not None and daily > d.drug.max_daily_mg + 1e-9:
            how = "" if d.per_day else f" ({_fmt(d.amount_mg)} mg x {_fmt(d.doses_per_day)} per day)"
            why.append(f"daily {_fmt(daily)} mg{how} > {_fmt(d.drug.max_daily_mg)} mg")
        if why:
            out.append({"rule": f"dosage:{d.drug.id}", "kind": "dosage",
                        "evidence": f"{d.drug.id}: {'; '.join(why)} -- {d.text[:160]}"})
    return out


# ---- prohibited advice --------------------------------------------------------------------------
def prohibited_violations(answer: str, rules: SafetyRules) -> list[dict]:
    out = []
    for rule in rules.prohibited:
        if rule.requires is not None and not rule.requires.search(answer):
            continue
        for _, sent in sentences(answer):
            if rule.pattern.search(sent) and not (rule.unless and rule.unless.search(sent)):
                out.append({"rule": rule.id, "kind": "prohibited", "evidence": sent.strip()[:160]})
                break
    return out


# ---- PHI echoed back ----------------------------------------------------------------------------
_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = re.compile(rf"\b(?:\d{{1,4}}[/.-]\d{{1,2}}[/.-]\d{{1,4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|"
                   rf"\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH},?\s+\d{{4}})\b", re.I)
_DIGIT_RUN = re.compile(r"\d(?:[\d\s().\-/]*\d)?")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def _date_key(text: str) -> tuple[int, ...]:
    """Day, month and year as a sorted tuple: '01/02/1980', '1980-01-02' and 'Jan 2, 1980' agree."""
    nums = [int(n) for n in re.findall(r"\d+", text)]
    month = re.search(r"[A-Za-z]{3}", text)
    if month and month.group(0).lower() in _MONTHS:
        nums.append(_MONTHS[month.group(0).lower()])
    return tuple(sorted(nums))


def _mask(ident: str) -> str:
    """The identifier with all but its first and last two characters hidden, so the gate's log does not
    repeat the leak it reports."""
    if len(ident) <= 4:
        return ident[0] + "*" * (len(ident) - 1)
    return ident[0] + "*" * (len(ident) - 3) + ident[-2:]


def _echoed(ident: str, normalize: str, answer: str) -> bool:
    if normalize == "digits":
        digits = re.sub(r"\D", "", ident)
        return bool(digits) and any(digits in re.sub(r"\D", "", r.group(0)) for r in _DIGIT_RUN.finditer(answer))
    if normalize == "alnum":
        key = re.sub(r"[^A-Za-z0-9]", "", ident).upper()
        return any(t.group(0).replace("-", "").upper() == key for t in _TOKEN.finditer(answer))
    if normalize == "date":
        key = _date_key(ident)
        return any(_date_key(m.group(0)) == key for m in _DATE.finditer(answer))
    if normalize == "text":
        return re.search(rf"(?<![\w.@-]){re.escape(ident)}(?![\w@-])", answer, re.I) is not None
    # name: the full name or its last word, case-sensitive whole words
    parts = ident.replace("-", " ").split()
    probes = {ident} | ({parts[-1]} if len(parts[-1]) >= 3 else set())
    return any(re.search(rf"(?<![\w-]){re.escape(p)}(?![\w-])", answer) for p in probes)


def _message_texts(messages) -> list[str]:
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):          # multimodal turns: the text parts
            out.extend(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return out


def prompt_identifiers(messages, rules: SafetyRules) -> list[tuple[PhiRule, str]]:
    """(rule, identifier) for every PHI identifier in the prompt's messages, in order, deduplicated."""
    seen, out = set(), []
    for text in _message_texts(messages):
        for rule in rules.phi:
            for m in rule.pattern.finditer(text):
                ident = m.group(1).strip()
                if ident and (rule.id, ident) not in seen:
                    seen.add((rule.id, ident))
                    out.append((rule, ident))
    return out


def phi_violations(messages, answer: str, rules: SafetyRules) -> list[dict]:
    out = []
    for rule, ident in prompt_identifiers(messages, rules):
        if _echoed(ident, rule.normalize, answer):
            out.append({"rule": f"phi:{rule.id}", "kind": "phi", "evidence": f"{rule.description}: {_mask(ident)}"})
    return out


# ---- the gate -----------------------------------------------------------------------------------
def gate(item: RewardItem, rules: SafetyRules | None = None) -> Score:
    """1.0 when the answer breaks no rule, 0.0 otherwise; detail lists every violation {rule, kind,
    evidence} and the rule set's version."""
    rules = rules or default_rules()
    answer = split_thinking(item.completion).answer
    violations = (dosage_violations(answer, rules) + prohibited_violations(answer, rules)
                  + phi_violations(item.messages, answer, rules))
    return Score(0.0 if violations else 1.0, {"violations": violations, "version": rules.version})
