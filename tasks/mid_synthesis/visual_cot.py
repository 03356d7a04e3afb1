"""Short visual CoT for perception questions (paper §4.1.1, "Personalized Visual CoT"): a caption isolates
what is visible, a reasoner binds one or two steps to that observation, a stylist puts them in one short
fixed format, and a dual gate checks the logic and then the style.

    captions = load_captions(root)                                   # sha256 -> CaptionRecord
    items, stats = load_perception_items(root, data_root, captions, VisualCoTParams())
    out = visual_cot(items, LocalAnalyst(), LocalReasoner(), LocalStylist(), VisualCoTParams())
    out.kept[0]["messages"][-1]      # {"role": "assistant", "reasoning_content": "Observation: ...\\nReasoning: ...",
                                     #  "content": "No."}

Why short: the paper finds long text-only chains detach from the image and hurt fine-grained
perception; a two-step chain that names what is seen keeps the answer bound to visual evidence.

Inputs (`load_perception_items`, bounded and seeded, balanced over source x question type x answer so
one dominant class -- 3,865 PneumoniaMNIST chest X-rays -- cannot fill the set):
- VQA-RAD train CLOSED questions of the perception types (modality, organ, presence, abnormality, plane).
  Images that any VQA-RAD *test* question also uses are excluded (train and test share 240 of 314
  images; the decontamination stage drops them from the corpus for the same reason), which leaves the 74
  images the project collected and captioned (data/cpt_data caption samples).
- caption-derived questions on every captioned image: "which modality" and "which body region", four
  options, the gold from the caption's structured attributes.
The anchor is the image's caption (caption_refined preferred). The VQA-RAD captions were assembled from
the image's own train annotations, so the asked question's own annotated statement is removed from the
anchor (otherwise the "observation" would be the gold answer paraphrased); statements from *other*
annotations of the same image stay -- they describe what the image shows. An image without a caption is
anchored on its metadata (VQA-RAD's organ field) and is marked anchor_kind="metadata".

Roles, each a Local and an LLM implementation behind one interface:
- Analyst (`observe`): question + anchor -> what is visible that bears on the question (never the gold).
  Local: the caption's modality/region sentence plus the sentences that share content words with the
  question (lexicons below); it selects, it does not perceive -- what the caption does not say, it
  cannot see.
- Reasoner (`reason`): question + options + observation -> one or two steps and an answer (never the
  gold). Local: rules -- "X or Y?" picks the alternative the observation names; modality / region
  questions compare the class named in the observation; yes/no presence questions find the observation
  sentence about the question's target and read its polarity (a negation flips it). No sentence about
  the target -> no conclusion (absence from a caption is not absence from the image).
- Stylist (`style`): observation + steps + answer -> the fixed format "Observation: ...\\nReasoning: ..."
  and the answer line. Local: the template itself.
Gates: "logic" (the reasoner's answer passes Outcome-Verify against the gold -- the gold is the
verifier, never an input -- and the observation names the evidence: a modality / region term for those
questions, a content word of the question's target otherwise), then "style" (the format, a word bound,
at most two reasoning sentences, no hindsight phrase, and the styled answer still states the reasoner's
answer and keeps the observation: style must not change the logic). LLM role failures are rejections
at the role's gate ("analyst", "reasoner", "stylist").
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from eval.parsing import parse_choice
from tasks.common.io import file_sha256
from tasks.mid_synthesis.experts import LETTERS, stable_seed
from tasks.mid_synthesis.samples import GateOutcome, image_part, mid_sample, text_part
from tasks.mid_synthesis.verify import gold_letter, hindsight_phrases, option_map, sentences, verify_outcome

# ---- lexicons ---------------------------------------------------------------------------------------
# modality class -> the words that name it in captions and questions (matched on word boundaries)
MODALITY_TERMS = {
    "X-ray": ("x-ray", "xray", "x ray", "radiograph", "radiography", "cxr", "plain film"),
    "CT": ("ct", "computed tomography"),
    "MRI": ("mri", "mr", "magnetic resonance", "flair", "t1", "t2", "dwi", "diffusion weighted"),
    "ultrasound": ("ultrasound", "sonograph", "sonography", "us"),
    "nuclear medicine": ("nuclear medicine", "scintigraphy", "pet", "spect", "nm"),
}
REGION_TERMS = {
    "chest": ("chest", "thorax", "thoracic", "lung", "lungs", "cxr"),
    "abdomen": ("abdomen", "abdominal", "bowel", "liver", "kidney", "kidneys", "pancreas", "spleen"),
    "head": ("head", "brain", "skull", "cerebral", "cranial", "ventricle", "ventricles"),
    "pelvis": ("pelvis", "pelvic"),
    "spine": ("spine", "spinal", "vertebra", "vertebrae", "vertebral"),
    "whole body": ("whole body",),
}
SEQUENCE_TERMS = ("t1", "t2", "flair", "dwi", "diffusion weighted")
_CASE_SENSITIVE = {"us", "mr", "nm", "ct", "pet"}      # "us" the pronoun is not ultrasound
STOPWORDS = frozenset("""a an the is are was were be been this that these those there here it its of in on at to for
with by from as and or any some image images picture scan film seen see visualized visualize visible noted shown
show shows showing present presence evidence does do did can could you we patient patients in this which what
where how be appreciate appreciated possible able observed notice into around besides other than""".split())
_NEGATION = re.compile(r"(?i)\b(?:no|not|without|absent|none|negative for|neither|nor)\b|n't")
_ALTERNATIVES = re.compile(r"(?i)^(?:is|are|was|were)\s+(?:(?:this|it|the\s+\w+(?:\s+\w+)?)\s+)?(?:an?\s+)?(.+?)"
                           r"\s*,?\s+or\s+(?:an?\s+)?(.+?)\s*\??$")
QTYPES = ("modality", "organ", "presence", "abnormality", "plane")
_VQA_QTYPE = {"MODALITY": "modality", "ORGAN": "organ", "PRES": "presence", "ABN": "abnormality",
              "PLANE": "plane"}


def _find(text: str, term: str) -> re.Match | None:
    """`term` in `text` on word boundaries; the short acronyms only in capitals ("US", not "us")."""
    if term in _CASE_SENSITIVE:
        return re.search(rf"(?<![A-Za-z0-9]){term.upper()}(?![A-Za-z0-9])", text)
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])", text, re.IGNORECASE)


def classes_in(text: str, lexicon: dict[str, tuple[str, ...]]) -> list[str]:
    """Classes of `lexicon` named in `text`, in order of first mention."""
    hits = []
    for cls, terms in lexicon.items():
        pos = [m.start() for m in (_find(text, t) for t in terms) if m is not None]
        if pos:
            hits.append((min(pos), cls))
    return [c for _, c in sorted(hits)]


def modality_class(text: str) -> str | None:
    found = classes_in(text, MODALITY_TERMS)
    return found[0] if found else None


def stem(word: str) -> str:
    """A light suffix stripper so "fractured" / "fractures" / "fracture" meet; enough for word overlap."""
    w = word.lower()
    for suf in ("ing", "ed", "es", "s", "e"):
        if w.endswith(suf) and len(w) - len(suf) >= 4:
            return w[: -len(suf)]
    return w


def content_words(text: str) -> set[str]:
    return {stem(w) for w in re.findall(r"[A-Za-z][A-Za-z0-9\-]+", text) if w.lower() not in STOPWORDS}


# ---- inputs -----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CaptionRecord:
    sha256: str
    path: str                   # project-relative image path
    text: str                   # the caption
    attrs: dict
    source_ids: tuple[str, ...]
    task: str                   # caption_refined | caption


@dataclasses.dataclass(frozen=True)
class PerceptionItem:
    id: str
    question: str
    options: tuple[str, ...]
    answer: str
    answer_kind: str            # judgement | choice | fill
    qtype: str                  # QTYPES
    images: tuple[str, ...]
    source_ids: tuple[str, ...]
    anchor: str                 # what the analyst reads: the caption (own annotation removed) or metadata
    anchor_kind: str            # caption | metadata
    source: str                 # vqa_rad | caption


@dataclasses.dataclass
class VisualCoTParams:
    n_items: int = 200                  # perception items drawn per run (balanced, seeded)
    seed: int = 0
    vqa_rad_question_types: tuple[str, ...] = ("MODALITY", "ORGAN", "PRES", "ABN", "PLANE")
    caption_questions: tuple[str, ...] = ("modality", "organ")
    max_reasoning_words: int = 60       # style gate: a short CoT (Observation + Reasoning)
    max_reasoning_sentences: int = 2    # style gate: one or two steps
    max_observation_sentences: int = 2  # analyst: the region/modality sentence + the most relevant one
    llm_max_tokens: int = 200


def load_captions(root: str | Path, tasks: Sequence[str] = ("caption_refined", "caption"),
                  samples_glob: str = "data/cpt_data/samples/part-*.jsonl") -> dict[str, CaptionRecord]:
    """sha256 -> caption of every captioned image in the CPT samples, the first task of `tasks` winning
    (caption_refined: the rubric-checked caption). Streams the files, parsing only lines that mention a
    caption task."""
    root = Path(root)
    rank = {t: i for i, t in enumerate(tasks)}
    best: dict[str, tuple[int, CaptionRecord]] = {}
    for part in sorted(root.glob(samples_glob)):
        with open(part, encoding="utf-8") as f:
            for line in f:
                if '"caption' not in line:
                    continue
                s = json.loads(line)
                if s.get("task") not in rank or len(s.get("images") or []) != 1:
                    continue
                img, text = s["images"][0], s["messages"][-1].get("content")
                if not isinstance(text, str) or not text.strip():
                    continue
                rec = CaptionRecord(img["sha256"], img["path"], text.strip(), s["meta"].get("attrs") or {},
                                    tuple(s.get("source_ids") or ()), s["task"])
                r = rank[s["task"]]
                if img["sha256"] not in best or r < best[img["sha256"]][0]:
                    best[img["sha256"]] = (r, rec)
    return {sha: rec for sha, (_, rec) in sorted(best.items())}


def anchor_without(caption: CaptionRecord, question: str, answer: str) -> str:
    """The caption with the asked question's own annotated statement removed (module docstring)."""
    from tasks.cpt_synthesis.image_knowledge import qa_statement

    text = caption.text
    own = {qa_statement(question, answer)}
    qn = " ".join(question.lower().split()).rstrip("?")
    for qa in caption.attrs.get("qa", []):
        if " ".join(str(qa.get("question", "")).lower().split()).rstrip("?") == qn:
            own.add(qa_statement(qa["question"], str(qa["answer"])))
    for s in own:
        text = text.replace(s, " ")
    text = re.sub(r"Annotated findings:\s*(?=[A-Z][a-z]+:|$)", "", " ".join(text.split()))
    return text.strip()


