"""Reverse structured CoT (paper §4.1.1, "Structured CoT"): given a question, its gold answer and the
evidence for it, write the chain a clinician would think through -- Understanding, Visual Observation
(image tasks, anchored on the image's caption) or Knowledge Recall (text tasks, from evidence facts),
Reasoning, Conclusion -- without hindsight, then score it on the paper's six quality dimensions and drop
what falls below a threshold.

    captions = load_captions(root)                                         # visual_cot.load_captions
    items = load_kg_items(root, params)[0] + load_vqa_rad_items(root, data_root, captions, params)[0] \
        + load_report_items(root, params)[0]
    out = reverse_cot(items, LocalCoTWriter(), LocalCoTJudge(params), params, root=root)
    out.kept[0]["meta"]["qc"]      # {"hindsight_free": 1.0, "logical_soundness": 0.92, ...}

Why reverse: forward sampling diverges on open-ended tasks (diagnosis, report writing); starting from the
known answer and its evidence makes the chain verifiable. Without hindsight: the gold answer picks the
evidence and checks the result, and is stated only in the Conclusion -- before it, the answer may appear
only inside recalled / observed evidence, never as an assertion.

Writers (`CoTWriter.write(items) -> list[Draft | failure]`):
- `LocalCoTWriter` is a TEMPLATE ASSEMBLY, not a model: it fills fixed sentence patterns with the
  question, the evidence (KG provenance sentences; caption sentences with the asked question's own
  annotation removed; structured image attributes) and the gold answer. The only derivation it does is
  for image yes/no and "X or Y" questions, where visual_cot's rule reasoner reads the answer off the
  observation (gold never an input) and the item is dropped when that answer is not the gold. Its value
  is a structurally valid, evidence-grounded chain that the QC can measure; its prose is uniform.
- `LLMCoTWriter`: the paper's expert role-play prompt asking for the four stages as JSON.

QC (`CoTJudge.score(items, drafts) -> list[dict | failure]`), each dimension in [0, 1]:
- `LocalCoTJudge`, by code (`local_qc`; each check's docstring says what it measures and cannot);
- `LLMCoTJudge`: the paper's LLM judge, JSON with the six scores.
Scores are kept in meta.qc; a draft with any score below its threshold is rejected at gate "qc" with the
first failing dimension as the reason. Writer failures are rejected at gate "writer", judge failures at
gate "judge". Family "reverse_cot"; phase 1 for text, 3 for image items.

Inputs (loaders, bounded and seeded):
- `load_kg_items`: CPT atomic-QA samples (data/cpt_data/samples, task atomic_qa, meta.edge_id) joined
  to their KG edge (data/kg/edges.jsonl, streamed for the needed ids only); the evidence is the edge's
  provenance sentences; the gold is the edge's other entity (the one the question does not name).
- `load_vqa_rad_items`: VQA-RAD train questions on images no test question uses (visual_cot.vqa_rad_train),
  anchored on the image's caption without the asked question's own annotation.
- `load_report_items`: report writing for captioned images: the gold is the (unrefined) caption, the
  observation evidence is the image's structured attributes (modality, view, region, labelled finding,
  technique, annotations) the caption was rendered from -- anchoring on the caption itself would be
  copying the answer; the refined caption adds background knowledge the attributes do not support.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from eval.parsing import normalize_answer, parse_choice, parse_label
from tasks.common.io import file_sha256
from tasks.mid_synthesis.experts import LETTERS
from tasks.mid_synthesis.samples import GateOutcome, image_part, mid_sample, text_part
from tasks.mid_synthesis.verify import (
    ANSWER_MARKER,
    ThinkingCase,
    ThinkingParams,
    gold_letter,
    hindsight_phrases,
    option_map,
    sentences,
    states_same,
    verify_outcome,
)
from tasks.mid_synthesis.visual_cot import (
    STOPWORDS,
    CaptionRecord,
    PerceptionItem,
    answer_kind_of,
    balanced_sample,
    content_words,
    derive_answer,
    load_captions,
    relevant_sentences,
    stem,
    vqa_rad_train,
)

STAGES = ("understanding", "observation", "reasoning", "conclusion")
DIMENSIONS = ("hindsight_free", "logical_soundness", "instruction_following", "answer_consistency",
              "authentic_thinking", "global_consistency")
REPORT_PROMPT = "Describe this image as a senior radiologist would in a report."
RELATION_PHRASES = {"treated_by": "is treated with", "caused_by": "is caused by", "has_symptom": "has the symptom",
                    "has_risk_factor": "has the risk factor", "diagnosed_by": "is diagnosed by",
                    "located_in": "affects", "prevented_by": "is prevented by",
                    "has_complication": "has the complication", "associated_with": "is associated with"}
# words a chain uses to connect evidence (not content a chain could invent)
_CONNECTIVE_WORDS = """question asks ask asked answer therefore because since so thus hence which means statement
recalled recall observation observed image shows show states stated fits fit link links linked relation entity
role together appears appear named names name consistent supports support follows follow report opens open
finding findings impression region modality view goes under state must limits limit typical appearance
expresses express one needed needs kind candidate looking reads read known evidence part first then fill fills
settles settle side other holds hold between about closes close offers offer matches match""".split()
CONNECTIVES = frozenset(w for x in _CONNECTIVE_WORDS for w in (x, stem(x)))
_INFERENTIAL = re.compile(r"(?i)\b(?:because|therefore|so|thus|hence|since|which means|indicates?|suggests?|"
                          r"implies|consistent with|follows)\b")


# ---- items ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Evidence:
    text: str
    source: str                          # kg-edge:<id> / <doc id> / caption:<sha> / attrs:<key>


@dataclasses.dataclass(frozen=True)
class CoTItem:
    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    answer_kind: str
    modality: str                        # text | image
    evidence: tuple[Evidence, ...]
    source_ids: tuple[str, ...]
    images: tuple[str, ...] = ()
    focus: str = ""                      # the entity the question names (text items)
    relation: str = ""                   # the KG relation (text items)
    task: str = ""                       # kg_qa | vqa | report
    anchor: str = ""                     # the caption / attribute text the observation is anchored on


@dataclasses.dataclass
class ReverseCoTParams:
    n_text: int = 200                    # KG items per run
    n_vqa: int = 100                     # VQA-RAD train items per run
    n_report: int = 100                  # report items per run
    seed: int = 0
    max_evidence: int = 3                # provenance sentences per KG item
    require_sentence: bool = True        # a KG edge with no provenance sentence (e.g. a MeSH-only CID pair)
    #                                      gives nothing to recall but the answer itself: skip it
    max_evidence_chars: int = 400        # longer provenance sentences are bullet lists, not statements
    max_evidence_bullets: int = 1        # "- Surgery - Genetic Counseling - Palliative Care": a resource list
    #                                      co-mentions entities without stating a relation; not evidence
    max_stage_words: int = 250
    max_conclusion_words: int = 80
    copy_span_tokens: int = 12           # hindsight: an open gold's run of this many tokens before the conclusion
    grounded_overlap: float = 0.5        # a sentence naming the gold is grounded when this share of its
    #                                      content words is in one evidence text
    # hindsight_free 0.5: a hard violation scores 0; otherwise at least half of the sentences naming the gold
    # before the conclusion must be grounded (word overlap misses paraphrase, so not all of them)
    thresholds: dict = dataclasses.field(default_factory=lambda: {
        "hindsight_free": 0.5, "logical_soundness": 0.7, "instruction_following": 1.0,
        "answer_consistency": 1.0, "authentic_thinking": 0.66, "global_consistency": 1.0})
    llm_max_tokens: int = 700


def _rng_order(n: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


def _strip_bullet(name: str) -> str:
    return re.sub(r"^[\s\-*•]+", "", name).strip()


def _span_in(text: str, name: str) -> str | None:
    """`name` as written in `text` (case-insensitive, on word boundaries), else None."""
    m = re.search(rf"(?i)(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text)
    return m.group(0) if m else None


def load_kg_items(root: str | Path, params: ReverseCoTParams | None = None,
                  samples_glob: str = "data/cpt_data/samples/part-*.jsonl",
                  edges_path: str = "data/kg/edges.jsonl") -> tuple[list[CoTItem], dict]:
    """Up to n_text KG atomic-QA items with their provenance evidence (module docstring), and skip counts."""
    p, root = params or ReverseCoTParams(), Path(root)
    qa = []
    for part in sorted(root.glob(samples_glob)):
        with open(part, encoding="utf-8") as f:
            for line in f:
                if '"atomic_qa"' in line:
                    s = json.loads(line)
                    if s.get("task") == "atomic_qa" and isinstance(s["meta"].get("edge_id"), int):
                        qa.append(s)
    order = _rng_order(len(qa), p.seed)
    # Candidates beyond n_text absorb the skips; 4x bounds the edge scan's memory.
    cands = [qa[i] for i in order[: 4 * p.n_text]]
    want = {s["meta"]["edge_id"] for s in cands}
    edges = {}
    id_re = re.compile(r'"id":\s*(\d+),')
    with open(root / edges_path, encoding="utf-8") as f:
        for line in f:
            m = id_re.search(line[:600])
            if m and int(m.group(1)) in want:
                e = json.loads(line)
                if e["id"] in want:
                    edges[e["id"]] = e
    items, skipped = [], Counter()
    for s in cands:
        if len(items) >= p.n_text:
            break
        e = edges.get(s["meta"]["edge_id"])
        if e is None:
            skipped["edge_missing"] += 1
            continue
        question, said = s["messages"][0]["content"], s["messages"][-1]["content"]
        head, tail = _strip_bullet(e["head"]), _strip_bullet(e["tail"])
        in_q = [n for n in (head, tail) if _span_in(question, n)]
        if len(in_q) != 1:
            skipped["focus_ambiguous"] += 1
            continue
        focus = in_q[0]
        gold_name = tail if focus == head else head
        gold = _span_in(said, gold_name) or gold_name
        sents = [x for x in e["provenance"].get("sentences", []) if len(x.get("text", "")) <= p.max_evidence_chars
                 and len(re.findall(r"(?:^|\s)-\s", x.get("text", ""))) <= p.max_evidence_bullets]
        sents.sort(key=lambda x: (not (_span_in(x["text"], head) and _span_in(x["text"], tail)), len(x["text"])))
        evidence = tuple(Evidence(x["text"].strip(), x["doc_id"]) for x in sents[: p.max_evidence])
        if p.require_sentence and not evidence:
            skipped["no_provenance_sentence"] += 1
            continue
        items.append(CoTItem(f"kg-edge-{e['id']}", question, (), gold, "fill", "text", evidence,
                             tuple(s["source_ids"]), focus=focus, relation=e["relation"], task="kg_qa"))
    return items, {"pool": len(qa), "candidates": len(cands), "items": len(items), "skipped": dict(sorted(skipped.items()))}


def load_vqa_rad_items(root: str | Path, data_root: str | Path, captions: dict[str, CaptionRecord],
                       params: ReverseCoTParams | None = None) -> tuple[list[CoTItem], dict]:
    """Up to n_vqa VQA-RAD train items (open and closed), balanced over answer type x question type."""
    p = params or ReverseCoTParams()
    rows, skipped = vqa_rad_train(root, data_root, captions)
    rows = balanced_sample(rows, lambda r: (r["answer_type"], r["question_type"]), p.n_vqa, p.seed)
    items = [CoTItem(f"vqa_rad-train-{r['qid']}", r["question"], (), r["answer"], answer_kind_of(r["answer"]),
                     "image", tuple(Evidence(s, f"caption:{r['sha256']}" if r["anchor_kind"] == "caption"
                                             else "vqa_rad:image_organ") for s in sentences(r["anchor"])),
                     tuple(r["source_ids"]), (r["image"],), task="vqa", anchor=r["anchor"]) for r in rows]
    return items, {"items": len(items), "skipped": dict(sorted(skipped.items()))}


def attribute_facts(attrs: dict) -> list[Evidence]:
    """The structured attributes a caption was rendered from, one observation each."""
    out = []
    for key, label in (("modality", "Modality"), ("view", "View"), ("anatomy", "Region"),
                       ("finding", "Labelled finding")):
        if attrs.get(key):
            out.append(Evidence(f"{label}: {attrs[key]}.", f"attrs:{key}"))
    tech = attrs.get("technical") or {}
    if tech.get("source_resolution") == "low":
        out.append(Evidence(f"Resolution: {tech.get('width')} x {tech.get('height')} pixels, low.", "attrs:technical"))
    for k in ("SliceThickness", "KVP", "SeriesDescription", "Rows"):
        if tech.get(k) not in (None, ""):
            out.append(Evidence(f"{k}: {tech[k]}.", "attrs:technical"))
    for qa in attrs.get("qa", []):
        out.append(Evidence(f"Annotated: {qa['question'].strip()} -> {str(qa['answer']).strip()}.", "attrs:qa"))
    return out


def load_report_items(root: str | Path, params: ReverseCoTParams | None = None,
                      captions: dict[str, CaptionRecord] | None = None) -> tuple[list[CoTItem], dict]:
    """Up to n_report report-writing items (module docstring), balanced over source x finding."""
    p = params or ReverseCoTParams()
    caps = captions if captions is not None else load_captions(root, tasks=("caption",))
    recs = [c for c in caps.values() if c.task == "caption"]
    recs = balanced_sample(recs, lambda c: (str(c.attrs.get("source")), str(c.attrs.get("finding"))),
                           p.n_report, p.seed)
    items = [CoTItem(f"report-{c.sha256[:16]}", REPORT_PROMPT, (), c.text, "open", "image",
                     tuple(attribute_facts(c.attrs)), c.source_ids or (f"image:{c.sha256}",), (c.path,),
                     task="report", anchor=" ".join(e.text for e in attribute_facts(c.attrs)))
             for c in recs]
    return items, {"pool": len(caps), "items": len(items)}


# ---- drafts and writers -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Draft:
    stages: dict                         # understanding, observation, reasoning, conclusion -> text
    answer: str                          # the final answer (assistant content)


@dataclasses.dataclass(frozen=True)
class Written:
    draft: Draft | None = None
    failure: str | None = None


class CoTWriter(Protocol):
    name: str

    def write(self, items: Sequence[CoTItem]) -> list[Written]: ...


def observation_label(item: CoTItem) -> str:
    return "Visual Observation" if item.modality == "image" else "Knowledge Recall"


def render(item: CoTItem, draft: Draft) -> str:
    """The reasoning_content of a kept sample: the four stages under their names."""
    names = ("Understanding", observation_label(item), "Reasoning", "Conclusion")
    return "\n\n".join(f"{n}: {' '.join(draft.stages[k].split())}" for n, k in zip(names, STAGES))


def final_answer(item: CoTItem, answer: str) -> str:
    if item.answer_kind == "judgement":
        return answer.strip().rstrip(".").capitalize() + "."
    if item.answer_kind == "choice":
        letter = gold_letter(answer, item.options)
        return f"{letter}. {item.options[LETTERS.index(letter)]}" if letter else answer
    return answer.strip()


class LocalCoTWriter:
    """Template assembly (module docstring): fixed patterns filled with question, evidence and gold."""
    name = "local"

    def write(self, items: Sequence[CoTItem]) -> list[Written]:
        return [self._one(it) for it in items]

    def _one(self, it: CoTItem) -> Written:
        if it.task == "kg_qa":
            return self._kg(it)
        if it.task == "report":
            return self._report(it)
        return self._vqa(it)

    def _kg(self, it: CoTItem) -> Written:
        rel = RELATION_PHRASES.get(it.relation, "is related to")
        best = next((e for e in it.evidence if _span_in(e.text, it.answer) and _span_in(e.text, it.focus)), None)
        if best is None:
            return Written(failure="evidence_lacks_answer")
        understanding = (f"The question asks: {it.question} It names {it.focus} and asks for the entity on the other "
                         f"side of one relation with it.")
        observation = "What I recall about " + it.focus + ": " + " ".join(
            e.text if e.text.endswith((".", "!", "?")) else e.text + "." for e in it.evidence)
        reasoning = (f"The question needs what fills that relation for {it.focus}. The recalled statement "
                     f"\"{best.text.rstrip('.')}\" names {it.focus} together with {it.answer}, and it expresses that "
                     f"the relation '{rel}' holds between them. Because that statement fits the relation the question "
                     f"asks about, {it.answer} fills the role.")
        conclusion = f"Therefore, the answer is {it.answer}."
        return Written(Draft(dict(zip(STAGES, (understanding, observation, reasoning, conclusion))),
                             final_answer(it, it.answer)))

    def _vqa(self, it: CoTItem) -> Written:
        pit = PerceptionItem(it.id, it.question, it.options, it.answer, it.answer_kind, _qtype(it.question),
                             it.images, it.source_ids, it.anchor, "caption", "vqa_rad")
        obs_sents = relevant_sentences(pit, 3)
        if not obs_sents:
            return Written(failure="empty_anchor")
        observation = "Looking at the image: " + " ".join(obs_sents)
        kind = "yes/no" if it.answer_kind == "judgement" else "short-answer"
        understanding = f"The question asks about the image: {it.question} It is a {kind} question."
        derived = derive_answer(pit, " ".join(obs_sents))
        if derived["answer"] is not None:
            if not verify_outcome(derived["answer"], it.answer, it.answer_kind).ok:
                return Written(failure="derivation_disagrees_with_gold")
            reasoning = " ".join(derived["steps"]) + " So the observation settles the question."
        else:
            support = next((s for s in obs_sents if it.answer_kind == "fill"
                            and f" {normalize_answer(it.answer)} " in f" {normalize_answer(s)} "), None)
            if support is None:
                return Written(failure="no_supporting_observation")
            reasoning = (f"The observation that bears on the question is: \"{support.rstrip('.')}\". "
                         f"It names {it.answer}, which is what the question asks for, so that is the answer.")
        conclusion = f"Therefore, the answer is {final_answer(it, it.answer).rstrip('.')}."
        return Written(Draft(dict(zip(STAGES, (understanding, observation, reasoning, conclusion))),
                             final_answer(it, it.answer)))

    def _report(self, it: CoTItem) -> Written:
        facts = {e.source.split(":", 1)[1]: e.text for e in it.evidence if e.source.startswith("attrs:")}
        understanding = ("The task is to write a radiology report for this image: the modality and region first, then "
                         "the findings, then an impression.")
        observation = "Looking at the image: " + " ".join(e.text for e in it.evidence)
        steps = ["A report opens with the modality and region the observation gives."]
        if "finding" in facts:
            steps.append("The labelled finding goes under Findings with its typical appearance, and the impression "
                         "follows from it.")
        if "technical" in facts:
            steps.append("The technique observed must be stated, because it limits what the image can show.")
        if "qa" in facts:
            steps.append("Each annotated observation becomes a finding statement.")
        last = sentences(it.answer)[-1] if sentences(it.answer) else it.answer
        conclusion = f"Therefore, the report closes with: {last}"
        return Written(Draft(dict(zip(STAGES, (understanding, observation, " ".join(steps), conclusion))), it.answer))


def _qtype(question: str) -> str:
    from tasks.mid_synthesis.visual_cot import modality_class

    return "modality" if modality_class(question) else "presence"


WRITER_SYSTEM = ("You are a senior clinician thinking aloud. You reason from the question and the evidence in "
                 "front of you, as if you did not know the answer yet.")
WRITER_PROMPT = """Write the reasoning that leads to the given answer, in four stages:
1. understanding: what the question asks and what kind of answer it needs;
2. {obs_key}: {obs_desc};
3. reasoning: the steps from that {obs_name} to the answer;
4. conclusion: the answer, stated once, here and nowhere earlier.
Rules: do not mention that an answer, reference or key was given; do not state the answer before the conclusion
except where it appears in the evidence itself; use only the evidence below.

