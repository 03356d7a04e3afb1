"""Mid-training reasoning data: the dual gate (verify), multi-expert rejection sampling, reverse structured
CoT and short visual CoT -- hand-built inputs with hand-computed expectations, a scripted LLM client for the
LLM paths, and quick reads of the real DVC outputs / shared data where they exist."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tasks.llm.client import LLMError
from tasks.mid_synthesis.experts import Reply
from tasks.mid_synthesis.rejection import RejectionParams, RSItem, build_queries, length_quantile_pick, rejection_sample
from tasks.mid_synthesis.reverse_cot import (
    CoTItem,
    Draft,
    Evidence,
    LLMCoTJudge,
    LLMCoTWriter,
    LocalCoTJudge,
    LocalCoTWriter,
    ReverseCoTParams,
    Written,
    load_kg_items,
    load_report_items,
    load_vqa_rad_items,
    local_qc,
    reverse_cot,
)
from tasks.mid_synthesis.verify import (
    LLMThinkingVerifier,
    LocalThinkingVerifier,
    ThinkingCase,
    ThinkingParams,
    local_thinking_failures,
    split_reply,
    verify_outcome,
)
from tasks.mid_synthesis.visual_cot import (
    CaptionRecord,
    LocalAnalyst,
    LocalReasoner,
    LocalStylist,
    PerceptionItem,
    Thought,
    VisualCoTParams,
    anchor_without,
    derive_answer,
    load_captions,
    load_perception_items,
    visual_cot,
)

ROOT = Path(__file__).resolve().parents[2]
HAVE_CPT = any((ROOT / "data" / "cpt_data" / "samples").glob("part-*.jsonl"))
HAVE_KG = (ROOT / "data" / "kg" / "edges.jsonl").is_file()


class ScriptedClient:
    """An LLM client stand-in: `reply(last_user_text)` -> str or LLMError; records every batch."""

    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def complete_many(self, batch, return_exceptions=False, **params):
        self.calls.append((batch, params))
        out = []
        for chat in batch:
            r = self.reply(chat[-1]["content"] if chat[-1]["role"] == "user" else "")
            if isinstance(r, LLMError) and not return_exceptions:
                raise r
            out.append(r)
        return out


def _accounted(out):
    assert out.read == len(out.kept) + len(out.rejected)


# ==== verify =========================================================================================
def test_split_reply_follows_the_think_convention():
    assert split_reply("<think>Rash, nodes. So B.</think>\nAnswer: B") == ("Rash, nodes. So B.", "Answer: B")
    assert split_reply("opened by the template.</think>Answer: yes") == ("opened by the template.", "Answer: yes")
    assert split_reply("<think>never finished") == ("never finished", "")     # unfinished chain: no answer
    assert split_reply("Answer: C") == ("", "Answer: C")
    assert split_reply(None) == ("", "")


OPTS = ("Measles", "Rubella", "Mumps")


@pytest.mark.parametrize("answer,gold,kind,ok,reason", [
    ("Answer: B", "B", "choice", True, None),
    ("Answer: Rubella", "B", "choice", True, None),              # option text read as its letter
    ("Answer: B", "Rubella", "choice", True, None),              # gold given as option text
    ("Answer: A", "B", "choice", False, "wrong_choice"),
    ("I am not sure.", "B", "choice", False, "unparsed:no_answer"),
    ("Answer: A or B", "B", "choice", False, "unparsed:multiple_answers"),
    ("Answer: no", "No", "judgement", True, None),
    ("Yes, it is.", "no", "judgement", False, "wrong_judgement"),
    ("Answer: the left kidney", "Left kidney", "fill", True, None),
    ("Answer: in the left kidney", "left kidney", "fill", True, None),    # gold span contained
    ("Answer: not the left kidney", "left kidney", "fill", False, "wrong_fill"),
    ("Answer: lung or left kidney", "left kidney", "fill", False, "wrong_fill"),
    ("Answer: lung, liver, left kidney", "left kidney", "fill",
     False, "wrong_fill"),                                                # listing candidates is no answer
    ("Answer: the mass is in the upper pole of the left kidney near the hilum today", "left kidney", "fill",
     False, "wrong_fill"),                                                # more than 8 extra tokens
    ("Answer: 12 mm", "1.2 cm", "fill", True, None),                      # number-aware
    ("Answer: 12.5", "12", "fill", False, "wrong_fill"),
    ("<think>long</think>", "B", "choice", False, "unparsed:only_reasoning"),
])
def test_outcome_verify_per_kind(answer, gold, kind, ok, reason):
    v = verify_outcome(answer, gold, kind, OPTS if kind == "choice" else ())
    assert (v.ok, v.reason) == (ok, reason)


def test_outcome_verify_open_uses_similarity_threshold():
    gold = "Axial CT of the head with an acute subdural hematoma"
    assert verify_outcome("Axial CT of the head showing an acute subdural hematoma", gold, "open").ok
    low = verify_outcome("Normal chest radiograph", gold, "open")
    assert not low.ok and low.reason == "low_similarity" and low.score < 0.5


GOOD = ("The rash began on the face and spread downward over a day. Koplik spots are absent. "
        "Tender postauricular nodes point to rubella rather than measles. So the answer is B.")


def _case(reasoning, answer="Answer: B", gold="B", kind="choice", options=OPTS):
    return ThinkingCase("Which infection?", options, reasoning, answer, gold, kind)


def test_local_thinking_verify_checks():
    p = ThinkingParams()
    assert local_thinking_failures(_case(GOOD), p) == []
    assert local_thinking_failures(_case(""), p) == ["empty_reasoning"]
    assert "short_reasoning" in local_thinking_failures(_case("Rubella, so B."), p)
    mism = GOOD.replace("So the answer is B.", "So the answer is A, measles.")
    assert local_thinking_failures(_case(mism), p) == ["conclusion_mismatch"]
    assert local_thinking_failures(_case("As the reference says, " + GOOD), p) == ["hindsight_phrase"]
    assert local_thinking_failures(_case("The answer is B. " + GOOD), p) == ["answer_leak"]
    # naming the answer in the first sentence without announcing it is not a leak
    assert local_thinking_failures(_case("Rubella and measles both cause rashes. " + GOOD), p) == []
    # judgement and fill chains are read by their own parsers
    yes = _case("There is free air under the right hemidiaphragm on the upright film. "
                "That is pneumoperitoneum, so the answer is yes.", "Answer: yes", "yes", "judgement", ())
    assert local_thinking_failures(yes, p) == []
    fill = _case("The lesion sits posterior to the renal pelvis on the left side. Therefore it is the left kidney.",
                 "Answer: left kidney", "left kidney", "fill", ())
    assert local_thinking_failures(fill, p) == []
    assert local_thinking_failures(dataclasses.replace(fill, reasoning=fill.reasoning.replace("left", "right")),
                                   p) == ["conclusion_mismatch"]


def test_llm_thinking_verifier_maps_json_and_failures():
    replies = iter(['{"consistent": true, "hindsight": false, "leak": false, "reason": "fine"}',
                    '{"consistent": false, "hindsight": true, "leak": true, "reason": "bad"}',
                    "no json", LLMError("boom")])
    client = ScriptedClient(lambda _: next(replies))
    got = LLMThinkingVerifier(client).verify([_case(GOOD), _case(GOOD), _case(GOOD), _case("")])
    assert got[0] == [] and got[1] == ["conclusion_mismatch", "hindsight_phrase", "answer_leak"]
    assert got[3] == ["empty_reasoning"]                 # judged locally: nothing was asked for it
    assert len(client.calls[0][0]) == 3
    # the third reply did not parse: one repair turn, which received the LLMError -> a failure, not a raise
    assert got[2] == ["judge_unparseable"]


# ==== rejection sampling =============================================================================
class ScriptedExpert:
    """Replies chosen by (item question, sample number) -- the sample number comes from the query's tag."""

    def __init__(self, name, script):
        self.name, self.script, self.seen = name, script, []

    def answer(self, queries):
        self.seen.extend(queries)
        out = []
        for q in queries:
            k = int(q.system.split("(sample ")[1].split(" ")[0]) - 1
            r = self.script(q.user.split("\n")[0], k)
            out.append(Reply(self.name, None, r[1]) if isinstance(r, tuple) else Reply(self.name, r))
        return out


