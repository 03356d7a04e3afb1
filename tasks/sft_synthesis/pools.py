"""The candidate pools of SFT data (paper §5.1.1): existing data re-read as SFT candidate samples.

    from tasks.sft_synthesis.pools import PoolParams, load_pools
    pools = load_pools(PoolParams(), project_root=".", data_root="../shared/data", seed=1234)
    pools["pubmedqa"].kept[0]["meta"]["answer"]      # "yes"; pools[...].rejected: {gate, reason, detail, item}

Every loader returns a `GateOutcome` of samples built by `samples.sft_sample` (family = the pool). It reads
every row of its source, rejects a bad row with gate "input" and a reason (malformed JSON, a broken
contract, a missing image, an unusable field), drops exact duplicates (gate "input", reason "duplicate"),
then keeps a seeded sample of at most `max_items[pool]` rows (numpy Generator seeded from (seed, pool));
the rows not drawn are rejected with gate "select", reason "over_max", so read == kept + rejected.

Pools and what vouches for their answers (meta.accuracy):
- mid_data: mid-training's samples (data/mid_data/samples), re-wrapped with reasoning, tool turns, tools and
  images intact; "code": they passed mid-training's dual gate. The mid sample's meta is kept (a key the SFT
  contract owns, e.g. `source`, is kept as `mid_<key>`), with mid_id, mid_family and mid_phase.
- kg_qa: the CPT stage's KG atomic QA (task atomic_qa, one templated fact each) turned into multiple
  choice. The question and the answer statement are parsed back into (head, relation, tail) with the
  CPT templates (tasks/cpt_synthesis/kg_qa.py TEMPLATES), so the answer entity is known; distractors are
  the answer entities of other questions of the same relation and direction, minus every entity the pool
  states is linked to the question's entity by that relation (a true alternative is not a distractor).
  Facts the pool does not state can still make a distractor right, hence "consensus": the experts decide.
- medquad: MedQuAD QA pairs of the corpus (data/quality/kept, via mid_synthesis.kg_paths.load_medquad),
  open answers cut to `max_answer_chars` at the last sentence end (an answer without one in that window is
  rejected: a cut mid-sentence teaches the model to stop mid-sentence); "consensus".
- vqa_rad: VQA-RAD train (kg_paths.load_vqa_rad: the image is its copy in the collect stage's store), yes/no
  answers as judgement over (yes, no), the rest as short fill answers; "consensus".
- ocr: the CPT stage's rendered lab-report QA conversations (task ocr_qa): every answer is a value the
  renderer wrote onto the image, so "code"; the final turn's answer is meta.answer (kind fill).
- pubmedqa: PubMedQA's labelled set (ori_pqal.json) minus the 500 test PMIDs (test_ground_truth.json): the
  abstract's sections as context, yes/no/maybe (judgement) with the long answer as the explanation; the
  labels are the dataset's, still "consensus" here (the experts check them like any other).

Choice and judgement samples carry meta.question (the prompt without options or answer instruction),
meta.options and meta.gold_index, which is what the consensus probe (consensus.py) asks the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from eval.parsing import normalize_answer
from tasks.common.io import iter_jsonl, shard_paths
from tasks.cpt_synthesis.kg_qa import TEMPLATES
from tasks.mid_synthesis.experts import LETTERS, stable_seed
from tasks.mid_synthesis.kg_paths import load_medquad, load_vqa_rad
from tasks.mid_synthesis.samples import image_part, text_part, validate_sample
from tasks.sft_synthesis.samples import GateOutcome, SampleError, sft_sample

POOLS = ("mid_data", "kg_qa", "medquad", "vqa_rad", "ocr", "pubmedqa")
CHOICE_INSTRUCTION = "Answer with the letter of the correct option."
YES_NO_INSTRUCTION = "Answer yes or no."
FILL_INSTRUCTION = "Answer with a short phrase."
PUBMEDQA_INSTRUCTION = "Answer yes, no or maybe, then explain."
PUBMEDQA_LABELS = ("yes", "no", "maybe")
ALL = 10 ** 9        # "no bound" for the reused kg_paths loaders: the pools select themselves


@dataclasses.dataclass
class PoolParams:
    sources: list[str] = dataclasses.field(default_factory=lambda: list(POOLS))   # pools to load
    # per pool, a seeded sample: mid_data and ocr are verified already, the consensus pools cost expert calls
    max_items: dict[str, int] = dataclasses.field(default_factory=lambda: {
        "mid_data": 5000, "kg_qa": 1000, "medquad": 1000, "vqa_rad": 1000, "ocr": 200, "pubmedqa": 500})
    mid_samples: str = "data/mid_data/samples"              # project-relative
    cpt_samples: str = "data/cpt_data/samples"
    quality_kept: str = "data/quality/kept"
    image_store: str = "data/collect/images"                # where the collect stage copied benchmark images
    vqa_rad_train: str = "benchmarks/vqa_rad/trainset.json"  # relative to data_root
    pubmedqa_dir: str = "benchmarks/pubmedqa"
    max_answer_chars: int = 600      # MedQuAD answers: a few sentences, the part a reviewer can check
    kg_qa_options: int = 4           # options per KG question (1 right + distractors), as MedQA

    def __post_init__(self):
        unknown = sorted(set(self.sources) - set(POOLS))
        if unknown:
            raise ValueError(f"sources: unknown pools {unknown}; known: {list(POOLS)}")
        missing = sorted(set(self.sources) - set(self.max_items))
        if missing:
            raise ValueError(f"max_items has no bound for {missing}")
        if self.kg_qa_options < 2 or self.kg_qa_options > len(LETTERS):
            raise ValueError(f"kg_qa_options must be in 2..{len(LETTERS)}")


# ----------------------------------------------------------------------------- shared steps
def _finish(out: GateOutcome, built: list[dict], n: int, seed: int, pool: str) -> GateOutcome:
    """Drop duplicate ids, then keep a seeded sample of at most n (in read order); the rest over_max."""
    seen: set[str] = set()
    unique = []
    for s in built:
        if s["id"] in seen:
            out.reject("input", "duplicate", "same source, content and images as an earlier row", _loc(s))
            continue
        seen.add(s["id"])
        unique.append(s)
    keep = set(range(len(unique)))
    if len(unique) > n:
        rng = np.random.default_rng(stable_seed(seed, "sft_pools", pool))
        keep = set(rng.choice(len(unique), size=n, replace=False).tolist())
    for i, s in enumerate(unique):
        if i in keep:
            out.kept.append(s)
        else:
            out.reject("select", "over_max", f"{pool}: {len(unique)} rows for at most {n}", _loc(s))
    return out


def _loc(s: dict) -> dict:
    return {"id": s.get("id"), "source_ids": (s.get("source_ids") or [])[:1]}


def _build(out: GateOutcome, built: list[dict], loc: Any, make: Callable[[], dict]) -> None:
    """Append make()'s sample, or reject the row at gate input with the contract's reason."""
    try:
        built.append(make())
    except SampleError as e:
        out.reject("input", f"bad_sample:{e.reason}", e.detail, loc)


def _missing_images(images: list[dict], root: Path) -> list[str]:
    return [i.get("path", "?") for i in images if not (isinstance(i, dict) and (root / str(i.get("path"))).is_file())]


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _jsonl_rows(out: GateOutcome, directory: Path):
    """Good rows of the directory's shards; bad lines rejected at gate input (counted as read)."""
    for shard in shard_paths(_require(directory, "samples directory")):
        for obj, err in iter_jsonl(shard):
            if err is not None or not isinstance(obj, dict):
                out.read += 1
                out.reject("input", (err or {}).get("reason", "not_an_object"), str((err or {}).get("detail", "")),
                           (err or {}).get("locator"))
                continue
            yield obj


