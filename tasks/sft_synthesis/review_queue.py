"""The human annotation round trip of escalated SFT candidates (paper §5.1.1): export a Label Studio project,
import its labels back as samples.

    from tasks.sft_synthesis.review_queue import export_queue, import_labels
    summary = export_queue(escalated, records, "data/sft_data")   # data/sft_data/review_queue/{tasks,label_config}
    # Label Studio: new project, Labeling Setup <- label_config.xml, Import <- tasks.json; annotate;
    # Export -> JSON; save it as e.g. data/sft_labels/export.json
    out = import_labels("data/sft_labels/export.json", escalated)
    out.kept        # accepted samples, meta.accuracy "human", meta.review
    out.rejected    # gate "human": rejected_by_reviewer | awaiting_review (every escalated sample is one or the other)
    out.label_errors  # problems of the label file itself: unknown_sample_id, duplicate_task, no_verdict, ...

Export. One task per escalated sample, sorted by sample id, task ids 1..n (the same queue exports the same
file). Task `data`: sample_id, source, answer_kind, escalation (the reason), score, pass_rate, question (the
conversation before the answer, consensus.prompt_text), image_html (an <img> per image, through Label
Studio's local-file serving: start it with LOCAL_FILES_SERVING_ENABLED=true and
LOCAL_FILES_DOCUMENT_ROOT=<project root>), images (the project-relative paths), candidates (Label Studio's
dynamic choices, [{"value", "hint"}]: the candidate's answer first, then each distinct expert answer with the
experts who gave it in the hint), candidate_answer, and disagreement (a one-line summary of the votes).
The labeling config shows the image (HyperText: a text-only task shows nothing there), the question and
the disagreement, a single-choice `answer` over the candidates, a `corrected` TextArea and a required
`verdict` (accept / reject).

Import. The file is Label Studio's JSON export: a list of tasks, each with `data` (our sample_id) and
`annotations` [{id, completed_by, result: [{from_name, to_name, type, value: {choices | text}}],
was_cancelled, created_at, updated_at, ...}]. Per task, the latest annotation not cancelled (updated_at,
then id) decides; a task whose annotations are all cancelled is unlabeled. The answer of an accepted
sample: the corrected text when non-empty, else the chosen candidate, else (nothing picked) the candidate's
own answer, which the reviewer thereby confirms. A chosen value must be one the task offered (recomputed
from the sample's meta.consensus, the record split_by_consensus attached). A choice sample's answer must name one of its options (a
letter, "C. text" or the text) and becomes "C. <option>"; a judgement's must read as one of its labels.
When the answer changes, the final assistant turn's content is replaced (samples.with_messages) and its
reasoning_content dropped (the reasoning argued for the old answer); meta.answer (and gold_index) follow.
Every escalated sample ends up kept (accepted) or rejected (gate "human": rejected_by_reviewer, or
awaiting_review when no usable label exists), so read == kept + rejected; a missing labels file means
everything awaits review. Problems of the file itself are `label_errors` ({task, sample_id, reason,
detail}), kept apart so they never count as samples; the sample a bad label was meant for awaits review.
"""

from __future__ import annotations

import dataclasses
import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.parsing import normalize_answer, parse_choice, parse_label
from tasks.common.io import write_json
from tasks.mid_synthesis.experts import LETTERS
from tasks.sft_synthesis.consensus import answer_options, prompt_text
from tasks.sft_synthesis.samples import GateOutcome, with_messages

QUEUE_DIR = "review_queue"
VERDICTS = ("accept", "reject")
LABEL_CONFIG = """<View>
  <Header value="Check the candidate answer: pick or correct the answer, then accept or reject the sample"/>
  <HyperText name="image" value="$image_html" inline="true"/>
  <Text name="question" value="$question"/>
  <Header value="Why it is here"/>
  <Text name="disagreement" value="$disagreement"/>
  <Header value="Answers: the candidate's first, then the experts'"/>
  <Choices name="answer" toName="question" choice="single" showInline="false" value="$candidates"/>
  <Header value="Corrected answer (replaces the choice when filled)"/>
  <TextArea name="corrected" toName="question" rows="4" maxSubmissions="1" editable="true"/>
  <Header value="Verdict"/>
  <Choices name="verdict" toName="question" choice="single" required="true">
    <Choice value="accept"/>
    <Choice value="reject"/>
  </Choices>
</View>
"""


@dataclasses.dataclass
class ReviewOutcome(GateOutcome):
    """A GateOutcome over the escalated samples, plus the label file's own problems."""
    label_errors: list[dict] = dataclasses.field(default_factory=list)

    def label_error(self, task: Any, sample_id: Any, reason: str, detail: str = "") -> None:
        self.label_errors.append({"task": task, "sample_id": sample_id, "reason": reason, "detail": detail[:300]})