def _chain(n_words_extra: int, answer: str = "B") -> str:
    pad = " ".join(["Further detail supports this."] * n_words_extra)
    return f"<think>{pad} {GOOD}</think>\nAnswer: {answer}"


def test_rejection_sampling_gates_and_accounting(tmp_path):
    img = tmp_path / "img.png"
    img.write_bytes(b"not really a png but bytes to hash")
    items = [RSItem("q1", "Which infection?", OPTS, "B", "choice", source_ids=("src-1",)),
             RSItem("q2", "Which infection now?", OPTS, "Rubella", "choice", images=("img.png",), phase=3)]

    def script_a(question, k):
        if question == "Which infection?":
            return [_chain(0), _chain(3), ("x", "timeout"), _chain(0, "A")][k]    # pass, pass, request, outcome
        return ["<think>As the reference says, " + GOOD + "</think>\nAnswer: B", _chain(6), _chain(6), _chain(1)][k]

    def script_b(question, k):
        if question == "Which infection?":
            return [_chain(9), "<think>The answer is B. " + GOOD + "</think>Answer: B", _chain(1), "Answer: B"][k]
        return [_chain(2), "no idea", _chain(8), _chain(4)][k]

    a, b = ScriptedExpert("a", script_a), ScriptedExpert("b", script_b)
    out, stats = rejection_sample(items, [a, b], LocalThinkingVerifier(), RejectionParams(keep_per_item=2), tmp_path)
    _accounted(out)
    assert out.read == 16
    # q1: a0 a1 b0 b2 pass (lengths 0,3,9,1 pads); a2 request; a3 outcome; b1 leak; b3 has no chain
    # q2: a0 hindsight; a1 a2 identical -> one duplicate; a3, b0, b2, b3 pass; b1 outcome
    assert out.by_gate() == {"diversity": {"duplicate": 1, "not_selected": 5}, "outcome": {"unparsed:no_answer": 1,
                             "wrong_choice": 1}, "request": {"timeout": 1},
                             "thinking": {"answer_leak": 1, "empty_reasoning": 1, "hindsight_phrase": 1}}
    assert len(out.kept) == 4
    kept_q1 = sorted(s["meta"]["reasoning_words"] for s in out.kept if s["meta"]["item_id"] == "q1")
    assert kept_q1 == [30, 66]              # shortest (pad 0) and longest (pad 9: 30 + 9 x 4 words)
    assert stats == {"a": {"asked": 8, "request_ok": 7, "passed_outcome": 6, "passed_thinking": 5, "kept": 2},
                     "b": {"asked": 8, "request_ok": 8, "passed_outcome": 7, "passed_thinking": 5, "kept": 2}}
    s = next(s for s in out.kept if s["meta"]["item_id"] == "q2")
    assert s["phase"] == 3 and s["images"][0]["path"] == "img.png" and len(s["images"][0]["sha256"]) == 64
    assert s["messages"][0]["content"][0] == {"type": "image"}
    assert "C. Mumps" in s["messages"][0]["content"][1]["text"]
    assert s["messages"][-1]["content"] == "Answer: B" and "Koplik" in s["messages"][-1]["reasoning_content"]
    assert s["family"] == "rejection_sampling" and s["meta"]["expert"] in ("a", "b")
    # best-of-N queries are all distinct requests (the response cache must not collapse them)
    assert len({(q.system, q.user) for q in a.seen}) == len(a.seen) == 8
    assert "<think></think>" in a.seen[0].user and "own line" in a.seen[0].user
    # deterministic
    again, _ = rejection_sample(items, [a, b], LocalThinkingVerifier(), RejectionParams(keep_per_item=2), tmp_path)
    assert [x["id"] for x in again.kept] == [x["id"] for x in out.kept]