def _collected_path(root: Path, sha: str) -> str | None:
    hits = sorted((root / "data" / "collect" / "images" / sha[:2]).glob(f"{sha}.*"))
    return str(hits[0].relative_to(root)) if hits else None


def vqa_rad_train(root: str | Path, data_root: str | Path, captions: dict[str, CaptionRecord],
                  closed_only: bool = False) -> tuple[list[dict], Counter]:
    """VQA-RAD train questions whose image no test question uses and the project collected, each with its
    project-relative image path, anchor and anchor kind; plus counts of what was skipped and why."""
    root, d = Path(root), Path(data_root) / "benchmarks" / "vqa_rad"
    train = json.loads((d / "trainset.json").read_text())
    test_images = {t["image_name"] for t in json.loads((d / "testset.json").read_text())}
    skipped: Counter = Counter()
    shas: dict[str, str] = {}
    out = []
    for q in train:
        if closed_only and q["answer_type"].strip().upper() != "CLOSED":
            skipped["open_answer"] += 1
            continue
        if q["image_name"] in test_images:
            skipped["image_in_test"] += 1
            continue
        if q["image_name"] not in shas:
            shas[q["image_name"]] = file_sha256(d / "images" / q["image_name"])
        sha = shas[q["image_name"]]
        cap = captions.get(sha)
        path = cap.path if cap else _collected_path(root, sha)
        if path is None:
            skipped["image_not_collected"] += 1
            continue
        question, answer = " ".join(q["question"].split()), str(q["answer"]).strip()
        if cap is not None:
            anchor, kind, lineage = anchor_without(cap, question, answer), "caption", cap.source_ids
        else:
            organ = {"ABD": "abdomen", "CHEST": "chest", "HEAD": "head"}.get(q["image_organ"].strip().upper(),
                                                                            q["image_organ"].lower())
            anchor, kind, lineage = f"A radiologic image of the {organ}.", "metadata", ()
        out.append({"qid": q["qid"], "question": question, "answer": answer,
                    "answer_type": q["answer_type"].strip().upper(), "question_type": q["question_type"],
                    "organ": q["image_organ"], "image": path, "sha256": sha, "anchor": anchor, "anchor_kind": kind,
                    "source_ids": (f"vqa_rad-train-{q['qid']}", *lineage)})
    return out, skipped