# ----------------------------------------------------------------------------- answers as the reviewer sees them
def shown_answer(sample: dict) -> str:
    """The candidate's answer as offered: "C. <option>" for choice, the label for judgement, else the answer."""
    meta = sample["meta"]
    if meta["answer_kind"] == "choice":
        opts, gold = answer_options(sample)
        return f"{LETTERS[gold]}. {opts[gold]}"
    if meta["answer_kind"] == "judgement":
        opts, gold = answer_options(sample)
        return opts[gold]
    return str(meta["answer"]).strip()


def _shown_vote(sample: dict, vote: str) -> str:
    if sample["meta"]["answer_kind"] == "choice":
        opts, _ = answer_options(sample)
        i = LETTERS.find(vote)
        return f"{vote}. {opts[i]}" if len(vote) == 1 and 0 <= i < len(opts) else vote
    return vote.strip()


def candidate_choices(sample: dict, record: dict) -> list[dict]:
    """[{"value", "hint"}]: the candidate's answer, then each distinct expert answer (same normalised text
    = one choice), in vote order, with the experts who gave it."""
    order: list[str] = [shown_answer(sample)]
    who: dict[str, list[str]] = {normalize_answer(order[0]): []}
    for expert, vote in record["votes"].items():
        if vote is None:
            continue
        shown = _shown_vote(sample, str(vote))
        key = normalize_answer(shown)
        if not key:
            continue
        if key not in who:
            who[key] = []
            order.append(shown)
        who[key].append(expert)
    out = []
    for i, value in enumerate(order):
        experts = who[normalize_answer(value)]
        hint = ("candidate answer" if i == 0 else "expert answer") + (f"; given by {', '.join(experts)}"
                                                                      if experts else "; no expert gave it")
        out.append({"value": value, "hint": hint})
    return out


def disagreement(record: dict, reason: str) -> str:
    votes = ", ".join(f"{k}: {v if v is not None else '(no answer)'}" for k, v in record["votes"].items())
    rate = "" if record.get("pass_rate") is None else f"; checkpoint pass rate {record['pass_rate']:.2f}"
    return (f"{reason}: {record['agree']} of {record['total']} readable votes agree with the candidate "
            f"(score {record['score']:.2f}){rate}. Votes: {votes or 'none'}")


# ----------------------------------------------------------------------------- export
def export_queue(escalated: Sequence[dict], records: Sequence[dict], out_dir: str | Path) -> dict:
    """Write <out_dir>/review_queue/tasks.json and label_config.xml (module docstring); a summary back."""
    by_id = {r["id"]: r for r in records}
    tasks = []
    for n, s in enumerate(sorted(escalated, key=lambda s: s["id"]), 1):
        rec = by_id.get(s["id"]) or s["meta"].get("consensus")
        if rec is None:
            raise ValueError(f"{s['id']}: escalated without a consensus record")
        reason = s["meta"].get("escalation", "escalated")
        paths = [i["path"] for i in s["images"]]
        tasks.append({"id": n, "data": {
            "sample_id": s["id"], "source": s["family"], "answer_kind": s["meta"]["answer_kind"],
            "escalation": reason, "score": rec["score"], "pass_rate": rec.get("pass_rate"),
            "question": prompt_text(s), "images": paths,
            "image_html": "".join(f'<img src="/data/local-files/?d={html.escape(p, quote=True)}" '
                                  f'style="max-width:100%"/>' for p in paths),
            "candidates": candidate_choices(s, rec), "candidate_answer": shown_answer(s),
            "disagreement": disagreement(rec, reason)}})
    qdir = Path(out_dir) / QUEUE_DIR
    qdir.mkdir(parents=True, exist_ok=True)
    write_json(qdir / "tasks.json", tasks)
    (qdir / "label_config.xml").write_text(LABEL_CONFIG, encoding="utf-8")
    reasons: dict[str, int] = {}
    for t in tasks:
        reasons[t["data"]["escalation"]] = reasons.get(t["data"]["escalation"], 0) + 1
    return {"tasks": len(tasks), "with_images": sum(bool(t["data"]["images"]) for t in tasks),
            "by_reason": dict(sorted(reasons.items())),
            # relative to the output directory: a stage writes into a temporary directory first
            "tasks_path": f"{QUEUE_DIR}/tasks.json", "config_path": f"{QUEUE_DIR}/label_config.xml"}


# ----------------------------------------------------------------------------- import
def _latest(annotations: Any) -> dict | None:
    live = [a for a in annotations or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not live:
        return None
    return max(live, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""),
                                    a.get("id") if isinstance(a.get("id"), int) else -1))