Question: {question}
{options}Evidence:
{evidence}
Answer (for you only; derive it, do not cite it): {answer}

Reply with one JSON object only:
{{"understanding": "...", "{obs_key}": "...", "reasoning": "...", "conclusion": "...", "answer": "..."}}"""
WRITER_REPAIR = ("Your reply could not be used ({problem}). Reply with the JSON object only, with the keys "
                 "understanding, {obs_key}, reasoning, conclusion, answer.")


def _obs_key(item: CoTItem) -> str:
    return "visual_observation" if item.modality == "image" else "knowledge_recall"


class LLMCoTWriter:
    name = "llm"

    def __init__(self, client, params: ReverseCoTParams | None = None):
        self.client, self.params = client, params or ReverseCoTParams()

    def write(self, items: Sequence[CoTItem]) -> list[Written]:
        from tasks.llm.ask import ask_parsed, json_object

        out: list[tuple[int, Written]] = []
        for key in ("knowledge_recall", "visual_observation"):        # one repair text per key
            idx = [i for i, it in enumerate(items) if _obs_key(it) == key]
            if not idx:
                continue
            chats = [[{"role": "system", "content": WRITER_SYSTEM},
                      {"role": "user", "content": WRITER_PROMPT.format(
                          obs_key=key, obs_name="observation" if key == "visual_observation" else "knowledge",
                          obs_desc=("what the image shows, from the description below" if key == "visual_observation"
                                    else "the medical knowledge the evidence below provides"),
                          question=items[i].question,
                          options="".join(f"{k}. {t}\n" for k, t in option_map(items[i].options).items()),
                          evidence="\n".join(f"- {e.text}" for e in items[i].evidence), answer=items[i].answer)}]
                     for i in idx]
            required = {k: str for k in ("understanding", key, "reasoning", "conclusion", "answer")}
            answers = ask_parsed(self.client, chats, lambda r, req=required: json_object(r, req),
                                 WRITER_REPAIR.replace("{obs_key}", key), max_tokens=self.params.llm_max_tokens)
            for i, a in zip(idx, answers):
                if not a.ok:
                    out.append((i, Written(failure=f"llm_{a.failure['kind']}")))
                    continue
                v = a.value
                stages = {"understanding": v["understanding"], "observation": v[key], "reasoning": v["reasoning"],
                          "conclusion": v["conclusion"]}
                out.append((i, Written(Draft(stages, final_answer(items[i], v["answer"])))))
        return [w for _, w in sorted(out, key=lambda x: x[0])]


# ---- quality check ----------------------------------------------------------------------------------
class CoTJudge(Protocol):
    name: str

    def score(self, items: Sequence[CoTItem], drafts: Sequence[Draft]) -> list[dict | str]: ...
    # a dict {dimension: score} or a failure reason


def _mentions(text: str, gold: str) -> bool:
    g = normalize_answer(gold)
    return bool(g) and f" {g} " in f" {normalize_answer(text)} "


def _grounded(sentence: str, item: CoTItem, p: ReverseCoTParams) -> bool:
    """A sentence naming the gold is grounded when it quotes an evidence text, or when what it says beyond
    the question, the gold and connecting words is (>= grounded_overlap) in one evidence text. A sentence of
    only connecting words ("... so X fills the role") draws the conclusion; it asserts no new fact."""
    words = content_words(sentence) - content_words(item.question) - content_words(item.answer) - CONNECTIVES
    if not words:
        return True
    return any(len(words & content_words(e.text)) / len(words) >= p.grounded_overlap for e in item.evidence) or \
        any(e.text.rstrip(".") in sentence for e in item.evidence)


def _longest_common_run(a: str, b: str) -> int:
    x, y = normalize_answer(a).split(), normalize_answer(b).split()
    best, prev = 0, [0] * (len(y) + 1)
    for i in range(1, len(x) + 1):
        cur = [0] * (len(y) + 1)
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def _answer_statements(text: str, item: CoTItem) -> list[str]:
    """What sentences of `text` that make an explicit answer statement say (letters / labels / phrases)."""
    out = []
    for s in sentences(text):
        if item.answer_kind == "choice":
            got = parse_choice(s, option_map(item.options))
            if got.ok and got.rule in ("answer_tag", "boxed", "answer_statement", "is_correct"):
                out.append(got.value)
        elif ANSWER_MARKER.search(s):
            out.append(parse_label(s).value if item.answer_kind == "judgement" else s)
    return out


def hindsight_free(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: (hard, any -> 0) a hindsight phrase anywhere; the gold in Understanding when the question
    does not contain it; an explicit answer statement before the Conclusion; an open gold copied (a run of
    copy_span_tokens tokens) before the Conclusion. Otherwise the share of pre-conclusion sentences naming a
    short gold that are grounded in the evidence (they recall / observe it, they do not assert it).
    Cannot see: evidence chosen *because* it supports the gold, or a chain steered to the answer in
    paraphrase -- selection bias leaves no trace in the text."""
    pre = " ".join(d.stages[k] for k in STAGES[:3])
    if hindsight_phrases(" ".join(d.stages.values())) or _answer_statements(pre, item):
        return 0.0
    if item.answer_kind == "open":
        return 0.0 if _longest_common_run(pre, item.answer) >= p.copy_span_tokens else 1.0
    if item.answer_kind in ("fill", "choice"):
        gold = item.answer
        if _mentions(d.stages["understanding"], gold) and not _mentions(item.question, gold) \
                and not any(_mentions(o, gold) for o in item.options):
            return 0.0
        naming = [s for k in STAGES[1:3] for s in sentences(d.stages[k]) if _mentions(s, gold)]
        if item.answer_kind == "fill" and naming:
            return sum(_grounded(s, item, p) for s in naming) / len(naming)
    return 1.0