def test_length_quantile_pick_and_short_expert_batches():
    assert length_quantile_pick([5, 1, 9, 3, 7], 3) == [1, 0, 2]     # lengths 1, 5, 9
    assert length_quantile_pick([5, 1, 9], 1) == [0]                 # the median
    assert length_quantile_pick([5, 1], 4) == [0, 1]

    class Short:
        name = "short"

        def answer(self, queries):
            return [Reply("short", _chain(0))]                        # one reply for four queries
    out, stats = rejection_sample([RSItem("q", "Which infection?", OPTS, "B", "choice")], [Short()])
    _accounted(out)
    assert out.by_gate()["request"] == {"no_reply": 3} and stats["short"]["asked"] == 4
    assert len(build_queries(RSItem("q", "Q?", (), "yes", "judgement"), 3, ("s",))) == 3


# ==== reverse structured CoT ==========================================================================
KG_ITEM = CoTItem("kg-edge-3", "Which condition can be treated with acetaminophen?", (), "fever", "fill", "text",
                  (Evidence("Treatments include rest, fluids, and aspirin (for adults) or acetaminophen to treat fever.",
                            "medquad-df87"),), ("kg-edge:3",), focus="acetaminophen", relation="treated_by",
                  task="kg_qa")


def test_local_writer_and_qc_on_a_kg_item():
    p = ReverseCoTParams()
    w = LocalCoTWriter().write([KG_ITEM])[0]
    assert w.failure is None
    d = w.draft
    assert "fever" not in d.stages["understanding"].lower()          # the gold is not announced
    assert d.stages["conclusion"] == "Therefore, the answer is fever." and d.answer == "fever"
    qc = local_qc(KG_ITEM, d, p)
    assert set(qc) == {"hindsight_free", "logical_soundness", "instruction_following", "answer_consistency",
                       "authentic_thinking", "global_consistency"}
    assert all(qc[k] >= p.thresholds[k] for k in qc), qc
    out = reverse_cot([KG_ITEM], LocalCoTWriter(), LocalCoTJudge(p), p)
    _accounted(out)
    s = out.kept[0]
    assert s["phase"] == 1 and s["family"] == "reverse_cot" and s["meta"]["qc"] == qc
    rc = s["messages"][-1]["reasoning_content"]
    assert [ln.split(":")[0] for ln in rc.split("\n\n")] == ["Understanding", "Knowledge Recall", "Reasoning",
                                                             "Conclusion"]
    # evidence without the answer: the template has nothing to ground on
    bare = dataclasses.replace(KG_ITEM, evidence=(Evidence("Acetaminophen is widely used.", "d"),))
    assert LocalCoTWriter().write([bare])[0].failure == "evidence_lacks_answer"


