"""Multi-expert consistency scoring of SFT candidates (paper §5.1.1, "Human annotations"): several independent
experts answer each candidate's prompt; the share that agrees with the candidate's answer is its consensus.

    from tasks.sft_synthesis.consensus import ConsensusParams, score_candidates, split_by_consensus
    records = score_candidates(candidates, experts, probe, ConsensusParams())
    kept, escalated = split_by_consensus(candidates, records, ConsensusParams())
    records[0]   # {"id", "kind", "score": 0.75, "votes": {"ckpt-a": "B", "llm": "C", "checkpoint": "B", ...},
                 #  "agree": 3, "total": 4, "pass_rate": 0.41, "abstained": {"llm-2": "request_failed: ..."}}

Which candidates: those whose answer no code vouches for (meta.accuracy != "code"; a pool marks them
"consensus", pending). Code-verified candidates are not asked about and pass through `split_by_consensus`.

The experts (any `mid_synthesis.experts.Expert`: CheckpointExpert, EndpointExpert, or a test's fake) each get
one `Query` per candidate: a system prompt per answer kind asking for a final "Answer: ..." line, the
conversation up to the final answer as user text (one user turn: its text; several: "User: / Assistant: /
Tool:" blocks), and the candidate's images. A reply is read as evaluation reads it (mid_synthesis.verify.
verify_outcome over eval.parsing): choice -> the option letter, judgement -> yes/no/maybe, fill -> the answer
phrase (equal after normalisation, as numbers with units, or a short phrase containing it); open -> the
answer after any reasoning (the rest of an "Answer:" line when there is one), agreeing when its SQuAD token F1 with the candidate's answer is >= open_min_f1.
A failed request (Reply.text None) and a reply with no readable answer are not votes: the expert abstains
(votes[expert] = None, the reason in `abstained`). Disagreement is a readable answer that differs.

The current checkpoint (`probe`: anything with CheckpointModel.option_logprobs, or a ChoiceProbe, whose
`.model` is used) is asked through the eval harness's option log-likelihoods for choice and judgement
candidates (the options are meta.options, or yes/no(/maybe) for a judgement without them). Its option
distribution p gives two things:
- one vote, its greedy option (argmax p, ties to the first): one model is one expert; counting k sampled
  answers as k votes would let a single checkpoint outvote the independent experts the paper asks for;
- pass_rate = p(candidate's option), the checkpoint's expected pass@1 when sampling over the options (the
  exact expectation of the sampled votes, without sampling noise): later steps use it as difficulty.
pass_rate is None where the probe is not asked (open/fill, no probe) or the image could not be read.

Decision (`split_by_consensus`): total votes < min_votes -> escalated, reason "too_few_votes" (consistency
cannot be determined); score = agree / total < keep_min -> escalated, reason "low_consensus"; otherwise kept
with meta.accuracy "consensus" and meta.consensus = the record. Escalated samples carry meta.consensus and
meta.escalation (the reason) and go to the human queue (review_queue.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from eval.parsing import extract_open, parse_label, prepare
from eval.scoring import token_f1
from tasks.mid_synthesis.experts import LETTERS, ChoiceQuestion, Expert, Query
from tasks.mid_synthesis.verify import OutcomeParams, split_reply, verify_outcome

SYSTEM = {
    "choice": "You are a medical expert. Answer the multiple-choice question. Reason briefly, then end with a "
              "line 'Answer: <letter>'.",
    "judgement": "You are a medical expert. Answer the question. Reason briefly, then end with a line "
                 "'Answer: yes', 'Answer: no' or, only where the question allows it, 'Answer: maybe'.",
    "fill": "You are a medical expert. Answer the question. Reason briefly, then end with a line "
            "'Answer: <short phrase>'.",
    "open": "You are a medical expert. Answer the question accurately and concisely. End with a line "
            "'Answer: <your answer>'.",
}


@dataclasses.dataclass
class ConsensusParams:
    keep_min: float = 0.75           # 3 of 4, or all of 3: SFT is the highest-quality tier (§5.1), a split goes to review
    min_votes: int = 2               # one readable answer is an opinion, not a consensus
    open_min_f1: float = 0.4         # SQuAD token F1 at which two free answers state the same thing
    probe_votes: bool = True         # the checkpoint's greedy option counts as one vote
    probe_name: str = "checkpoint"   # its key in `votes`
    max_vote_chars: int = 300        # an open vote is kept this long in the record (for the reviewer)
    outcome: OutcomeParams = dataclasses.field(default_factory=OutcomeParams)   # fill: span-containment slack

    def __post_init__(self):
        if not 0.0 < self.keep_min <= 1.0:
            raise ValueError(f"keep_min must be in (0, 1], got {self.keep_min}")
        if self.min_votes < 1:
            raise ValueError("min_votes must be >= 1")
        if isinstance(self.outcome, dict):
            self.outcome = OutcomeParams(**self.outcome)


# ----------------------------------------------------------------------------- what is asked
def _text(content: Any) -> str:
    return content if isinstance(content, str) else "".join(p.get("text", "") for p in content or []
                                                             if isinstance(p, dict) and p.get("type") == "text")


def prompt_text(sample: dict) -> str:
    """The conversation before the final answer: the user's text for one turn, labelled blocks for several."""
    before = sample["messages"][:-1]
    users = [m for m in before if m.get("role") == "user"]
    if len(before) == 1 and users:
        return _text(users[0]["content"]).strip()
    blocks = []
    for m in before:
        role = m.get("role")
        if role == "system":
            continue
        label = {"user": "User", "assistant": "Assistant"}.get(role, f"Tool ({m.get('name', 'tool')})")
        body = _text(m.get("content")).strip()
        if m.get("tool_calls"):
            body = (body + "\n" if body else "") + "; ".join(
                f"calls {c['function']['name']}({c['function']['arguments']})" for c in m["tool_calls"])
        blocks.append(f"{label}: {body}")
    return "\n\n".join(blocks)


