"""Multi-expert consensus: hand-computed votes, agreement per answer kind, the checkpoint probe's vote and
pass rate, the keep / escalate decision, the histogram, and an endpoint expert through the LLM client."""

from __future__ import annotations

import math

import pytest
from scripted_endpoint import scripted

from tasks.mid_synthesis.experts import ChoiceProbe, EndpointExpert, Reply
from tasks.sft_synthesis.consensus import (
    SYSTEM,
    ConsensusParams,
    consensus_histogram,
    consensus_query,
    pass_rates,
    score_candidates,
    split_by_consensus,
)
from tasks.sft_synthesis.samples import sft_sample

SHA = "a" * 64


def choice():
    return sft_sample("kg_qa", ["cpt-1"], [{"role": "user", "content": "What treats fever?\nA. Gout\nB. Fever\nC. X"},
                                           {"role": "assistant", "content": "B. Fever"}],
                      answer="Fever", answer_kind="choice", accuracy="consensus", question="What treats fever?",
                      options=["Gout", "Fever", "Asthma"], gold_index=1)


def judgement():
    return sft_sample("vqa_rad", ["vqa_rad-train-1"],
                      [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is it broken?"}]},
                       {"role": "assistant", "content": "yes"}],
                      answer="yes", answer_kind="judgement", accuracy="consensus",
                      images=[{"path": "data/collect/images/aa/x.jpg", "sha256": SHA}], options=["yes", "no"],
                      gold_index=0)


def fill():
    return sft_sample("vqa_rad", ["vqa_rad-train-2"], [{"role": "user", "content": "Where is the mass?"},
                                                       {"role": "assistant", "content": "left lung"}],
                      answer="left lung", answer_kind="fill", accuracy="consensus")


def open_():
    return sft_sample("medquad", ["medquad-1"], [{"role": "user", "content": "How is gout treated?"},
                                                 {"role": "assistant", "content": "Gout is treated with colchicine."}],
                      answer="Gout is treated with colchicine and NSAIDs.", answer_kind="open", accuracy="consensus")


def code():
    return sft_sample("ocr", ["cpt-ocr-1"], [{"role": "user", "content": "Sodium?"},
                                            {"role": "assistant", "content": "140 mmol/L"}],
                      answer="140 mmol/L", answer_kind="fill", accuracy="code")


class FakeExpert:
    """Replies per sample id (None = a failed request)."""

    def __init__(self, name: str, by_question: dict[str, str | None]):
        self.name, self.by_question, self.asked = name, by_question, []

    def answer(self, queries):
        self.asked.extend(queries)
        out = []
        for q in queries:
            text = next((t for k, t in self.by_question.items() if k in q.user), "")
            out.append(Reply(self.name, text, None if text is not None else "request_failed: 503"))
        return out


class FakeModel:
    """option_logprobs by the question's first word."""

    def __init__(self, table: dict[str, list[float] | None]):
        self.table, self.questions = table, []

    def option_logprobs(self, questions):
        self.questions.extend(questions)
        return [self.table[q.question.split()[0]] for q in questions]


def experts():
    return [FakeExpert("e1", {"fever": "<think>Fever responds to it.</think>\nAnswer: B", "broken": "Answer: yes",
                              "mass": "Answer: left lung",
                              "gout": "<think>NSAIDs too.</think>\nAnswer: Colchicine and NSAIDs treat gout."}),
            FakeExpert("e2", {"fever": "Answer: C", "broken": "No.", "mass": "Answer: the right lung",
                              "gout": "Gout responds to colchicine.\nAnswer: Rest."}),
            FakeExpert("e3", {"fever": None, "broken": None, "mass": None, "gout": None}),
            FakeExpert("e4", {"fever": "I am not sure", "broken": "yes", "mass": "", "gout": "Answer: colchicine, "
                                                                                           "NSAIDs for gout"})]


PROBE = {"What": [math.log(0.2), math.log(0.5), math.log(0.3)], "Is": [math.log(0.1), math.log(0.9)]}