class FixedWriter:
    name = "fixed"

    def __init__(self, drafts):
        self.drafts = drafts

    def write(self, items):
        return [Written(d) if isinstance(d, Draft) else Written(failure=d) for d in self.drafts]


def _draft(**over):
    stages = {"understanding": "The question asks which condition acetaminophen treats.",
              "observation": "I recall: acetaminophen is used to treat fever, together with rest and fluids.",
              "reasoning": "The recalled statement links acetaminophen with fever as its treatment use, "
                           "because it is taken to treat fever; so fever fits.",
              "conclusion": "Therefore, the answer is fever."}
    stages.update(over)
    return Draft(stages, "fever")


def test_qc_dimensions_fail_what_they_measure():
    p = ReverseCoTParams()
    ok = local_qc(KG_ITEM, _draft(), p)
    assert all(ok[k] >= p.thresholds[k] for k in ok), ok
    cases = {
        "hindsight_free": _draft(understanding="We are told the answer is fever; the question asks what it treats."),
        "answer_consistency": _draft(conclusion="Therefore, the answer is headache."),
        "instruction_following": _draft(observation=""),
        "authentic_thinking": _draft(reasoning=KG_ITEM.evidence[0].text, conclusion="Fever."),
        "logical_soundness": _draft(reasoning="Hepatic glucuronidation saturates, and nephrotoxic metabolites "
                                              "accumulate after overdose, therefore caution."),
    }
    for dim, d in cases.items():
        qc = local_qc(KG_ITEM, d, p)
        assert qc[dim] < p.thresholds[dim], (dim, qc)
    # a stage stating another answer before the conclusion breaks global consistency (and hindsight)
    qc = local_qc(KG_ITEM, _draft(reasoning="The answer is headache, because acetaminophen treats fever."), p)
    assert qc["global_consistency"] < 1 and qc["hindsight_free"] == 0
    items = [KG_ITEM] * 3
    out = reverse_cot(items, FixedWriter([_draft(), cases["answer_consistency"], "llm_unparseable"]),
                      LocalCoTJudge(p), p)
    _accounted(out)
    assert len(out.kept) == 1 and out.by_gate() == {"qc": {"answer_consistency": 1},
                                                    "writer": {"llm_unparseable": 1}}


