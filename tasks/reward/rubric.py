"""Rubric rewards (paper §5.2.2): dynamic instance rubrics, static domain rubrics, and the rubric judge.

A rubric item is a dict

    {"id": "r1", "text": "Mentions metformin", "kind": "include", "terms": ["metformin"],
     "weight": 1.0, "origin": "dynamic"}

kind  include     met when the answer mentions any of `terms` (whole words, case-insensitive)
      exclude     met when the answer mentions none of `terms` (an unsafe or wrong statement)
      equivalent  credit for agreeing with the reference: token F1 between the answer's content words
                  and `terms` (the reference's content words; the gold answer when `terms` is empty),
                  credit = min(1, F1 / threshold)
origin dynamic    instance-specific (`dynamic_rubric`, or `item.rubric` from rl_data)
       static     domain rules shared by a task family (static_rubrics.yaml, `load_static_rubrics`)

Dynamic rubrics: the paper has an expert-analyst model read the system prompt, history and query and
write atomic, discriminative evaluation points for that instance. `dynamic_rubric(..., client=...)` does
that through `tasks.llm.ask.ask_parsed` (strict JSON, one repair turn). Without a client, or when the
reply stays unusable, a local template derives points from the reference answer: every given KG entity
the reference names, every number with a unit it states, and one equivalence point over its content
words. The template is a heuristic: it only knows what the reference says, not what a clinician would
weigh. Both paths keep points discriminative: an include point the query itself already satisfies
(an entity named in the question) is dropped, and query words are left out of equivalence terms.

The judge: `judge(item)` is the weighted fraction of satisfied items over `item.rubric` and the static
items of the item's task. The local judge checks terms as described above (lexical, so a negated
mention -- "do not take warfarin" -- still counts as a mention: a known limit of term checks). With a
client, one request per completion asks for a JSON verdict per item id; an unusable reply falls back to
the local judge and the failure goes to the detail.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from eval.parsing import normalize_answer
from tasks.reward.item import TASKS, RewardItem, Score, split_thinking

KINDS = ("include", "exclude", "equivalent")
ORIGINS = ("dynamic", "static")
ITEM_KEYS = ("id", "text", "kind", "terms", "weight", "origin")
STATIC_TASKS = (*TASKS, "default")
STATIC_PATH = Path(__file__).with_name("static_rubrics.yaml")
EQUIVALENT_TEXT = "States the same conclusion as the reference answer"
MAX_TOKENS = 512

# Function words and filler that carry no medical content (token F1 and equivalence terms ignore them).
STOPWORDS = frozenset("""
a an the and or but if then than so as of at by for from in into on onto to with without within about over
under between through during before after above below up down out off again further once here there when where
why how all any both each few more most other some such no nor not only own same too very can will just should
would could may might must shall do does did doing done have has had having be is am are was were been being
i me my we our you your he him his she her it its they them their this that these those what which who whom
also however therefore thus hence usually often generally typically especially e g ie eg etc per
""".split())

_NUM_UNIT = re.compile(
    r"(?<![\w.])(\d+(?:\.\d+)?(?:\s*(?:-|–|to)\s*\d+(?:\.\d+)?)?)\s*"
    r"(%|(?:mg|mcg|µg|μg|g|kg|ml|l|dl|mmol|mol|meq|iu|units?|mmhg|bpm|cm|mm|hours?|hrs?|h|days?|weeks?|months?"
    r"|years?|minutes?|mins?|times)(?:/(?:kg|day|d|dl|l|ml|min|h|hr|m2|week))?)(?![\w/])",
    re.IGNORECASE)


# ---- items ----------------------------------------------------------------------------------------
def make_item(item_id: str, text: str, kind: str, terms: Iterable[str], weight: float = 1.0,
              origin: str = "dynamic") -> dict:
    """A validated rubric item."""
    return validate_item({"id": item_id, "text": text, "kind": kind, "terms": list(terms), "weight": weight,
                          "origin": origin}, item_id)


def validate_item(d: Mapping, where: str) -> dict:
    """A checked copy of a rubric item (`weight` defaults to 1.0, `origin` to "dynamic"); ValueError
    naming `where` on unknown keys, an unknown kind, or missing/empty fields."""
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: a rubric item is a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - set(ITEM_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}")
    out = {"id": d.get("id"), "text": d.get("text"), "kind": d.get("kind"), "terms": d.get("terms"),
           "weight": d.get("weight", 1.0), "origin": d.get("origin", "dynamic")}
    for key in ("id", "text"):
        if not isinstance(out[key], str) or not out[key].strip():
            raise ValueError(f"{where}: {key!r} must be a non-empty string")
    if out["kind"] not in KINDS:
        raise ValueError(f"{where}: unknown kind {out['kind']!r} (one of {KINDS})")
    if out["origin"] not in ORIGINS:
        raise ValueError(f"{where}: unknown origin {out['origin']!r} (one of {ORIGINS})")
    terms = out["terms"] if out["terms"] is not None else []
    if isinstance(terms, str) or not all(isinstance(t, str) and t.strip() for t in terms):
        raise ValueError(f"{where}: 'terms' must be a list of non-empty strings")
    if not terms and out["kind"] != "equivalent":
        raise ValueError(f"{where}: an {out['kind']} item needs terms")
    out["terms"] = [" ".join(t.split()) for t in terms]
    if isinstance(out["weight"], bool) or not isinstance(out["weight"], (int, float)) or out["weight"] <= 0:
        raise ValueError(f"{where}: 'weight' must be a positive number")
    out["weight"] = float(out["weight"])
    return out


# ---- text helpers -------------------------------------------------------------------------------
def has_term(text: str, term: str) -> bool:
    """`term` occurs in `text` as whole words, case-insensitive (any whitespace between its words)."""
    parts = term.split()
    if not parts:
        return False
    pat = r"\s+".join(re.escape(p) for p in parts)
    return re.search(rf"(?<![^\W_]){pat}(?![^\W_])", text, re.IGNORECASE) is not None


def content_words(text: str) -> list[str]:
    """Normalized words minus `STOPWORDS`, in order (repeats kept)."""
    return [w for w in normalize_answer(text).split() if w not in STOPWORDS]


def token_f1(pred: Sequence[str], gold: Sequence[str]) -> float:
    """SQuAD token F1 of two token lists (multiset overlap); 0 when either is empty."""
    common = sum((Counter(pred) & Counter(gold)).values())
    if not common:
        return 0.0
    p, r = common / len(pred), common / len(gold)
    return 2 * p * r / (p + r)


def _unique(xs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(xs))


def variants(entity: str) -> list[str]:
    """Simple surface variants of an entity name: itself, hyphens as spaces, singular <-> plural of the
    last word (a heuristic: "ACE inhibitors" -> "ACE inhibitor"; words ending in -ss/-us/-is/-es are
    left alone, so "diabetes" does not become "diabete")."""
    base = " ".join(entity.split())
    forms = [base, base.replace("-", " ")]
    out = []
    for f in _unique(forms):
        out.append(f)
        low = f.lower()
        if low.endswith(("ss", "us", "is", "es")):
            continue
        out.append(f[:-1] if low.endswith("s") and len(low) > 3 else f + "s")
    return _unique(out)


def quantities_with_units(text: str) -> list[tuple[str, list[str]]]:
    """(canonical "500 mg", its surface variants) for every number with a unit in `text`, in order."""
    out: dict[str, list[str]] = {}
    for m in _NUM_UNIT.finditer(text):
        num = re.sub(r"\s*(-|–|to)\s*", lambda r: "-" if r.group(1) != "to" else " to ", m.group(1))
        unit = m.group(2)
        canon = f"{num}{unit}" if unit == "%" else f"{num} {unit}"
        out.setdefault(canon, _unique([canon, f"{num}{unit}", f"{num} {unit}"]))
    return list(out.items())


# ---- dynamic rubrics ------------------------------------------------------------------------------
ANALYST_SYSTEM = ("You are an expert medical analyst who writes grading rubrics for answers to patients' and "
                  "clinicians' questions. You answer only with JSON.")
ANALYST_PROMPT = """Write at most {max_items} evaluation points that tell a good answer to the final user query \
apart from a poor one. Each point is atomic (checks one thing) and discriminative (an answer that merely repeats \
the query does not satisfy it).
Kinds: "include" = a good answer mentions one of the terms; "exclude" = a good answer mentions none of the terms \
(for example recommending a contraindicated drug); "equivalent" = a good answer reaches the same conclusion as the \
reference answer (terms: its key words). Terms are short phrases that would appear verbatim in an answer.