def test_records_count_readable_votes_and_the_probe():
    model = FakeModel(PROBE)
    recs = score_candidates([choice(), judgement(), fill(), open_(), code()], experts(), model, ConsensusParams())
    by = {r["id"]: r for r in recs}
    assert len(recs) == 4 and code()["id"] not in by          # code-verified: not asked
    c = by[choice()["id"]]
    # e1 B (agrees), e2 C, e3 failed, e4 no letter; the checkpoint's argmax is option 1 = B
    assert c["votes"] == {"e1": "B", "e2": "C", "e3": None, "e4": None, "checkpoint": "B"}
    assert (c["agree"], c["total"], c["score"], c["pass_rate"]) == (2, 3, 2 / 3, 0.5)
    assert c["abstained"] == {"e3": "request_failed: 503", "e4": "unparsed:no_answer"}
    j = by[judgement()["id"]]
    # the probe prefers "no" (0.9): it votes no, and the checkpoint passes the item 10% of the time
    assert j["votes"] == {"e1": "yes", "e2": "no", "e3": None, "e4": "yes", "checkpoint": "no"}
    assert (j["agree"], j["total"], j["pass_rate"]) == (2, 4, 0.1)
    f = by[fill()["id"]]
    assert f["votes"] == {"e1": "left lung", "e2": "the right lung", "e3": None, "e4": None}
    assert (f["agree"], f["total"], f["pass_rate"]) == (1, 2, None)
    o = by[open_()["id"]]
    # F1 vs "gout is treated with colchicine and nsaids": e1 4/5 P, 4/7 R -> 0.667; e2 "Rest" 0;
    # e4 "colchicine nsaids for gout": 3/4 P, 3/7 R -> 0.545
    assert o["votes"] == {"e1": "Colchicine and NSAIDs treat gout", "e2": "Rest.", "e3": None,
                          "e4": "colchicine, NSAIDs for gout"}
    assert (o["agree"], o["total"]) == (2, 3)
    # the probe saw only the choice and judgement items, the choice by its bare question
    assert [(q.question, q.options, q.gold) for q in model.questions] == [
        ("What treats fever?", ("Gout", "Fever", "Asthma"), 1), ("Is it broken?", ("yes", "no"), 0)]
    assert model.questions[1].images == ("data/collect/images/aa/x.jpg",)


def test_open_threshold_decides_agreement():
    recs = score_candidates([open_()], experts(), None, ConsensusParams(open_min_f1=0.6))
    assert (recs[0]["agree"], recs[0]["total"]) == (1, 3)          # 0.545 no longer agrees


def test_queries_carry_the_kind_prompt_and_images():
    q = consensus_query(judgement())
    assert (q.system, q.user, q.images) == (SYSTEM["judgement"], "Is it broken?", ("data/collect/images/aa/x.jpg",))
    multi = sft_sample("ocr", ["c"], [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Na?"}]},
                                      {"role": "assistant", "content": "140"}, {"role": "user", "content": "K?"},
                                      {"role": "assistant", "content": "4.1"}],
                       answer="4.1", answer_kind="fill", accuracy="consensus",
                       images=[{"path": "r.jpg", "sha256": SHA}])
    assert consensus_query(multi).user == "User: Na?\n\nAssistant: 140\n\nUser: K?"


def test_choice_probe_is_read_through_its_model():
    model = FakeModel(PROBE)
    direct = score_candidates([choice()], [], model, ConsensusParams())
    wrapped = score_candidates([choice()], [], ChoiceProbe(model, k=1, n=2), ConsensusParams())
    assert direct == wrapped and direct[0]["votes"] == {"checkpoint": "B"}
    assert pass_rates([choice(), fill()], model) == {choice()["id"]: 0.5, fill()["id"]: None}
    no_vote = score_candidates([choice()], [], model, ConsensusParams(probe_votes=False))
    assert (no_vote[0]["votes"], no_vote[0]["total"], no_vote[0]["pass_rate"]) == ({}, 0, 0.5)
    unreadable = score_candidates([choice()], [], FakeModel({"What": None}), ConsensusParams())
    assert unreadable[0]["abstained"] == {"checkpoint": "probe_unavailable"} and unreadable[0]["pass_rate"] is None