def trim_at_sentence(text: str, max_chars: int) -> str | None:
    """`text` if it fits, else its longest prefix of at most max_chars ending a sentence (., !, ? then a
    space or the end); None when the window holds no sentence end."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    window = text[:max_chars + 1]
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s|$)", window) if m.end() <= max_chars]
    return text[:ends[-1]].strip() if ends else None


# ----------------------------------------------------------------------------- mid_data
_RESERVED = {"source", "source_ids", "messages", "images", "tools", "generator", "answer", "answer_kind", "accuracy"}


def load_mid_data(samples_dir: str | Path, n: int, seed: int, root: str | Path = ".") -> GateOutcome:
    """Mid-training samples re-wrapped as SFT candidates (accuracy "code", module docstring)."""
    out, built, root = GateOutcome(), [], Path(root)
    for s in _jsonl_rows(out, Path(samples_dir)):
        out.read += 1
        loc = {"id": s.get("id")}
        try:
            validate_sample(s)
        except SampleError as e:
            out.reject("input", f"bad_mid_sample:{e.reason}", e.detail, loc)
            continue
        if missing := _missing_images(s["images"], root):
            out.reject("input", "missing_image", ", ".join(missing)[:300], loc)
            continue
        meta = s["meta"]
        extra = {(f"mid_{k}" if k in _RESERVED else k): v for k, v in sorted(meta.items())
                 if k not in ("generator", "answer", "answer_kind")}
        _build(out, built, loc, lambda s=s, meta=meta, extra=extra: sft_sample(
            "mid_data", list(dict.fromkeys([s["id"], *s["source_ids"]])), s["messages"], answer=str(meta["answer"]),
            answer_kind=meta["answer_kind"], accuracy="code", images=s["images"], tools=s["tools"],
            generator=meta["generator"], **{**extra, "mid_id": s["id"], "mid_family": s["family"],
                                            "mid_phase": s["phase"]}))
    return _finish(out, built, n, seed, "mid_data")


# ----------------------------------------------------------------------------- kg_qa
# relation -> (statement, question about the tail, question about the head), as the CPT writer renders them
_QA_TEMPLATES = {rel: (t[0], t[1], t[2]) for rel, t in TEMPLATES.items()}
_QA_TEMPLATES["is_a"] = ("{h} is classified as a {t}.", "What type of medical entity is {h}?",
                         "What type of medical entity is {h}?")


def _pattern(template: str) -> re.Pattern:
    rx = re.escape(template).replace(r"\{h\}", r"(?P<h>.+?)").replace(r"\{t\}", r"(?P<t>.+?)")
    return re.compile(rf"^{rx}$", re.IGNORECASE)      # the statement's first letter was capitalised


_PATTERNS = {rel: tuple(_pattern(x) for x in t) for rel, t in _QA_TEMPLATES.items()}


def parse_atomic(question: str, answer: str, relation: str) -> dict | None:
    """(head, tail, subject, answer entity, side) of a templated atomic QA pair, or None when the pair is
    not one of the CPT templates (an LLM-written pair, another relation)."""
    if relation not in _PATTERNS:
        return None
    stmt, q_tail, q_head = _PATTERNS[relation]
    m = stmt.match(" ".join(answer.split()))
    if not m:
        return None
    head, tail = m["h"].strip(), m["t"].strip()
    q = " ".join(question.split())
    subject = None
    for rx, key in ((q_tail, "h"), (q_head, "t")):
        if (qm := rx.match(q)) and key in qm.groupdict():
            subject = qm[key].strip()
            break
    if subject is None:
        return None
    norm = normalize_answer
    if norm(subject) == norm(head):
        return {"head": head, "tail": tail, "subject": subject, "answer": tail, "side": "tail"}
    if norm(subject) == norm(tail):
        return {"head": head, "tail": tail, "subject": subject, "answer": head, "side": "head"}
    return None


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def load_kg_qa(samples_dir: str | Path, n: int, seed: int, n_options: int = 4) -> GateOutcome:
    """The CPT stage's KG atomic QA as multiple choice (module docstring); accuracy "consensus"."""
    out = GateOutcome()
    parsed: list[tuple[dict, dict]] = []
    for s in _jsonl_rows(out, Path(samples_dir)):
        if s.get("task") != "atomic_qa":
            continue                   # other CPT tasks are not rows of this pool
        out.read += 1
        msgs, loc = s.get("messages") or [], {"id": s.get("id")}
        rel = str((s.get("meta") or {}).get("relation", ""))
        if len(msgs) != 2 or not all(isinstance(m.get("content"), str) for m in msgs):
            out.reject("input", "bad_messages", "atomic QA is one user question and one answer", loc)
            continue
        p = parse_atomic(msgs[0]["content"], msgs[1]["content"], rel)
        if p is None:
            out.reject("input", "unparsed_fact", f"{rel}: {msgs[0]['content'][:80]!r} / {msgs[1]['content'][:80]!r}",
                       loc)
            continue
        parsed.append((s, {**p, "relation": rel}))
    # what the pool states: entity -> entities linked to it by the relation, in either direction
    linked: dict[tuple[str, str], set[str]] = {}
    groups: dict[tuple[str, str], dict[str, str]] = {}     # (relation, side) -> {norm: answer as written}
    for _, p in parsed:
        h, t = normalize_answer(p["head"]), normalize_answer(p["tail"])
        linked.setdefault((p["relation"], h), set()).add(t)
        linked.setdefault((p["relation"], t), set()).add(h)
        groups.setdefault((p["relation"], p["side"]), {}).setdefault(normalize_answer(p["answer"]), p["answer"])
    built: list[dict] = []
    for s, p in parsed:
        subject, answer = normalize_answer(p["subject"]), normalize_answer(p["answer"])
        exclude = linked.get((p["relation"], subject), set()) | {subject, answer}
        pool = sorted(k for k in groups[(p["relation"], p["side"])] if k not in exclude)
        loc = {"id": s["id"], "relation": p["relation"]}
        if len(pool) < n_options - 1:
            out.reject("input", "too_few_distractors", f"{len(pool)} for {n_options - 1} ({p['relation']}, "
                       f"answer is the {p['side']})", loc)
            continue
        rng = np.random.default_rng(stable_seed(seed, "sft_kg_qa", s["id"]))
        picks = [groups[(p["relation"], p["side"])][pool[i]] for i in
                 sorted(rng.choice(len(pool), size=n_options - 1, replace=False).tolist())]
        gold = int(rng.integers(n_options))
        options = [_cap(x) for x in picks[:gold] + [p["answer"]] + picks[gold:]]
        question = s["messages"][0]["content"].strip()
        body = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(options))
        msgs = [{"role": "user", "content": f"{question}\n{body}\n{CHOICE_INSTRUCTION}"},
                {"role": "assistant", "content": f"{LETTERS[gold]}. {options[gold]}"}]
        _build(out, built, loc, lambda s=s, p=p, msgs=msgs, options=options, gold=gold, question=question: sft_sample(
            "kg_qa", list(dict.fromkeys([s["id"], *(s.get("source_ids") or [])])), msgs, answer=options[gold],
            answer_kind="choice", accuracy="consensus", generator=str(s.get("meta", {}).get("generator", "local")),
            question=question, options=options, gold_index=gold, relation=p["relation"],
            fact=s["messages"][1]["content"], cpt_id=s["id"]))
    return _finish(out, built, n, seed, "kg_qa")