{context}

Output JSON only: {{"items": [{{"text": "...", "kind": "include", "terms": ["...", "..."]}}]}}"""
ANALYST_REPAIR = ('That reply could not be used ({problem}). Answer again with only the JSON object '
                  '{{"items": [{{"text": "...", "kind": "include" or "exclude" or "equivalent", '
                  '"terms": ["..."]}}]}}.')


def _split_messages(messages: Sequence[dict]) -> tuple[str, list[dict], str]:
    """(system prompt, history turns, final user query) of a chat."""
    msgs = list(messages)
    last = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=-1)
    query = msgs[last].get("content", "") if last >= 0 else ""
    before = msgs[:last] if last >= 0 else msgs
    system = before[0].get("content", "") if before and before[0].get("role") == "system" else ""
    history = before[1:] if system else before
    return str(system or ""), history, query if isinstance(query, str) else ""


def analyst_chat(messages: Sequence[dict], reference: str, entities: Sequence[str], max_items: int) -> list[dict]:
    system, history, query = _split_messages(messages)
    parts = []
    if system:
        parts.append(f"System prompt of the conversation:\n{system}")
    if history:
        parts.append("Conversation so far:\n" + "\n".join(f"{m.get('role')}: {m.get('content')}" for m in history))
    parts.append(f"Final user query:\n{query}")
    if reference.strip():
        parts.append(f"Reference answer:\n{reference}")
    if entities:
        parts.append("Key medical entities: " + ", ".join(entities))
    return [{"role": "system", "content": ANALYST_SYSTEM},
            {"role": "user", "content": ANALYST_PROMPT.format(max_items=max_items, context="\n\n".join(parts))}]


def parse_items(reply: str) -> list[tuple[str, str, list[str]]]:
    """(text, kind, terms) of every item of an analyst reply; ParseError (a ValueError) when the reply is
    not {"items": [...]} with a non-empty list of well-formed items."""
    from tasks.llm.parsing import ParseError, parse_json_like

    obj = parse_json_like(reply, expect=dict)
    items = obj.get("items")
    if not isinstance(items, list) or not items:
        raise ParseError("'items' missing or not a non-empty list", reply)
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict):
            raise ParseError(f"items[{i}] is not an object", reply)
        text, kind, terms = it.get("text"), it.get("kind"), it.get("terms")
        if not isinstance(text, str) or not text.strip():
            raise ParseError(f"items[{i}].text missing or empty", reply)
        if kind not in KINDS:
            raise ParseError(f"items[{i}].kind must be one of {list(KINDS)}", reply)
        if not isinstance(terms, list) or not terms or not all(isinstance(t, str) and t.strip() for t in terms):
            raise ParseError(f"items[{i}].terms must be a non-empty list of strings", reply)
        out.append((" ".join(text.split()), kind, _unique(" ".join(t.split()) for t in terms)))
    return out


def _discriminative(points: list[tuple[str, str, list[str]]], query: str) -> list[tuple[str, str, list[str]]]:
    """Drop include points the query already satisfies; strip query words from equivalence terms."""
    qwords = set(content_words(query))
    out = []
    for text, kind, terms in points:
        if kind == "include" and any(has_term(query, t) for t in terms):
            continue
        if kind == "equivalent":
            terms = [t for t in terms if not set(content_words(t)) <= qwords]
            if not terms:
                continue
        out.append((text, kind, terms))
    return out


def _numbered(points: list[tuple[str, str, list[str]]]) -> list[dict]:
    return [make_item(f"r{i}", text, kind, terms) for i, (text, kind, terms) in enumerate(points, 1)]


def local_points(reference: str, entities: Sequence[str]) -> list[tuple[str, str, list[str]]]:
    """The template's points from the reference: entities it names, quantities it states, equivalence."""
    points, seen = [], set()
    for e in entities:
        forms = variants(e)
        key = normalize_answer(forms[0])
        if key and key not in seen and any(has_term(reference, f) for f in forms):
            seen.add(key)
            points.append((f"Mentions {forms[0]}", "include", forms))
    for canon, forms in quantities_with_units(reference):
        points.append((f"States {canon}", "include", forms))
    words = _unique(content_words(reference))
    if words:
        points.append((EQUIVALENT_TEXT, "equivalent", words))
    return points