def test_llm_writer_and_judge_paths():
    good = json.dumps({"understanding": "It asks what acetaminophen treats.",
                       "knowledge_recall": "Acetaminophen is used to treat fever.",
                       "reasoning": "Because acetaminophen is an antipyretic, it treats fever.",
                       "conclusion": "Therefore, the answer is fever.", "answer": "fever"})
    replies = iter([good, "not json", "still not json"])
    client = ScriptedClient(lambda _: next(replies))
    got = LLMCoTWriter(client).write([KG_ITEM, KG_ITEM])
    assert got[0].draft.stages["observation"] == "Acetaminophen is used to treat fever."
    assert got[1].failure == "llm_unparseable"
    assert "knowledge_recall" in client.calls[0][0][0][1]["content"]
    scores = {k: 0.9 for k in ("hindsight_free", "logical_soundness", "instruction_following", "answer_consistency",
                               "authentic_thinking", "global_consistency")}
    jr = iter([json.dumps(scores), json.dumps({**scores, "logical_soundness": 3}), json.dumps(scores)[:-1]])
    judge = LLMCoTJudge(ScriptedClient(lambda _: next(jr, "x")))
    res = judge.score([KG_ITEM] * 3, [got[0].draft] * 3)
    assert res[0] == scores and res[1] == "llm_unparseable" and res[2] == "llm_unparseable"
    out = reverse_cot([KG_ITEM], FixedWriter([got[0].draft]),
                      LLMCoTJudge(ScriptedClient(lambda _: json.dumps(scores))), ReverseCoTParams())
    assert out.by_gate() == {"qc": {"instruction_following": 1}}   # the first below its threshold (1.0)
    _accounted(out)


# ==== visual CoT ======================================================================================
def _pitem(question, answer, anchor, kind="judgement", qtype="presence", options=()):
    return PerceptionItem("t", question, options, answer, kind, qtype, ("img.png",), ("src",), anchor, "caption",
                          "vqa_rad")


ANCHOR = ("Axial CT of the abdomen. Annotated findings: There is no free air. The kidneys are normal. "
          "Was a CT or MRI used to take the image: CT. Background: Pneumonia can be caused by bacteria.")