# ----------------------------------------------------------------------------- medquad
def load_medquad_pool(kept_dir: str | Path, n: int, seed: int, max_answer_chars: int = 600) -> GateOutcome:
    """MedQuAD QA pairs (kg_paths.load_medquad: documents without a question/answer split are not pairs)
    with answers cut at a sentence end; accuracy "consensus"."""
    items = load_medquad(_require(Path(kept_dir), "quality kept directory"), ALL, seed, max_answer_chars=ALL)
    out, built = GateOutcome(read=len(items)), []
    for it in items:
        loc = {"id": it["id"]}
        answer = trim_at_sentence(it["answer"], max_answer_chars)
        if answer is None:
            out.reject("input", "no_sentence_end", f"no sentence ends in the first {max_answer_chars} chars", loc)
            continue
        msgs = [{"role": "user", "content": it["question"]}, {"role": "assistant", "content": answer}]
        _build(out, built, loc, lambda it=it, msgs=msgs, answer=answer: sft_sample(
            "medquad", it["source_ids"], msgs, answer=answer, answer_kind="open", accuracy="consensus",
            question=it["question"], trimmed=answer != it["answer"].strip()))
    return _finish(out, built, n, seed, "medquad")


# ----------------------------------------------------------------------------- vqa_rad
def load_vqa_rad_pool(path: str | Path, n: int, seed: int, image_store: str | Path = "data/collect/images",
                      root: str | Path = ".") -> GateOutcome:
    """VQA-RAD train, closed yes/no as judgement and the rest as fill; accuracy "consensus"."""
    items = load_vqa_rad(_require(Path(path), "VQA-RAD train set"), ALL, seed, image_store, root)
    out, built = GateOutcome(read=len(items)), []
    for it in items:
        loc = {"id": it["id"]}
        if it.get("image_error"):
            out.reject("input", "missing_image", it["image_error"], loc)
            continue
        if not it["question"] or not it["answer"]:
            out.reject("input", "empty_field", "question or answer is empty", loc)
            continue
        judgement = it["answer_kind"] == "judgement"
        prompt = f"{it['question']}\n{YES_NO_INSTRUCTION if judgement else FILL_INSTRUCTION}"
        msgs = [{"role": "user", "content": [image_part(), text_part(prompt)]},
                {"role": "assistant", "content": it["answer"]}]
        extra: dict[str, Any] = {"question": it["question"], "organ_context": it.get("context", "")}
        if judgement:
            extra.update(options=["yes", "no"], gold_index=["yes", "no"].index(it["answer"].casefold()))
        _build(out, built, loc, lambda it=it, msgs=msgs, extra=extra: sft_sample(
            "vqa_rad", it["source_ids"], msgs, answer=it["answer"], answer_kind=it["answer_kind"],
            accuracy="consensus", images=it["images"], **extra))
    return _finish(out, built, n, seed, "vqa_rad")