def _cap(points: list[tuple[str, str, list[str]]], max_items: int) -> list[tuple[str, str, list[str]]]:
    """At most `max_items`, the equivalence point kept (it is the one point about the whole answer)."""
    if len(points) <= max_items:
        return points
    eq = [p for p in points if p[1] == "equivalent"][:1]
    rest = [p for p in points if p not in eq][:max_items - len(eq)]
    return [p for p in points if p in rest or p in eq]


def dynamic_rubric(messages: Sequence[dict], reference: str, *, entities: Sequence[str] = (), client=None,
                   max_items: int = 6, **params: Any) -> tuple[list[dict], dict | None]:
    """(instance rubric items r1.., failure or None). With a client the analyst model writes them
    (`params` go to the request); without one, or when its reply stays unusable after the repair turn,
    the local template does, and the failure ({kind, detail, raw, ...}) is returned."""
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    _, _, query = _split_messages(messages)
    failure = None
    if client is not None:
        from tasks.llm.ask import ask_parsed

        chat = analyst_chat(messages, reference, entities, max_items)
        ans = ask_parsed(client, [chat], parse_items, ANALYST_REPAIR, **{"max_tokens": MAX_TOKENS, **params})[0]
        if ans.ok:
            points = _discriminative(ans.value, query)[:max_items]
            if points:
                return _numbered(points), None
            failure = {"kind": "not_discriminative", "detail": "every point is satisfied by the query itself",
                       "raw": json.dumps(ans.value)[:2000]}
        else:
            failure = ans.failure
    return _numbered(_cap(_discriminative(local_points(reference, entities), query), max_items)), failure