def answer_kind_of(answer: str) -> str:
    return "judgement" if answer.strip().lower() in ("yes", "no") else "fill"


def balanced_sample(items: Sequence, key, n: int, seed: int) -> list:
    """Up to `n` items, round-robin over groups (sorted by key), each group in a seeded order."""
    rng = np.random.default_rng(seed)
    groups: dict = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    order = {k: [g[i] for i in rng.permutation(len(g))] for k, g in sorted(groups.items())}
    out: list = []
    while len(out) < n and any(order.values()):
        for k in list(order):
            if order[k] and len(out) < n:
                out.append(order[k].pop(0))
    return out


def _caption_questions(cap: CaptionRecord, which: Sequence[str], seed: int) -> list[PerceptionItem]:
    out = []
    for qtype in which:
        if qtype == "modality":
            gold = modality_class(str(cap.attrs.get("modality") or "")) or modality_class(cap.text.split(".")[0])
            pool, question = list(MODALITY_TERMS), "Which imaging modality was used to acquire this image?"
        else:
            gold = cap.attrs.get("anatomy")
            gold = gold if gold in REGION_TERMS else None
            pool, question = list(REGION_TERMS), "Which body region does this image show?"
        if gold is None:
            continue
        rng = np.random.default_rng(stable_seed(seed, cap.sha256, qtype))
        others = [c for c in pool if c != gold]
        opts = [gold] + [others[i] for i in rng.choice(len(others), size=3, replace=False)]
        opts = [opts[i] for i in rng.permutation(4)]
        out.append(PerceptionItem(f"caption-{cap.sha256[:16]}-{qtype}", question, tuple(opts), gold, "choice", qtype,
                                  (cap.path,), cap.source_ids or (f"image:{cap.sha256}",), cap.text, "caption",
                                  "caption"))
    return out