# ----------------------------------------------------------------------------- ocr
def load_ocr(samples_dir: str | Path, n: int, seed: int, root: str | Path = ".") -> GateOutcome:
    """The CPT stage's lab-report QA conversations (task ocr_qa); accuracy "code"."""
    out, built, root = GateOutcome(), [], Path(root)
    for s in _jsonl_rows(out, Path(samples_dir)):
        if s.get("task") != "ocr_qa":
            continue
        out.read += 1
        loc, msgs, images = {"id": s.get("id")}, s.get("messages") or [], s.get("images") or []
        if not msgs or msgs[-1].get("role") != "assistant" or not isinstance(msgs[-1].get("content"), str):
            out.reject("input", "bad_messages", "the last turn must be the assistant's text answer", loc)
            continue
        if not images:
            out.reject("input", "missing_image", "an OCR conversation needs its rendered report", loc)
            continue
        if missing := _missing_images(images, root):
            out.reject("input", "missing_image", ", ".join(missing)[:300], loc)
            continue
        meta = s.get("meta") or {}
        _build(out, built, loc, lambda s=s, msgs=msgs, images=images, meta=meta: sft_sample(
            "ocr", list(dict.fromkeys([s["id"], *(s.get("source_ids") or [])])), msgs,
            answer=msgs[-1]["content"], answer_kind="fill", accuracy="code", images=images,
            generator=str(meta.get("generator", "local")), cpt_id=s["id"], lang=meta.get("lang", "en"),
            turns=sum(m.get("role") == "assistant" for m in msgs)))
    return _finish(out, built, n, seed, "ocr")