def _fields(annotation: dict) -> tuple[str | None, str | None, str]:
    """(verdict, chosen answer, corrected text) of one annotation's result."""
    verdict = chosen = None
    corrected = ""
    for r in annotation.get("result") or []:
        if not isinstance(r, dict) or not isinstance(r.get("value"), dict):
            continue
        v = r["value"]
        if r.get("from_name") == "verdict" and v.get("choices"):
            verdict = str(v["choices"][0])
        elif r.get("from_name") == "answer" and v.get("choices"):
            chosen = str(v["choices"][0])
        elif r.get("from_name") == "corrected" and v.get("text"):
            text = v["text"]
            corrected = "\n".join(map(str, text)) if isinstance(text, list) else str(text)
    return verdict, chosen, corrected.strip()


def _apply(sample: dict, answer: str, source: str, review: dict) -> dict | str:
    """The accepted sample with `answer` as its final content, or the reason it cannot be applied."""
    meta, kind = sample["meta"], sample["meta"]["answer_kind"]
    base = {**sample, "meta": {k: v for k, v in meta.items() if k != "escalation"}}
    msgs = list(sample["messages"])
    extra: dict[str, Any] = {}
    if normalize_answer(answer) == normalize_answer(shown_answer(sample)):
        changed = False                 # the reviewer confirmed the candidate: its full answer stays
    elif kind == "choice":
        opts, _ = answer_options(sample)
        got = parse_choice(answer, {LETTERS[i]: o for i, o in enumerate(opts)})
        if not got.ok:
            return "answer_not_an_option"
        i = LETTERS.index(got.value)
        changed, content = True, f"{got.value}. {opts[i]}"
        extra = {"answer": opts[i], "gold_index": i}
    elif kind == "judgement":
        opts, _ = answer_options(sample)
        label = parse_label(answer, opts).value
        if label is None:
            return "answer_not_a_label"
        changed, content = True, answer
        extra = {"answer": label, "gold_index": opts.index(label)}
    else:
        changed, content = True, answer
        extra = {"answer": answer}
    if changed:
        final = {k: v for k, v in msgs[-1].items() if k != "reasoning_content"}
        msgs[-1] = {**final, "content": content}
    return with_messages(base, msgs, accuracy="human", review={**review, "answer_source": source,
                                                               "changed": changed}, **extra)


def import_labels(labels_path: str | Path, escalated: Sequence[dict]) -> ReviewOutcome:
    """Escalated samples resolved by a Label Studio JSON export (module docstring)."""
    out = ReviewOutcome(read=len(escalated))
    by_id = {s["id"]: s for s in escalated}
    labels: dict[str, tuple[Any, dict]] = {}       # sample id -> (task id, annotation)
    path = Path(labels_path)
    tasks = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    if not isinstance(tasks, list):
        raise ValueError(f"{path}: a Label Studio JSON export is a list of tasks, got {type(tasks).__name__}")
    seen: set[str] = set()
    for i, t in enumerate(tasks):
        task_id = t.get("id", i) if isinstance(t, dict) else i
        sid = (t.get("data") or {}).get("sample_id") if isinstance(t, dict) else None
        if not isinstance(sid, str):
            out.label_error(task_id, None, "no_sample_id", "task without data.sample_id")
            continue
        if sid not in by_id:
            out.label_error(task_id, sid, "unknown_sample_id", "not among the escalated samples")
            continue
        if sid in seen:
            out.label_error(task_id, sid, "duplicate_task", "the sample's first task decides")
            continue
        seen.add(sid)
        ann = _latest(t.get("annotations"))
        if ann is not None:
            labels[sid] = (task_id, ann)
    for s in escalated:
        loc = {"id": s["id"], "source": s["family"]}
        if s["id"] not in labels:
            out.reject("human", "awaiting_review", "no label yet", loc)
            continue
        task_id, ann = labels[s["id"]]
        verdict, chosen, corrected = _fields(ann)
        review = {"task_id": task_id, "annotation_id": ann.get("id"), "annotator": ann.get("completed_by")}
        if verdict not in VERDICTS:
            out.label_error(task_id, s["id"], "no_verdict" if verdict is None else "bad_verdict", str(verdict))
            out.reject("human", "awaiting_review", "the label has no usable verdict", loc)
            continue
        if verdict == "reject":
            out.reject("human", "rejected_by_reviewer", "", {**loc, **review})
            continue
        offered = {c["value"] for c in candidate_choices(s, s["meta"].get("consensus") or {"votes": {}})}
        if corrected:
            answer, source = corrected, "corrected"
        elif chosen is not None:
            if chosen not in offered:
                out.label_error(task_id, s["id"], "unknown_choice", chosen)
                out.reject("human", "awaiting_review", "the chosen answer was not offered", loc)
                continue
            answer, source = chosen, "choice"
        else:
            answer, source = shown_answer(s), "candidate"
        done = _apply(s, answer, source, review)
        if isinstance(done, str):
            out.label_error(task_id, s["id"], done, answer[:200])
            out.reject("human", "awaiting_review", f"the answer cannot be applied: {done}", loc)
            continue
        out.kept.append(done)
    return out