def load_perception_items(root: str | Path, data_root: str | Path, captions: dict[str, CaptionRecord],
                          params: VisualCoTParams | None = None) -> tuple[list[PerceptionItem], dict]:
    """Balanced, seeded perception items (module docstring) and counts of what the loader skipped."""
    p = params or VisualCoTParams()
    rows, skipped = vqa_rad_train(root, data_root, captions, closed_only=True)
    items = []
    types = {t.upper() for t in p.vqa_rad_question_types}
    for r in rows:
        qt = r["question_type"].split(",")[0].strip().upper()
        if qt not in types:
            skipped["question_type"] += 1
            continue
        items.append(PerceptionItem(f"vqa_rad-train-{r['qid']}", r["question"], (), r["answer"],
                                    answer_kind_of(r["answer"]), _VQA_QTYPE[qt], (r["image"],), r["source_ids"],
                                    r["anchor"], r["anchor_kind"], "vqa_rad"))
    for cap in captions.values():
        items.extend(_caption_questions(cap, p.caption_questions, p.seed))
    pool = len(items)
    picked = balanced_sample(items, lambda it: (it.source, it.qtype, it.answer.lower()), p.n_items, p.seed)
    return picked, {"pool": pool, "picked": len(picked), "skipped": dict(sorted(skipped.items()))}


# ---- roles ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Thought:
    """The output of one role for one item: `value` (text or a dict), or `failure` with a reason."""
    value: object = None
    failure: str | None = None


class Analyst(Protocol):
    name: str

    def observe(self, items: Sequence[PerceptionItem]) -> list[Thought]: ...          # value: str


class Reasoner(Protocol):
    name: str

    def reason(self, items: Sequence[PerceptionItem], observations: Sequence[str]) -> list[Thought]: ...
    # value: {"steps": [str, ...], "answer": str | None}


class Stylist(Protocol):
    name: str

    def style(self, items: Sequence[PerceptionItem], observations: Sequence[str],
              reasonings: Sequence[dict]) -> list[Thought]: ...
    # value: {"observation": str, "reasoning": str, "answer": str}


def _anchor_sentences(anchor: str) -> list[str]:
    """The anchor's sentences without section labels; a refined caption's "Background:" part is dropped:
    it is knowledge appended to the caption, not something seen in the image."""
    anchor = anchor.split("Background:", 1)[0]
    return [re.sub(r"^(?:Annotated findings|Findings|Impression):\s*", "", s) for s in sentences(anchor)]