# ---- static rubrics -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StaticRubrics:
    version: int
    by_task: Mapping[str, tuple[dict, ...]]

    def for_task(self, task: str) -> list[dict]:
        """The task's static items (copies); the "default" entry for a task the file does not list."""
        items = self.by_task.get(task, self.by_task.get("default", ()))
        return [dict(it, terms=list(it["terms"])) for it in items]


def load_static_rubrics(path: Path | str = STATIC_PATH) -> StaticRubrics:
    """The versioned static rubric file, validated: ValueError naming the entry on unknown keys,
    tasks or kinds, missing fields, or a duplicate id."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the static rubric file is a mapping with 'version' and 'rubrics'")
    # keys starting with "_" only hold YAML anchors (shared term lists) and are not read
    unknown = sorted(k for k in set(data) - {"version", "rubrics"} if not str(k).startswith("_"))
    if unknown:
        raise ValueError(f"{path}: unknown top-level key(s) {unknown}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: 'version' must be a positive integer, got {version!r}")
    rubrics = data.get("rubrics")
    if not isinstance(rubrics, dict) or not rubrics:
        raise ValueError(f"{path}: 'rubrics' must be a non-empty mapping task -> list of items")
    by_task: dict[str, tuple[dict, ...]] = {}
    ids: dict[str, str] = {}
    for task, entries in rubrics.items():
        if task not in STATIC_TASKS:
            raise ValueError(f"{path}: rubrics.{task}: unknown task (one of {STATIC_TASKS})")
        if not isinstance(entries, list):
            raise ValueError(f"{path}: rubrics.{task} must be a list of items")
        items = []
        for i, entry in enumerate(entries):
            name = entry.get("id") if isinstance(entry, dict) else None
            where = f"{path}: rubrics.{task}[{i}]" + (f" ({name})" if name else "")
            if isinstance(entry, dict) and entry.get("origin", "static") != "static":
                raise ValueError(f"{where}: a static item has origin 'static'")
            item = validate_item({**entry, "origin": "static"} if isinstance(entry, dict) else entry, where)
            if item["id"] in ids:
                raise ValueError(f"{where}: duplicate id {item['id']!r} (also in rubrics.{ids[item['id']]})")
            ids[item["id"]] = task
            items.append(item)
        by_task[task] = tuple(items)
    return StaticRubrics(version, by_task)


# ---- the judge -----------------------------------------------------------------------------------
JUDGE_SYSTEM = "You are a strict medical grader. You answer only with JSON."
JUDGE_PROMPT = """Decide for each criterion whether the answer meets it.