# ----------------------------------------------------------------------------- pubmedqa
def pubmedqa_context(rec: dict) -> str:
    """The abstract's sections, each under its label ("Methods: ..."), as the benchmark shows them."""
    labels = rec.get("LABELS") or []
    parts = []
    for i, c in enumerate(rec.get("CONTEXTS") or []):
        if isinstance(c, str) and c.strip():
            lab = labels[i] if i < len(labels) and isinstance(labels[i], str) else ""
            parts.append(f"{lab.title()}: {c.strip()}" if lab else c.strip())
    return "\n".join(parts)


def load_pubmedqa(pqal_path: str | Path, test_path: str | Path, n: int, seed: int) -> GateOutcome:
    """PubMedQA's labelled set minus the test PMIDs (module docstring); accuracy "consensus"."""
    pqal = json.loads(_require(Path(pqal_path), "PubMedQA ori_pqal.json").read_text(encoding="utf-8"))
    test = json.loads(_require(Path(test_path), "PubMedQA test_ground_truth.json").read_text(encoding="utf-8"))
    if not isinstance(pqal, dict) or not isinstance(test, dict):
        raise ValueError("PubMedQA files must be JSON objects keyed by PMID")
    out, built = GateOutcome(), []
    for pmid in sorted(set(pqal) - set(test)):       # the test ids never become rows
        out.read += 1
        rec, loc = pqal[pmid], {"pmid": pmid}
        if not isinstance(rec, dict):
            out.reject("input", "not_an_object", type(rec).__name__, loc)
            continue
        question = str(rec.get("QUESTION") or "").strip()
        label = str(rec.get("final_decision") or "").strip().casefold()
        context = pubmedqa_context(rec)
        if not question or not context:
            out.reject("input", "empty_field", "no question" if not question else "no context", loc)
            continue
        if label not in PUBMEDQA_LABELS:
            out.reject("input", "bad_label", f"final_decision {rec.get('final_decision')!r}", loc)
            continue
        prompt = f"Context:\n{context}\n\nQuestion: {question}"
        long_answer = " ".join(str(rec.get("LONG_ANSWER") or "").split())
        msgs = [{"role": "user", "content": f"{prompt}\n{PUBMEDQA_INSTRUCTION}"},
                {"role": "assistant", "content": f"{label.capitalize()}. {long_answer}".strip()}]
        _build(out, built, loc, lambda pmid=pmid, msgs=msgs, label=label, prompt=prompt: sft_sample(
            "pubmedqa", [f"pubmedqa-pqal-{pmid}"], msgs, answer=label, answer_kind="judgement",
            accuracy="consensus", question=prompt, options=list(PUBMEDQA_LABELS),
            gold_index=PUBMEDQA_LABELS.index(label), pmid=pmid))
    return _finish(out, built, n, seed, "pubmedqa")