@pytest.mark.parametrize("question,answer", [
    ("Is there free air?", "no"),
    ("Are the kidneys normal?", "yes"),
    ("Is there no free air?", "yes"),                     # a negated question flips the reading
    ("Is this a CT or an MRI?", "CT"),                    # the annotation's answer, not its question
    ("Is this an MRI?", "no"),
    ("Is there a pleural effusion?", None),               # not in the caption: no conclusion
    ("Is there pneumonia?", None),                        # only in the Background knowledge: not observed
])
def test_local_reasoner_rules(question, answer):
    got = derive_answer(_pitem(question, "x", ANCHOR, qtype="modality" if "MRI" in question else "presence"), ANCHOR)
    assert got["answer"] == answer


def test_anchor_drops_the_asked_questions_own_annotation():
    from tasks.cpt_synthesis.image_knowledge import qa_statement
    own = qa_statement("Is there fat stranding shown in this image?", "Yes")
    cap = CaptionRecord("s" * 64, "p.png", f"CT of the abdomen. Annotated findings: {own} The kidneys are normal.",
                        {"qa": [{"question": "Is there fat stranding shown in this image?", "answer": "Yes"}]},
                        ("src",), "caption")
    a = anchor_without(cap, "Is there fat stranding shown in this image?", "Yes")
    assert "fat stranding" not in a and "kidneys are normal" in a


def test_visual_cot_engine_gates(tmp_path):
    (tmp_path / "img.png").write_bytes(b"image bytes")
    choice = _pitem("Which imaging modality was used to acquire this image?", "CT", ANCHOR, "choice", "modality",
                    ("MRI", "CT", "X-ray", "ultrasound"))
    items = [_pitem("Is there free air?", "no", ANCHOR), _pitem("Is there free air?", "yes", ANCHOR),
             _pitem("Is there a pleural effusion?", "no", ANCHOR), choice]
    p = VisualCoTParams()
    out = visual_cot(items, LocalAnalyst(p), LocalReasoner(), LocalStylist(), p, tmp_path)
    _accounted(out)
    assert out.by_gate() == {"logic": {"conclusion_mismatch": 1, "no_conclusion": 1}}
    first, ch = out.kept
    msg = first["messages"][-1]
    assert msg["content"] == "No." and msg["reasoning_content"].startswith("Observation: ")
    assert "\nReasoning: " in msg["reasoning_content"] and len(msg["reasoning_content"].split()) <= 60
    assert first["phase"] == 3 and first["family"] == "visual_cot" and first["images"][0]["path"] == "img.png"
    assert ch["messages"][-1]["content"] == "B. CT" and ch["meta"]["answer"] == "B. CT"

    class Verbose:
        name = "llm"

        def style(self, items, observations, reasonings):
            long = " ".join(["The image clearly shows this."] * 15)
            return [Thought({"observation": observations[0], "reasoning": long, "answer": "No."}),
                    Thought({"observation": observations[1], "reasoning": "Short.", "answer": "Yes."}),
                    Thought(None, "llm_request_failed")]
    out = visual_cot([items[0], items[0], choice], LocalAnalyst(p), LocalReasoner(), Verbose(), p, tmp_path)
    _accounted(out)
    assert out.by_gate() == {"style": {"answer_changed": 1, "too_long": 1}, "stylist": {"llm_request_failed": 1}}


def test_llm_visual_roles_ask_without_the_gold(tmp_path):
    from tasks.mid_synthesis.visual_cot import LLMAnalyst, LLMReasoner, LLMStylist
    (tmp_path / "img.png").write_bytes(b"image bytes")
    item = _pitem("Is there free air?", "no-gold-marker", ANCHOR)

    def reply(prompt):
        assert "no-gold-marker" not in prompt            # no role ever sees the gold
        if "image analyst" in prompt:
            return '{"observation": "There is no free air under the diaphragm."}'
        if "reasoning expert" in prompt:
            return '{"steps": ["No free air is seen."], "answer": "no"}'
        return '{"reasoning": "No free air is seen.", "answer": "No."}'
    c = ScriptedClient(reply)
    out = visual_cot([item], LLMAnalyst(c), LLMReasoner(c), LLMStylist(c), VisualCoTParams(), tmp_path)
    _accounted(out)
    assert out.by_gate() == {"logic": {"conclusion_mismatch": 1}}   # "no" is not the (marker) gold
    ok = dataclasses.replace(item, answer="no")
    out = visual_cot([ok], LLMAnalyst(c), LLMReasoner(c), LLMStylist(c), VisualCoTParams(), tmp_path)
    assert len(out.kept) == 1 and out.kept[0]["meta"]["generator"] == "llm"