def consensus_query(sample: dict) -> Query:
    kind = sample["meta"]["answer_kind"]
    return Query(SYSTEM[kind], prompt_text(sample), tuple(i["path"] for i in sample["images"]))


def answer_options(sample: dict) -> tuple[tuple[str, ...], int] | None:
    """(options, index of the candidate's answer) of a choice or judgement candidate; None for fill/open.
    Raises ValueError when a choice candidate lacks its options or a judgement answer is no label."""
    meta, kind = sample["meta"], sample["meta"]["answer_kind"]
    if kind == "choice":
        opts, gold = meta.get("options"), meta.get("gold_index")
        if not isinstance(opts, list) or not isinstance(gold, int) or not 0 <= gold < len(opts) <= len(LETTERS):
            raise ValueError(f"{sample['id']}: a choice candidate needs meta.options and meta.gold_index")
        return tuple(str(o) for o in opts), gold
    if kind == "judgement":
        label = parse_label(str(meta["answer"])).value
        opts = tuple(str(o).casefold() for o in meta.get("options") or ("yes", "no", "maybe")[:2 + (label == "maybe")])
        if label not in opts:
            raise ValueError(f"{sample['id']}: judgement answer {meta['answer']!r} is not one of {opts}")
        return opts, opts.index(label)
    return None


# ----------------------------------------------------------------------------- reading a reply
def read_vote(text: str | None, sample: dict, params: ConsensusParams) -> tuple[str | None, bool, str | None]:
    """(the answer read, whether it agrees with the candidate's, why there is none) for one reply."""
    if text is None:
        return None, False, "request_failed"
    meta, kind = sample["meta"], sample["meta"]["answer_kind"]
    if kind == "open":
        _, answer = split_reply(text)
        body, failure = prepare(answer)
        if failure:
            return None, False, f"unparsed:{failure}"
        stated = extract_open(body)       # "Answer: ..." line / tag: the answer itself, not the marker
        if stated.rule in ("answer_tag", "boxed", "answer_statement"):
            body = stated.value
        f1 = token_f1(body, str(meta["answer"]))[0]
        return body[:params.max_vote_chars], f1 >= params.open_min_f1, None
    if kind == "fill":
        v = verify_outcome(text, str(meta["answer"]), "fill", params=params.outcome)
    else:
        opts, gold = answer_options(sample)
        gold_value = LETTERS[gold] if kind == "choice" else opts[gold]
        v = verify_outcome(text, gold_value, kind, options=opts if kind == "choice" else (), params=params.outcome)
    if v.parsed is None:
        return None, False, v.reason or "unparsed"
    return v.parsed, v.ok, None


# ----------------------------------------------------------------------------- the checkpoint probe
def _logprob_source(probe: Any):
    if hasattr(probe, "option_logprobs"):
        return probe.option_logprobs
    if hasattr(getattr(probe, "model", None), "option_logprobs"):
        return probe.model.option_logprobs
    raise TypeError(f"probe {type(probe).__name__} has no option_logprobs (CheckpointModel or ChoiceProbe)")


def option_distributions(samples: Sequence[dict], probe: Any) -> dict[str, list[float] | None]:
    """{sample id: the checkpoint's softmax over the options} for the choice/judgement samples."""
    asked = [(s, answer_options(s)) for s in samples]
    asked = [(s, o) for s, o in asked if o is not None]
    if not asked or probe is None:
        return {}
    qs = [ChoiceQuestion(str(s["meta"].get("question") or prompt_text(s)), opts, gold,
                         tuple(i["path"] for i in s["images"]), s["id"]) for s, (opts, gold) in asked]
    rows = _logprob_source(probe)(qs)
    if len(rows) != len(qs):
        raise RuntimeError(f"probe answered {len(rows)} of {len(qs)} questions")
    out: dict[str, list[float] | None] = {}
    for (s, (opts, _)), lps in zip(asked, rows):
        if lps is None or len(lps) != len(opts):
            out[s["id"]] = None
            continue
        x = np.asarray(lps, dtype=np.float64)
        p = np.exp(x - x.max())
        out[s["id"]] = (p / p.sum()).tolist()
    return out