# ----------------------------------------------------------------------------- all pools
def load_pools(params: PoolParams, project_root: str | Path, data_root: str | Path, seed: int) -> dict[str, GateOutcome]:
    """{pool: GateOutcome} for params.sources, in POOLS order."""
    root, data = Path(project_root), Path(data_root)
    n = params.max_items
    loaders: dict[str, Callable[[], GateOutcome]] = {
        "mid_data": lambda: load_mid_data(root / params.mid_samples, n["mid_data"], seed, root),
        "kg_qa": lambda: load_kg_qa(root / params.cpt_samples, n["kg_qa"], seed, params.kg_qa_options),
        "medquad": lambda: load_medquad_pool(root / params.quality_kept, n["medquad"], seed, params.max_answer_chars),
        "vqa_rad": lambda: load_vqa_rad_pool(data / params.vqa_rad_train, n["vqa_rad"], seed, params.image_store,
                                             root),
        "ocr": lambda: load_ocr(root / params.cpt_samples, n["ocr"], seed, root),
        "pubmedqa": lambda: load_pubmedqa(data / params.pubmedqa_dir / "ori_pqal.json",
                                          data / params.pubmedqa_dir / "test_ground_truth.json", n["pubmedqa"], seed),
    }
    return {p: loaders[p]() for p in POOLS if p in params.sources}