# ==== real data (quick reads) =========================================================================
@pytest.mark.skipif(not (HAVE_CPT and HAVE_KG), reason="needs the cpt_data and kg DVC outputs")
def test_real_kg_items_and_reverse_cot():
    p = ReverseCoTParams(n_text=20, seed=3)
    items, stats = load_kg_items(ROOT, p)
    assert 0 < len(items) <= 20 and stats["pool"] > 1000
    assert all(it.evidence and it.answer and it.focus.lower() in it.question.lower() for it in items)
    assert [i.id for i in load_kg_items(ROOT, p)[0]] == [i.id for i in items]        # seeded
    out = reverse_cot(items, LocalCoTWriter(), LocalCoTJudge(p), p, ROOT)
    _accounted(out)
    assert out.kept, out.by_gate()
    for s in out.kept:
        rc = s["messages"][-1]["reasoning_content"]
        before = rc.split("Conclusion:")[0]
        assert "answer is" not in before.lower()


@pytest.mark.skipif(not HAVE_CPT, reason="needs the cpt_data DVC output")
def test_real_perception_items_exclude_test_images(data_root):
    caps = load_captions(ROOT)
    assert caps and all(c.task in ("caption_refined", "caption") for c in caps.values())
    items, stats = load_perception_items(ROOT, data_root, caps, VisualCoTParams(n_items=40, seed=2))
    assert len(items) == 40 and stats["skipped"]["image_in_test"] > 0
    test = json.loads((Path(data_root) / "benchmarks" / "vqa_rad" / "testset.json").read_text())
    test_names = {t["image_name"] for t in test}
    train = {f"vqa_rad-train-{q['qid']}": q for q in
             json.loads((Path(data_root) / "benchmarks" / "vqa_rad" / "trainset.json").read_text())}
    vqa = [it for it in items if it.source == "vqa_rad"]
    assert vqa and all(train[it.id]["image_name"] not in test_names for it in vqa)
    assert {it.source for it in items} == {"vqa_rad", "caption"}
    out = visual_cot(items, LocalAnalyst(), LocalReasoner(), LocalStylist(), VisualCoTParams(), ROOT)
    _accounted(out)
    assert out.kept and all((ROOT / s["images"][0]["path"]).is_file() for s in out.kept)
    vq, _ = load_vqa_rad_items(ROOT, data_root, caps, ReverseCoTParams(n_vqa=10))
    rp, _ = load_report_items(ROOT, ReverseCoTParams(n_report=5))
    assert len(vq) == 10 and len(rp) == 5 and all(it.modality == "image" for it in vq + rp)
    out = reverse_cot(vq + rp, LocalCoTWriter(), LocalCoTJudge(), ReverseCoTParams(), ROOT)
    _accounted(out)
    assert all(s["phase"] == 3 for s in out.kept)


def test_a_plain_text_reply_splits_at_its_final_answer_line():
    """Models never trained on <think> reason in plain text and end with the requested answer line."""
    assert split_reply("Fever is treated with rest.\nAcetaminophen lowers it.\nAnswer: acetaminophen") == (
        "Fever is treated with rest.\nAcetaminophen lowers it.", "acetaminophen")
    assert split_reply("Answer: B") == ("", "Answer: B")                  # no reasoning before it
    assert split_reply("I think it is B.") == ("", "I think it is B.")    # no answer line: no reasoning
    assert split_reply("<think>x y</think>\nAnswer: B") == ("x y", "Answer: B")