def logical_soundness(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: the share of the Reasoning stage's content words that come from the question, the
    evidence, the observation stage, the gold or the connective vocabulary (a step that brings in
    unsupported content lowers it); 0 when a short (fill) answer never appears in the Reasoning stage (the
    conclusion would not follow from it). Cannot check that an inference is medically valid."""
    words = content_words(d.stages["reasoning"])
    if not words:
        return 0.0
    known = (content_words(item.question) | content_words(d.stages["observation"]) | content_words(item.answer)
             | {w for e in item.evidence for w in content_words(e.text)} | CONNECTIVES | STOPWORDS)
    known |= {w.lower() for w in known}
    coverage = sum(w in known or w.lower() in known for w in words) / len(words)
    if item.answer_kind == "fill" and not _mentions(d.stages["reasoning"], item.answer):
        return 0.0
    return coverage


def instruction_following(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: the four stages present and non-empty, each within max_stage_words, the conclusion within
    max_conclusion_words, a non-empty final answer. Cannot judge whether a stage does its job (that an
    "observation" observes) beyond these structural constraints."""
    checks = [all(str(d.stages.get(k, "")).strip() for k in STAGES),
              all(len(str(d.stages.get(k, "")).split()) <= p.max_stage_words for k in STAGES),
              len(str(d.stages.get("conclusion", "")).split()) <= p.max_conclusion_words,
              bool(d.answer.strip())]
    return sum(checks) / len(checks)


def answer_consistency(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: the final answer passes Outcome-Verify against the gold, and the Conclusion states that
    answer (same letter / label / phrase; for open answers, the conclusion's content words are drawn from the
    answer). Cannot tell a right answer reached for wrong reasons."""
    ok = verify_outcome(d.answer, item.answer, item.answer_kind, item.options).ok
    concl = d.stages["conclusion"]
    if item.answer_kind == "open":
        cw = content_words(concl) - CONNECTIVES
        same = bool(cw) and len(cw & content_words(d.answer)) / len(cw) >= 0.6
    else:
        case = ThinkingCase(item.question, item.options, concl, d.answer, item.answer, item.answer_kind)
        same = states_same(concl, d.answer, case, ThinkingParams())
    return (ok + same) / 2


def authentic_thinking(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: (a) the Reasoning stage is not a copy of one evidence text (>= 30% of its content words
    are not in the best-matching evidence); (b) the stages are not copies of each other (content-word
    Jaccard < 0.8 for observation/reasoning and reasoning/conclusion); (c) an inferential connective
    (because, therefore, so, ...). The mean of the three. Cannot tell genuine clinical thinking from fluent
    connective-laden restatement."""
    r = content_words(d.stages["reasoning"])
    best = max((len(r & content_words(e.text)) for e in item.evidence), default=0)
    novel = bool(r) and (len(r) - best) / len(r) >= 0.3

    def jac(a: set, b: set) -> float:
        return len(a & b) / len(a | b) if a | b else 1.0
    o, c = content_words(d.stages["observation"]), content_words(d.stages["conclusion"])
    distinct = jac(o, r) < 0.8 and jac(r, c) < 0.8
    inferential = bool(_INFERENTIAL.search(d.stages["reasoning"] + " " + d.stages["conclusion"]))
    return (novel + distinct + inferential) / 3


def global_consistency(item: CoTItem, d: Draft, p: ReverseCoTParams) -> float:
    """Measures: (a) the Reasoning stage is about the question (shares a content word with it, or with the
    observation for report tasks); (b) no stage before the Conclusion states a different answer;
    (c) the Conclusion names the answer or shares a content word with the question. Cannot find contradictions
    between facts stated in different words."""
    r = content_words(d.stages["reasoning"])
    about = bool(r & (content_words(item.question) | content_words(d.stages["observation"])))
    pre = " ".join(d.stages[k] for k in STAGES[:3])
    final = _answer_statements(f"The answer is {d.answer}", item) if item.answer_kind != "open" else []
    stated = _answer_statements(pre, item)
    agree = all(s == final[0] for s in stated) if final else not stated
    concl = _mentions(d.stages["conclusion"], d.answer) or \
        bool(content_words(d.stages["conclusion"]) & (content_words(item.question) | content_words(d.answer)))
    return (about + agree + concl) / 3


QC_CHECKS = {"hindsight_free": hindsight_free, "logical_soundness": logical_soundness,
             "instruction_following": instruction_following, "answer_consistency": answer_consistency,
             "authentic_thinking": authentic_thinking, "global_consistency": global_consistency}


def local_qc(item: CoTItem, draft: Draft, p: ReverseCoTParams) -> dict[str, float]:
    return {k: round(float(QC_CHECKS[k](item, draft, p)), 4) for k in DIMENSIONS}


class LocalCoTJudge:
    name = "local"

    def __init__(self, params: ReverseCoTParams | None = None):
        self.params = params or ReverseCoTParams()

    def score(self, items, drafts) -> list[dict | str]:
        return [local_qc(it, d, self.params) for it, d in zip(items, drafts)]


JUDGE_PROMPT = """Score this medical chain of thought on six dimensions, each a number from 0 to 1:
hindsight_free (it never relies on knowing the answer in advance), logical_soundness (each step follows),
instruction_following (four stages: understanding, {obs_name}, reasoning, conclusion), answer_consistency (the
conclusion states the final answer, which matches the reference), authentic_thinking (it reads as genuine
clinical thinking, not a restatement), global_consistency (no stage contradicts another).

Question: {question}
Reference answer: {gold}
Chain:
{chain}
Final answer: {answer}

Reply with one JSON object only: {{"hindsight_free": x, "logical_soundness": x, "instruction_following": x,
"answer_consistency": x, "authentic_thinking": x, "global_consistency": x}}"""
JUDGE_REPAIR = "Your reply could not be used ({problem}). Reply with the JSON object of six numbers only."


def _six_scores(reply: str) -> dict:
    from tasks.llm.ask import json_object
    from tasks.llm.parsing import ParseError

    obj = json_object(reply, {})
    out = {}
    for k in DIMENSIONS:
        v = obj.get(k)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ParseError(f"{k!r} must be a number in [0, 1]", reply)
        out[k] = float(v)
    return out


class LLMCoTJudge:
    name = "llm"

    def __init__(self, client, params: ReverseCoTParams | None = None):
        self.client, self.params = client, params or ReverseCoTParams()

    def score(self, items, drafts) -> list[dict | str]:
        from tasks.llm.ask import ask_parsed

        chats = [[{"role": "user", "content": JUDGE_PROMPT.format(
            obs_name=observation_label(it).lower(), question=it.question, gold=it.answer[:1500],
            chain=render(it, d)[:6000], answer=d.answer[:1500])}] for it, d in zip(items, drafts)]
        answers = ask_parsed(self.client, chats, _six_scores, JUDGE_REPAIR, max_tokens=200)
        return [a.value if a.ok else f"llm_{a.failure['kind']}" for a in answers]


# ---- engine -----------------------------------------------------------------------------------------
def _locator(it: CoTItem) -> dict:
    return {"id": it.id, "question": it.question[:200]}


def reverse_cot(items: Sequence[CoTItem], writer: CoTWriter, judge: CoTJudge,
                params: ReverseCoTParams | None = None, root: str | Path = ".") -> GateOutcome:
    """Reverse structured CoT samples for `items` (module docstring); read == kept + rejected."""
    p, root = params or ReverseCoTParams(), Path(root)
    out = GateOutcome(read=len(items))
    written = writer.write(items)
    ok = [(it, w.draft) for it, w in zip(items, written) if w.draft is not None]
    for it, w in zip(items, written):
        if w.draft is None:
            out.reject("writer", w.failure or "no_draft", "", _locator(it))
    scores = judge.score([it for it, _ in ok], [d for _, d in ok])
    shas: dict[str, str] = {}
    for (it, d), sc in zip(ok, scores):
        if isinstance(sc, str):
            out.reject("judge", sc, "", _locator(it))
            continue
        failing = [k for k in DIMENSIONS if sc.get(k, 0.0) < p.thresholds.get(k, 0.0)]
        if failing:
            out.reject("qc", failing[0], json.dumps(sc), _locator(it))
            continue
        images = []
        for path in it.images:
            if path not in shas:
                shas[path] = file_sha256(root / path)
            images.append({"path": path, "sha256": shas[path]})
        user = it.question + ("\n" + "\n".join(f"{k}. {t}" for k, t in option_map(it.options).items())
                              if it.options else "")
        messages = [{"role": "user", "content": [image_part() for _ in images] + [text_part(user)] if images else user},
                    {"role": "assistant", "reasoning_content": render(it, d), "content": d.answer}]
        out.kept.append(mid_sample("reverse_cot", 3 if it.modality == "image" else 1, list(it.source_ids), messages,
                                   answer=final_answer(it, it.answer), answer_kind=it.answer_kind, images=images,
                                   generator="llm" if "llm" in (writer.name, judge.name) else "local",
                                   item_id=it.id, task_kind=it.task, qc=sc, writer=writer.name, judge=judge.name,
                                   evidence_sources=sorted({e.source for e in it.evidence})))
    return out