Question:
{query}
{reference}
Answer to grade:
{answer}

Criteria:
{criteria}

Output JSON only, one verdict per criterion id: {{"verdicts": [{{"id": "...", "met": true}}]}}"""
JUDGE_REPAIR = ('That reply could not be used ({problem}). Answer again with only the JSON object '
                '{{"verdicts": [{{"id": "...", "met": true or false}}]}} with exactly one verdict per criterion id.')


def _criterion(it: dict) -> str:
    terms = ", ".join(f'"{t}"' for t in it["terms"][:12])
    if it["kind"] == "include":
        how = f"met when the answer mentions any of: {terms}"
    elif it["kind"] == "exclude":
        how = f"met when the answer says none of: {terms}"
    else:
        how = "met when the answer reaches the same conclusion as the reference answer"
    return f"- id {it['id']} ({it['kind']}): {it['text']}; {how}"


def judge_chat(item: RewardItem, items: Sequence[dict], answer: str) -> list[dict]:
    ref = item.answer.strip()
    reference = f"\nReference answer:\n{ref}\n" if ref and any(it["kind"] == "equivalent" for it in items) else ""
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_PROMPT.format(query=item.query, reference=reference, answer=answer,
                                                            criteria="\n".join(_criterion(it) for it in items))}]


def verdict_parser(ids: Sequence[str]):
    """A parser of {"verdicts": [{"id", "met"}]} that requires exactly one boolean verdict per id."""
    from tasks.llm.parsing import ParseError, parse_json_like

    def parse(reply: str) -> dict[str, bool]:
        obj = parse_json_like(reply, expect=dict)
        verdicts = obj.get("verdicts")
        if not isinstance(verdicts, list):
            raise ParseError("'verdicts' missing or not a list", reply)
        out: dict[str, bool] = {}
        for i, v in enumerate(verdicts):
            if not isinstance(v, dict) or not isinstance(v.get("id"), str) or not isinstance(v.get("met"), bool):
                raise ParseError(f"verdicts[{i}] is not {{'id': str, 'met': bool}}", reply)
            if v["id"] not in ids:
                raise ParseError(f"verdicts[{i}] names unknown id {v['id']!r}", reply)
            if out.get(v["id"], v["met"]) != v["met"]:
                raise ParseError(f"contradictory verdicts for id {v['id']!r}", reply)
            out[v["id"]] = v["met"]
        missing = [i for i in ids if i not in out]
        if missing:
            raise ParseError(f"no verdict for id(s) {missing}", reply)
        return out

    return parse


def local_verdict(it: dict, answer: str, gold: str, query: str, threshold: float) -> dict | None:
    """{id, met, credit, origin, ...} of one item by term checks; None when an equivalence item has
    nothing to compare with (no terms, no gold)."""
    v: dict[str, Any] = {"id": it["id"], "origin": it["origin"]}
    if it["kind"] in ("include", "exclude"):
        hits = [t for t in it["terms"] if has_term(answer, t)]
        met = bool(hits) if it["kind"] == "include" else not hits
        return {**v, "met": met, "credit": float(met), "hits": hits}
    target = it["terms"] or content_words(gold)
    if not target:
        return None
    qwords = set(content_words(query))        # restating the question is not agreement with the reference
    t_words = _unique(w for t in target for w in content_words(t) if w not in qwords)
    a_words = _unique(w for w in content_words(answer) if w not in qwords)
    f1 = token_f1(a_words, t_words)
    credit = min(1.0, f1 / threshold) if threshold > 0 else float(f1 > 0)
    return {**v, "met": f1 >= threshold, "credit": credit, "f1": f1}


def rubric_items(item: RewardItem, static: StaticRubrics | None = None) -> list[dict]:
    """`item.rubric` (validated) followed by the static items of the item's task; ValueError on a
    duplicate id (verdicts are keyed by id)."""
    items = [validate_item(r, f"{item.prompt_id}: rubric[{i}]") for i, r in enumerate(item.rubric)]
    if static is not None:
        items += static.for_task(item.task)
    seen: set[str] = set()
    for it in items:
        if it["id"] in seen:
            raise ValueError(f"{item.prompt_id}: duplicate rubric id {it['id']!r}")
        seen.add(it["id"])
    return items


def judge(item: RewardItem, *, static: StaticRubrics | None = None, client=None,
          equivalence_threshold: float = 0.5, **params: Any) -> Score:
    """The rubric reward: weighted fraction of satisfied items over `item.rubric` and the static items
    of the item's task (`static=None`: none). None when there are no items; 0.0 when the completion has
    no answer. With a client the items are judged by one LLM request (`params` go to it); an unusable
    reply falls back to the local term checks, the failure in `detail["failure"]`."""
    items = rubric_items(item, static)
    if not items:
        return Score(None, {"reason": "no_rubric"})
    split = split_thinking(item.completion)
    answer = split.answer if split.closed else ""
    if not answer:
        return Score(0.0, {"reason": "no_answer" if not split.closed else "empty_answer", "n_items": len(items)})
    failure = None
    if client is not None:
        from tasks.llm.ask import ask_parsed

        ids = [it["id"] for it in items]
        ans = ask_parsed(client, [judge_chat(item, items, answer)], verdict_parser(ids), JUDGE_REPAIR,
                         **{"max_tokens": MAX_TOKENS, **params})[0]
        if ans.ok:
            verdicts = [{"id": it["id"], "met": ans.value[it["id"]], "credit": float(ans.value[it["id"]]),
                         "origin": it["origin"]} for it in items]
            return _weighted(items, verdicts, {"judge": "llm", "repaired": ans.repaired})
        failure = ans.failure
    verdicts = [local_verdict(it, answer, item.answer, item.query, equivalence_threshold) for it in items]
    return _weighted(items, verdicts, {"judge": "local", "failure": failure})


def _weighted(items: Sequence[dict], verdicts: Sequence[dict | None], detail: dict) -> Score:
    """Credit comes from the include and equivalent items only; exclude items are guards: an answer
    that says nothing earns nothing by avoiding what it must not say. A violated exclude item is
    listed with its weight (`violation_weight`), which shaping and the pass gate act on."""
    graded = [(it, {**v, "kind": it["kind"]}) for it, v in zip(items, verdicts) if v is not None]
    ungradable = [it["id"] for it, v in zip(items, verdicts) if v is None]
    if not graded:
        return Score(None, {**detail, "reason": "no_gradable_item", "ungradable": ungradable})
    violated = [(it["id"], it["weight"]) for it, v in graded if it["kind"] == "exclude" and not v["met"]]
    out = {**detail, "verdicts": [v for _, v in graded], "ungradable": ungradable,
           "violated": [i for i, _ in violated], "violation_weight": sum(w for _, w in violated)}
    positive = [(it, v) for it, v in graded if it["kind"] != "exclude"]
    if not positive:
        return Score(None, {**out, "reason": "no_positive_item"})
    total = sum(it["weight"] for it, _ in positive)
    value = sum(it["weight"] * v["credit"] for it, v in positive) / total
    return Score(min(1.0, max(0.0, value)), out)