def _target_words(question: str) -> set[str]:
    return content_words(question)


def relevant_sentences(item: PerceptionItem, limit: int) -> list[str]:
    """The anchor sentences that bear on the question: the one naming the modality / region first, then
    those sharing the most content words with the question."""
    sents = _anchor_sentences(item.anchor)
    if not sents:
        return []
    head = next((s for s in sents if classes_in(s, MODALITY_TERMS) or classes_in(s, REGION_TERMS)), sents[0])
    target = _target_words(item.question)
    scored = sorted(((len(target & content_words(s)), -i, s) for i, s in enumerate(sents) if s != head),
                    reverse=True)
    picked = [head] + [s for n, _, s in scored if n > 0][: max(0, limit - 1)]
    return picked


class LocalAnalyst:
    name = "local"

    def __init__(self, params: VisualCoTParams | None = None):
        self.params = params or VisualCoTParams()

    def observe(self, items: Sequence[PerceptionItem]) -> list[Thought]:
        return [Thought(" ".join(relevant_sentences(it, self.params.max_observation_sentences)) or None,
                        None if it.anchor.strip() else "empty_anchor") for it in items]


def _alternatives(question: str) -> list[str]:
    m = _ALTERNATIVES.match(question.strip())
    if not m:
        return []
    alts = [a for a in re.split(r",\s*", m.group(1)) + [m.group(2)]]
    return [a for a in (_trim_stopwords(a) for a in alts) if a]


def _trim_stopwords(phrase: str) -> str:
    """"of this image the small bowel" -> "small bowel"; "FLAIR image" -> "FLAIR"."""
    words = phrase.strip().rstrip("?").split()
    while words and words[0].lower() in STOPWORDS:
        words.pop(0)
    while words and words[-1].lower() in STOPWORDS:
        words.pop()
    return " ".join(words)


def _named(text: str, phrase: str) -> bool:
    """`text` names `phrase`: a bare modality name ("CT", "an MRI") by its class, anything else ("contrast
    CT", "small bowel") by all of its content words."""
    cls = modality_class(phrase)
    extra = content_words(phrase) - {stem(t) for terms in MODALITY_TERMS.values() for t in terms}
    if cls is not None and not extra:
        return modality_class(text) == cls
    words = content_words(phrase)
    return bool(words) and words <= content_words(text)


_QA_FORM = re.compile(r"(?i)^(?:is|are|was|were|what|which|how|where|does|do|did|can|could|describe|in what)\b"
                      r"[^:]*:\s*(.+)$")


def claims(observation: str) -> str:
    """The observation with annotation sentences of the form "question: answer" reduced to their answer,
    so "Was a CT or MRI used: MRI." names MRI only."""
    out = []
    for s in _anchor_sentences(observation):
        m = _QA_FORM.match(s)
        out.append(m.group(1) if m else s)
    return " ".join(out)