def test_split_keeps_agreement_and_escalates_the_rest():
    cands = [choice(), judgement(), fill(), open_(), code()]
    recs = score_candidates(cands, experts(), FakeModel(PROBE), ConsensusParams())
    kept, escalated = split_by_consensus(cands, recs, ConsensusParams(keep_min=0.6))
    # choice 2/3, open 2/3 >= 0.6; judgement 2/4 and fill 1/2 below; ocr passes as code-verified
    assert [s["id"] for s in kept] == [choice()["id"], open_()["id"], code()["id"]]
    assert kept[0]["meta"]["accuracy"] == "consensus" and kept[0]["meta"]["consensus"]["agree"] == 2
    assert kept[2] == code()
    assert [(s["id"], s["meta"]["escalation"]) for s in escalated] == [(judgement()["id"], "low_consensus"),
                                                                        (fill()["id"], "low_consensus")]
    # 3 of 4 passes the default 0.75 exactly; 2 of 3 does not
    kept75, esc75 = split_by_consensus(cands, recs, ConsensusParams())
    assert [s["id"] for s in kept75] == [code()["id"]] and len(esc75) == 4
    few = score_candidates([fill()], [experts()[0], experts()[2]], None, ConsensusParams())
    _, esc = split_by_consensus([fill()], few, ConsensusParams())
    assert few[0]["total"] == 1 and esc[0]["meta"]["escalation"] == "too_few_votes"
    with pytest.raises(ValueError, match="no consensus record"):
        split_by_consensus([fill()], [], ConsensusParams())


def test_three_of_four_meets_keep_min():
    e = [FakeExpert(n, {"fever": a}) for n, a in (("a", "Answer: B"), ("b", "Answer: B"), ("c", "Answer: B"),
                                                  ("d", "Answer: A"))]
    recs = score_candidates([choice()], e, None, ConsensusParams())
    kept, escalated = split_by_consensus([choice()], recs, ConsensusParams(keep_min=0.75))
    assert (recs[0]["agree"], recs[0]["total"], len(kept), escalated) == (3, 4, 1, [])


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="distinct"):
        score_candidates([choice()], [FakeExpert("checkpoint", {})], FakeModel(PROBE), ConsensusParams())
    broken = {**choice(), "meta": {**choice()["meta"], "options": None}}
    with pytest.raises(ValueError, match="meta.options"):
        score_candidates([broken], [], None, ConsensusParams())
    with pytest.raises(ValueError, match="keep_min"):
        ConsensusParams(keep_min=0.0)


def test_histogram_bins_exact_fractions():
    recs = [{"agree": a, "total": t} for a, t in ((2, 3), (3, 4), (0, 2), (1, 1), (0, 0), (3, 10))]
    h = consensus_histogram(recs, bins=10)
    # 2/3 -> bin 6, 3/4 -> 7, 0 -> 0, 1 -> last, 3/10 -> 3 (not 2 by float drift); 0/0 has no score
    assert h["counts"] == [1, 0, 0, 1, 0, 0, 1, 1, 0, 1]
    assert (h["scored"], h["no_votes"], h["unanimous"]) == (5, 1, 1)
    assert h["mean_score"] == round((2 / 3 + 0.75 + 0 + 1 + 0.3) / 5, 6)
    assert h["edges"][:3] == [0.0, 0.1, 0.2] and h["edges"][-1] == 1.0


def test_endpoint_expert_votes_and_failures(tmp_path):
    def reply(messages):
        user = messages[-1]["content"]
        return (500, "") if "broken" in user else (200, "Thinking.\nAnswer: B")

    with scripted(reply, tmp_path) as (client, requests):
        ep = EndpointExpert(client, "llm", temperature=0.0)
        recs = score_candidates([choice(), judgement()], [ep], None, ConsensusParams())
    assert recs[0]["votes"] == {"llm": "B"} and recs[0]["agree"] == 1
    assert recs[1]["votes"] == {"llm": None} and recs[1]["abstained"]["llm"].startswith("request_failed")
    assert any(r["messages"][0]["content"] == SYSTEM["choice"] for r in requests)