def pass_rates(samples: Sequence[dict], probe: Any) -> dict[str, float | None]:
    """{sample id: p(the sample's answer option) under the checkpoint}, None where it could not be asked
    (open/fill answers, no probe, unreadable image). Usable on code-verified samples as difficulty too."""
    dist = option_distributions(samples, probe)
    out: dict[str, float | None] = {}
    for s in samples:
        p = dist.get(s["id"])
        out[s["id"]] = None if p is None else round(p[answer_options(s)[1]], 6)
    return out


# ----------------------------------------------------------------------------- scoring
def needs_consensus(sample: dict) -> bool:
    return sample["meta"].get("accuracy") != "code"


def score_candidates(candidates: Sequence[dict], experts: Sequence[Expert], probe: Any,
                     params: ConsensusParams) -> list[dict]:
    """One consensus record per candidate that is not code-verified, in input order (module docstring)."""
    names = [e.name for e in experts] + ([params.probe_name] if probe is not None and params.probe_votes else [])
    if len(set(names)) != len(names):
        raise ValueError(f"expert names must be distinct (the probe votes as {params.probe_name!r}): {names}")
    todo = [c for c in candidates if needs_consensus(c)]
    if len({c["id"] for c in todo}) != len(todo):
        raise ValueError("candidate ids must be distinct")
    queries = [consensus_query(c) for c in todo]
    replies: dict[str, list] = {}
    for e in experts:
        got = e.answer(queries) if queries else []
        if len(got) != len(queries):
            raise RuntimeError(f"expert {e.name} answered {len(got)} of {len(queries)} queries")
        replies[e.name] = got
    dist = option_distributions(todo, probe) if probe is not None else {}
    records = []
    for i, c in enumerate(todo):
        votes: dict[str, str | None] = {}
        abstained: dict[str, str] = {}
        agree = total = 0
        for e in experts:
            r = replies[e.name][i]
            value, ok, why = read_vote(r.text, c, params)
            votes[e.name] = value
            if value is None:
                abstained[e.name] = r.failure or why or "unparsed"
                continue
            total += 1
            agree += ok
        opts = answer_options(c)
        p = dist.get(c["id"])
        if opts is not None and probe is not None and params.probe_votes:
            if p is None:
                votes[params.probe_name] = None
                abstained[params.probe_name] = "probe_unavailable"
            else:
                best = max(range(len(p)), key=lambda j: (p[j], -j))
                votes[params.probe_name] = LETTERS[best] if c["meta"]["answer_kind"] == "choice" else opts[0][best]
                total += 1
                agree += best == opts[1]
        records.append({"id": c["id"], "kind": c["meta"]["answer_kind"], "score": agree / total if total else 0.0,
                        "votes": votes, "agree": agree, "total": total,
                        "pass_rate": None if p is None else round(p[opts[1]], 6), "abstained": abstained})
    return records


def decide(record: dict, params: ConsensusParams) -> str | None:
    """None (keep) or the escalation reason."""
    if record["total"] < params.min_votes:
        return "too_few_votes"
    if record["agree"] < params.keep_min * record["total"] - 1e-9:      # score < keep_min, without float drift
        return "low_consensus"
    return None


def split_by_consensus(candidates: Sequence[dict], records: Sequence[dict],
                       params: ConsensusParams) -> tuple[list[dict], list[dict]]:
    """(kept, escalated): code-verified candidates pass unchanged; the rest by their record (module
    docstring). A candidate needing consensus without a record is an error, never a silent drop."""
    by_id = {r["id"]: r for r in records}
    kept, escalated = [], []
    for c in candidates:
        if not needs_consensus(c):
            kept.append(c)
            continue
        rec = by_id.get(c["id"])
        if rec is None:
            raise ValueError(f"{c['id']}: no consensus record (score_candidates skipped it or records are stale)")
        reason = decide(rec, params)
        if reason is None:
            kept.append({**c, "meta": {**c["meta"], "accuracy": "consensus", "consensus": rec}})
        else:
            escalated.append({**c, "meta": {**c["meta"], "consensus": rec, "escalation": reason}})
    return kept, escalated


def consensus_histogram(records: Sequence[dict], bins: int = 10) -> dict:
    """Counts of consensus scores in `bins` equal bins over [0, 1] (the last includes 1.0), computed from
    agree/total exactly; records without votes are counted apart (they have no score)."""
    if bins < 1:
        raise ValueError("bins must be >= 1")
    counts = [0] * bins
    scored = [r for r in records if r["total"] > 0]
    for r in scored:
        counts[min(r["agree"] * bins // r["total"], bins - 1)] += 1
    return {"edges": [round(i / bins, 6) for i in range(bins + 1)], "counts": counts, "scored": len(scored),
            "no_votes": len(records) - len(scored),
            "mean_score": round(sum(r["agree"] / r["total"] for r in scored) / len(scored), 6) if scored else None,
            "unanimous": sum(r["agree"] == r["total"] for r in scored)}