def derive_answer(item: PerceptionItem, observation: str) -> dict:
    """The Local reasoner's rules (module docstring): {"steps": [...], "answer": str | None}."""
    q, obs = item.question, claims(observation)
    if item.options:                                               # caption-derived: modality / region
        lexicon = MODALITY_TERMS if item.qtype == "modality" else REGION_TERMS
        seen = classes_in(obs, lexicon)
        hit = [o for o in item.options if o in seen[:1]]
        what = "imaging modality" if item.qtype == "modality" else "body region"
        if not hit:
            return {"steps": [f"The observation does not name the {what}."], "answer": None}
        letter = LETTERS[item.options.index(hit[0])]
        return {"steps": [f"The observation describes the image as {_lower_first(_first_mention(obs, lexicon))}.",
                          f"That is the {what} of option {letter}, {hit[0]}."], "answer": f"{letter}. {hit[0]}"}
    alts = _alternatives(q)
    if len(alts) >= 2:
        named = [a for a in alts if _named(obs, a)]
        if len(named) != 1:
            return {"steps": ["The observation does not single out one of the alternatives."], "answer": None}
        return {"steps": [f"The question offers {', '.join(alts[:-1])} or {alts[-1]}.",
                          f"The observation matches {named[0]}."], "answer": named[0]}
    asked_mod = modality_class(q)
    if item.qtype == "modality" and asked_mod and any(_find(q, t) for t in SEQUENCE_TERMS):
        # "Is this a T1 weighted image?": a sequence, not a modality; a caption rarely names it
        return {"steps": ["The observation does not name the MRI sequence."], "answer": None}
    if item.qtype == "modality" and asked_mod and not re.search(r"(?i)contrast", q):
        seen = modality_class(obs)
        if seen is None:
            return {"steps": ["The observation does not name the modality."], "answer": None}
        ans = "yes" if seen == asked_mod else "no"
        return {"steps": [f"The observation shows a {seen} image.",
                          f"The question asks about {asked_mod}, so {'it is' if ans == 'yes' else 'it is not'}."],
                "answer": ans}
    if re.search(r"(?i)contrast", q) and item.qtype == "modality":
        if re.search(r"(?i)non-?\s*contrast|without contrast|unenhanced", obs):
            return {"steps": ["The observation describes a study without contrast."], "answer": "no"}
        if re.search(r"(?i)contrast|enhanc", obs):
            return {"steps": ["The observation describes contrast in the study.",
                              "So contrast was used."], "answer": "yes"}
        return {"steps": ["The observation does not mention contrast."], "answer": None}
    target = _target_words(q)
    finding = _finding_word(q)
    usable = [s for s in _anchor_sentences(observation) if _polar(s)]
    best = max(((len(target & content_words(s)), -i, s) for i, s in enumerate(usable)
                if finding in content_words(s)), default=None)
    need = max(1, -(-len(target) // 2))
    if not target or best is None or best[0] < need:
        return {"steps": ["The observation says nothing about what the question asks."], "answer": None}
    sent = best[2]
    q_neg, s_neg = bool(_NEGATION.search(q)), bool(_NEGATION.search(sent))
    ans = "yes" if q_neg == s_neg else "no"
    return {"steps": [f"The observation states: {sent.rstrip('.')}.",
                      f"That {'confirms' if ans == 'yes' else 'rules out'} what the question asks."], "answer": ans}


def _finding_word(question: str) -> str | None:
    """The last content word of a yes/no question: its finding or predicate ("Is there a *hemorrhage*?",
    "Is the bowel *obstructed*?"). An observation sentence must name it to bear on the question."""
    words = [stem(w) for w in re.findall(r"[A-Za-z][A-Za-z0-9\-]+", question) if w.lower() not in STOPWORDS]
    return words[-1] if words else None


def _polar(sentence: str) -> bool:
    """A sentence whose polarity means something: a statement, or an annotation "question: yes/no".
    "What is abnormal about the hila: Enlarged." answers another question and has no polarity."""
    m = _QA_FORM.match(sentence)
    return m is None or m.group(1).strip().rstrip(".").lower() in ("yes", "no")


def _first_mention(text: str, lexicon: dict[str, tuple[str, ...]]) -> str:
    for s in sentences(text):
        if classes_in(s, lexicon):
            return s.rstrip(".")
    return text.rstrip(".")


def _lower_first(s: str) -> str:
    """"Frontal chest radiograph" -> "frontal chest radiograph"; "CT of the head" stays (an acronym)."""
    return s if s[:2].isupper() else s[:1].lower() + s[1:]


class LocalReasoner:
    name = "local"

    def reason(self, items: Sequence[PerceptionItem], observations: Sequence[str]) -> list[Thought]:
        return [Thought(derive_answer(it, obs)) for it, obs in zip(items, observations)]


def _answer_text(item: PerceptionItem, answer: str) -> str:
    if item.answer_kind == "judgement":
        return answer.strip().capitalize().rstrip(".") + "."
    return answer.strip()


class LocalStylist:
    name = "local"

    def style(self, items, observations, reasonings) -> list[Thought]:
        return [Thought({"observation": obs, "reasoning": " ".join(r["steps"]),
                         "answer": _answer_text(it, r["answer"])})
                for it, obs, r in zip(items, observations, reasonings)]


# ---- LLM roles --------------------------------------------------------------------------------------
ANALYST_PROMPT = """You are an image analyst. Below is a low-hallucination description of a medical image and a
question about it. State only what the description says is visible that bears on the question, in one or two
sentences. Do not answer the question.

Description: {anchor}
Question: {question}
Reply with one JSON object only: {{"observation": "<one or two sentences>"}}"""
REASONER_PROMPT = """You are a radiology reasoning expert. Using only the observation, answer the question in one
or two short reasoning steps.

Observation: {observation}
Question: {question}
{options}Reply with one JSON object only: {{"steps": ["<step 1>", "<optional step 2>"], "answer": "<answer>"}}
The answer is {answer_form}."""
STYLIST_PROMPT = """Rewrite this reasoning into a short, plain style for perception questions: at most two
sentences of reasoning, no new facts, the same answer.

Observation: {observation}
Reasoning: {reasoning}
Answer: {answer}
Reply with one JSON object only: {{"reasoning": "<at most two sentences>", "answer": "<the same answer>"}}"""
REPAIR = "Your reply could not be used ({problem}). Reply with the JSON object only."


def _answer_form(item: PerceptionItem) -> str:
    if item.options:
        return "the option letter and its text, e.g. \"B. CT\""
    return "yes or no" if item.answer_kind == "judgement" else "a short phrase"


def _options_block(item: PerceptionItem) -> str:
    return "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(item.options))


def _ask(client, prompts: list[str], required: dict, max_tokens: int) -> list[Thought]:
    from tasks.llm.ask import ask_parsed, json_object

    chats = [[{"role": "user", "content": p}] for p in prompts]
    answers = ask_parsed(client, chats, lambda r: json_object(r, required), REPAIR, max_tokens=max_tokens)
    return [Thought(a.value) if a.ok else Thought(None, f"llm_{a.failure['kind']}") for a in answers]


class LLMAnalyst:
    name = "llm"

    def __init__(self, client, params: VisualCoTParams | None = None):
        self.client, self.params = client, params or VisualCoTParams()

    def observe(self, items):
        got = _ask(self.client, [ANALYST_PROMPT.format(anchor=it.anchor, question=it.question) for it in items],
                   {"observation": str}, self.params.llm_max_tokens)
        return [Thought(t.value["observation"].strip()) if t.failure is None else t for t in got]


class LLMReasoner:
    name = "llm"

    def __init__(self, client, params: VisualCoTParams | None = None):
        self.client, self.params = client, params or VisualCoTParams()

    def reason(self, items, observations):
        prompts = [REASONER_PROMPT.format(observation=o, question=it.question, options=_options_block(it),
                                          answer_form=_answer_form(it)) for it, o in zip(items, observations)]
        got = _ask(self.client, prompts, {"steps": list, "answer": str}, self.params.llm_max_tokens)
        return [Thought({"steps": [str(s) for s in t.value["steps"] if str(s).strip()],
                         "answer": t.value["answer"].strip()}) if t.failure is None else t for t in got]


class LLMStylist:
    name = "llm"

    def __init__(self, client, params: VisualCoTParams | None = None):
        self.client, self.params = client, params or VisualCoTParams()

    def style(self, items, observations, reasonings):
        prompts = [STYLIST_PROMPT.format(observation=o, reasoning=" ".join(r["steps"]), answer=r["answer"])
                   for o, r in zip(observations, reasonings)]
        got = _ask(self.client, prompts, {"reasoning": str, "answer": str}, self.params.llm_max_tokens)
        return [Thought({"observation": o, "reasoning": t.value["reasoning"].strip(),
                         "answer": t.value["answer"].strip()}) if t.failure is None else t
                for o, t in zip(observations, got)]


# ---- gates ------------------------------------------------------------------------------------------
def evidence_terms(item: PerceptionItem) -> set[str]:
    """What the observation must name: modality / region words for those questions, the question's
    target content words otherwise."""
    if item.qtype == "modality":
        return {t for terms in MODALITY_TERMS.values() for t in terms} | {"contrast"}
    if item.qtype == "organ":
        return {t for terms in REGION_TERMS.values() for t in terms}
    return _target_words(item.question)


def mentions_evidence(item: PerceptionItem, observation: str) -> bool:
    terms = evidence_terms(item)
    if item.qtype in ("modality", "organ"):
        return any(_find(observation, t) for t in terms)
    return bool(terms & content_words(observation))


def logic_gate(item: PerceptionItem, observation: str, reasoning: dict) -> str | None:
    """None when the logic holds, else the reason."""
    if not reasoning.get("answer"):
        return "no_conclusion"
    if not verify_outcome(reasoning["answer"], item.answer, item.answer_kind, item.options).ok:
        return "conclusion_mismatch"
    if not mentions_evidence(item, observation):
        return "observation_lacks_evidence"
    return None


def same_answer(item: PerceptionItem, a: str, b: str) -> bool:
    """Whether two answers to `item` state the same thing (letters for choice items)."""
    if item.options:
        pa, pb = parse_choice(a, option_map(item.options)), parse_choice(b, option_map(item.options))
        return pa.ok and pa.value == pb.value
    return verify_outcome(a, b, item.answer_kind).ok


FORMAT = re.compile(r"^Observation: \S.*\nReasoning: \S.*$", re.DOTALL)


def render(styled: dict) -> str:
    return f"Observation: {' '.join(styled['observation'].split())}\nReasoning: {' '.join(styled['reasoning'].split())}"


def style_gate(item: PerceptionItem, observation: str, reasoning: dict, styled: dict,
               p: VisualCoTParams) -> str | None:
    text = render(styled)
    if not FORMAT.match(text) or not styled["answer"].strip():
        return "bad_format"
    if len(text.split()) > p.max_reasoning_words:
        return "too_long"
    if len(sentences(styled["reasoning"])) > p.max_reasoning_sentences:
        return "too_many_steps"
    if hindsight_phrases(text):
        return "hindsight_phrase"
    if not same_answer(item, styled["answer"], reasoning["answer"]):
        return "answer_changed"
    if not mentions_evidence(item, styled["observation"]):
        return "observation_lost"
    return None


# ---- engine -----------------------------------------------------------------------------------------
def _locator(it: PerceptionItem) -> dict:
    return {"id": it.id, "question": it.question[:200]}


def _image_ref(root: Path, path: str, cache: dict) -> dict:
    if path not in cache:
        cache[path] = {"path": path, "sha256": file_sha256(root / path)}
    return cache[path]


def _user_text(item: PerceptionItem) -> str:
    return item.question + ("\n" + _options_block(item).rstrip() if item.options else "")


def visual_cot(items: Sequence[PerceptionItem], analyst: Analyst, reasoner: Reasoner, stylist: Stylist,
               params: VisualCoTParams | None = None, root: str | Path = ".") -> GateOutcome:
    """Short visual CoT samples for `items` (module docstring); read == kept + rejected."""
    p, root = params or VisualCoTParams(), Path(root)
    out = GateOutcome(read=len(items))
    alive = list(range(len(items)))

    def stage(gate: str, thoughts: Iterable[Thought], idx: list[int]) -> tuple[list[int], list]:
        keep, values = [], []
        for i, t in zip(idx, thoughts):
            if t.failure or t.value is None:
                out.reject(gate, t.failure or "no_output", "", _locator(items[i]))
            else:
                keep.append(i)
                values.append(t.value)
        return keep, values

    alive, obs = stage("analyst", analyst.observe([items[i] for i in alive]), alive)
    obs_of = dict(zip(alive, obs))
    alive, rsn = stage("reasoner", reasoner.reason([items[i] for i in alive], obs), alive)
    rsn_of = dict(zip(alive, rsn))
    passed = []
    for i in alive:
        why = logic_gate(items[i], obs_of[i], rsn_of[i])
        if why:
            out.reject("logic", why, f"answer={rsn_of[i].get('answer')!r} gold={items[i].answer!r}", _locator(items[i]))
        else:
            passed.append(i)
    alive, sty = stage("stylist", stylist.style([items[i] for i in passed], [obs_of[i] for i in passed],
                                                [rsn_of[i] for i in passed]), passed)
    cache: dict = {}
    for i, styled in zip(alive, sty):
        it = items[i]
        why = style_gate(it, obs_of[i], rsn_of[i], styled, p)
        if why:
            out.reject("style", why, render(styled)[:300], _locator(it))
            continue
        images = [_image_ref(root, path, cache) for path in it.images]
        messages = [{"role": "user", "content": [image_part() for _ in images] + [text_part(_user_text(it))]},
                    {"role": "assistant", "reasoning_content": render(styled), "content": styled["answer"]}]
        gold = it.answer if not it.options else f"{gold_letter(it.answer, it.options)}. {it.answer}"
        out.kept.append(mid_sample("visual_cot", 3, list(it.source_ids), messages, answer=gold,
                                   answer_kind=it.answer_kind, images=images,
                                   generator="llm" if "llm" in (analyst.name, reasoner.name, stylist.name) else "local",
                                   item_id=it.id, qtype=it.qtype, anchor_kind=it.anchor_kind, source=it.source,
                                   roles={"analyst": analyst.name, "reasoner": reasoner.name,
                                          "stylist": stylist.name}))
    return out
