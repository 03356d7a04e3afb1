"""Prompt rewriting: the fact check, the local rules, the LLM path and the sample-level accounting."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest

from tasks.llm.client import LLMError
from tasks.sft_synthesis.rewrite import (
    LLM_SYSTEM,
    LLMRewriter,
    LocalRewriter,
    RewriteParams,
    apply_rule,
    clean_reply,
    fact_check,
    fact_tokens,
    make_rewriter,
    rewrite_samples,
    split_prompt,
)
from tasks.sft_synthesis.samples import sft_sample, user_text, with_messages

SHA = "ab" * 32


class First:
    """A stand-in Generator that always draws the first option (and "yes" for every coin flip), so rule
    outputs can be written down by hand."""

    def integers(self, n):
        return 0

    def random(self):
        return 0.0

    def permutation(self, n):
        return np.arange(n)


# ==== prompt anatomy and the fact check =============================================================
CHOICE = ("A 45-year-old man with myocardial infarction has a potassium of 3.5 mmol/L. Which drug is best?\n"
          "Options:\nA. Aspirin\nB. Heparin\nReason step by step, then give the letter of the answer.")
ENTS = ["myocardial infarction", "potassium"]


def test_split_prompt_separates_the_stem_from_options_and_format_lines():
    stem, rest = split_prompt(CHOICE)
    assert stem == "A 45-year-old man with myocardial infarction has a potassium of 3.5 mmol/L. Which drug is best?"
    assert rest == "\nOptions:\nA. Aspirin\nB. Heparin\nReason step by step, then give the letter of the answer."
    assert split_prompt("What is asthma?\n\nReason step by step, then answer.") == (
        "What is asthma?", "\n\nReason step by step, then answer.")
    # a single "A." line is no options block
    assert split_prompt("A. fib is common. Why?") == ("A. fib is common. Why?", "")


def test_fact_tokens_are_a_multiset_of_numbers_and_units():
    toks = fact_tokens("BP 150/90 mmHg for 2 days; K 3.5 mmol/L; a 45-year-old; SpO2 92%; 2 L of fluid; 5mg")
    assert toks == Counter({"150": 1, "90": 1, "mmHg": 1, "2": 2, "days": 1, "3.5": 1, "mmol/L": 1, "45": 1,
                            "92": 1, "%": 1, "L": 1, "5": 1, "mg": 1})


@pytest.mark.parametrize("variant, reason", [
    (None, "empty"),
    ("  \n ", "empty"),
    (CHOICE.replace(" ", "  "), "unchanged"),
    (CHOICE.replace("A. Aspirin\nB. Heparin", "A. Heparin\nB. Aspirin"), "option_changed"),
    (CHOICE.replace("\nB. Heparin", ""), "option_changed"),
    (CHOICE.replace("myocardial infarction", "a heart attack"), "entity_lost"),
    (CHOICE.replace("myocardial infarction", "myocardial infarctions"), "entity_lost"),   # word-bounded
    (CHOICE.replace("3.5 mmol/L", "3.5 mmol"), "number_lost"),
    (CHOICE.replace("45-year-old", "middle-aged"), "number_lost"),
    (CHOICE.replace("myocardial infarction", "MYOCARDIAL  Infarction").replace("best?", "preferred?"), None),
    (CHOICE.replace("Which drug is best?", "Which drug is preferred for a potassium of 3.5 mmol/L?"), None),
])
def test_fact_check_names_the_first_broken_fact(variant, reason):
    assert fact_check(CHOICE, variant, ENTS) == reason


def test_fact_check_only_demands_entities_the_original_contains():
    assert fact_check("What is asthma?", "Could you explain what asthma is?", ["asthma", "copd"]) is None


# ==== the local rules ===============================================================================
@pytest.mark.parametrize("rule, text, expected", [
    ("question_frame", "What is the mechanism of action of aspirin?",
     "Could you explain what the mechanism of action of aspirin is?"),
    ("question_frame", "Could you explain what the mechanism of action of aspirin is?",
     "What is the mechanism of action of aspirin?"),
    ("which_following", "Which of the following is the most likely diagnosis?",
     "Among the options below, which is the most likely diagnosis?"),
    ("which_following", "In this patient, which of the following is preferred?",
     "In this patient, which of the options below is preferred?"),
    ("which_following", "Which of the following drugs is preferred?", None),      # "following" is an adjective
    ("mood", "Explain the pathophysiology of asthma.", "Can you explain the pathophysiology of asthma?"),
    ("mood", "Could you please describe the symptoms of asthma?", "Describe the symptoms of asthma."),
    ("patient", "A 45-year-old man presents with chest pain.", "A 45-year-old male patient presents with chest pain."),
    ("patient", "A 45-year-old male patient comes in with chest pain.", "A 45-year-old male comes in with chest pain."),
    ("patient", "A 4-week-old female newborn is jaundiced.", None),              # "female" is an adjective here
    ("patient", "The patient has chest pain.", None),
    ("clause_order", "After starting lisinopril, a 60-year-old woman develops a dry cough.",
     "A 60-year-old woman develops a dry cough after starting lisinopril."),
    ("clause_order", "Two days after surgery, the patient develops a fever of 39 °C.",
     "The patient develops a fever of 39 °C two days after surgery."),
    ("clause_order", "A woman develops a rash after taking amoxicillin.",
     "After taking amoxicillin, a woman develops a rash."),
    ("clause_order", "The drug that is given after surgery reduces pain.", None),   # a noun phrase, not a clause
    ("clause_order", "She has pain during intercourse.", None),                    # "during" heads no clause
    ("clause_order", "The median survival is 3 years after the diagnosis.", None),  # one time span
    ("clause_order", "After the trip, John develops a fever.", None),             # no proper noun lower-cased
    ("politeness", "Please list the causes of anemia.", "List the causes of anemia."),
    ("politeness", "What causes anemia?", "Please help with the following question. What causes anemia?"),
    ("politeness", "Could you list the causes of anemia?", None),
    ("synonyms", "The rash typically began approximately 3 days ago.", "The rash usually started roughly 3 days ago."),
    ("synonyms", "Typically, the CT SHOWS a mass.", "Usually, the CT SHOWS a mass."),      # upper case is masked
])
def test_rules_by_hand(rule, text, expected):
    assert apply_rule(rule, text, First()) == expected


def test_entity_spans_are_never_touched():
    text = "The biopsy rapidly confirmed rapidly progressive glomerulonephritis."
    entity = ["rapidly progressive glomerulonephritis"]
    assert apply_rule("synonyms", text, First(), protect=entity) == (
        "The biopsy quickly confirmed rapidly progressive glomerulonephritis.")
    unprotected = apply_rule("synonyms", text, First())
    assert unprotected == "The biopsy quickly confirmed quickly progressive glomerulonephritis."
    assert fact_check(text, unprotected, entity) == "entity_lost"      # what the mask prevents


BANK = [
    ("What is the mechanism of action of aspirin?", ["aspirin"]),
    ("A 45-year-old man presents with chest pain radiating to the left arm for 2 hours. His blood pressure is "
     "150/90 mmHg. Which of the following is the most likely diagnosis?\nA. Myocardial infarction\n"
     "B. Pericarditis\nC. Aortic dissection\nReason step by step, then give the letter of the answer.",
     ["chest pain", "myocardial infarction", "pericarditis", "aortic dissection", "arm"]),
    ("After starting lisinopril, a 60-year-old woman develops a dry cough. What is the most appropriate next step?",
     ["lisinopril", "dry cough"]),
    ("Explain the pathophysiology of type 2 diabetes.", ["type 2 diabetes"]),
    ("Could you describe the symptoms of asthma?", ["asthma"]),
    ("Answer the following multiple-choice question.\n\nQuestion: Which enzyme is typically elevated in acute "
     "pancreatitis?\nOptions:\nA. Lipase\nB. ALT\nC. CK-MB\n\nReply with the letter of the correct option on the "
     "last line, as 'Answer: X'.", ["acute pancreatitis", "lipase"]),
    ("A woman develops a rash after taking amoxicillin 500 mg.", ["rash", "amoxicillin"]),
    ("The biopsy rapidly confirmed rapidly progressive glomerulonephritis.", ["rapidly progressive glomerulonephritis"]),
]


def test_local_rewriter_keeps_every_fact_and_is_seeded():
    texts, ents = [t for t, _ in BANK], [e for _, e in BANK]
    rw = LocalRewriter(max_rules=2)
    variants: dict[int, set] = {i: set() for i in range(len(texts))}
    for seed in range(8):
        out = rw.rewrite(texts, np.random.default_rng(seed), protect=ents)
        assert out == rw.rewrite(texts, np.random.default_rng(seed), protect=ents)
        for i, (t, v) in enumerate(zip(texts, out)):
            if v is not None:
                assert fact_check(t, v, ents[i]) is None, (t, v)
                assert split_prompt(v)[1] == split_prompt(t)[1]          # options and format lines verbatim
                variants[i].add(v)
    assert all(len(v) >= 2 for v in variants.values()), variants           # seeds give different wordings


def test_local_rewriter_gives_up_on_text_no_rule_fits():
    rw = LocalRewriter()
    assert rw.rewrite(["Can you tell me why the heart beats?"], np.random.default_rng(0)) == [None]


# ==== the LLM path ==================================================================================
class ScriptedClient:
    def __init__(self, reply):
        self.reply, self.calls = reply, []

    def complete_many(self, batch, return_exceptions=False, **params):
        self.calls.append((batch, return_exceptions, params))
        return [self.reply(chat[-1]["content"]) for chat in batch]


def test_clean_reply_strips_reasoning_fences_labels_and_quotes():
    assert clean_reply("<think>keep aspirin</think>\n```\nRewritten question: \"How does aspirin work?\"\n```") == (
        "How does aspirin work?")
    assert clean_reply("Paraphrase: Why is the sky blue?") == "Why is the sky blue?"


def test_llm_rewriter_sends_only_the_stem_and_reattaches_the_options():
    def reply(user):
        if "aspirin" in user:
            return "```\nRewritten question: \"How does aspirin act, mechanistically?\"\n```"
        if "chest pain" in user:
            return "For a 45-year-old man with chest pain, which diagnosis is most likely?"
        return LLMError("HTTP 503")

    client = ScriptedClient(reply)
    texts = ["What is the mechanism of action of aspirin?",
             "A 45-year-old man has chest pain. Which is the most likely diagnosis?\nA. Angina\nB. Reflux",
             "What is asthma?"]
    rw = LLMRewriter(client)
    out = rw.rewrite(texts, np.random.default_rng(0), protect=[["aspirin"], ["chest pain", "angina"], ["asthma"]])
    assert out == ["How does aspirin act, mechanistically?",
                   "For a 45-year-old man with chest pain, which diagnosis is most likely?\nA. Angina\nB. Reflux",
                   None]
    assert rw.last_errors[:2] == [None, None] and rw.last_errors[2].startswith("request_failed: HTTP 503")
    (batch, return_exceptions, params), = client.calls
    assert return_exceptions is True and params == {"temperature": 0.7, "max_tokens": 384}
    assert batch[0][0] == {"role": "system", "content": LLM_SYSTEM}
    assert "Keep these terms verbatim: angina; chest pain." in batch[1][1]["content"]
    assert "A. Angina" not in batch[1][1]["content"]                           # options never leave the project
    assert fact_check(texts[1], out[1], ["chest pain", "angina"]) is None


def test_make_rewriter_picks_the_configured_path():
    assert isinstance(make_rewriter(RewriteParams()), LocalRewriter)
    assert isinstance(make_rewriter(RewriteParams(rewriter="llm"), ScriptedClient(str)), LLMRewriter)
    with pytest.raises(ValueError):
        make_rewriter(RewriteParams(rewriter="llm"))
    with pytest.raises(ValueError):
        RewriteParams(share=1.5)
    with pytest.raises(ValueError):
        RewriteParams(roles=("assistant",))


# ==== samples =======================================================================================
def _sample(source, user, answer, kind="open", images=None, uid=None):
    return sft_sample(source, [uid or f"src:{user[:20]}"], [{"role": "user", "content": user},
                                                           {"role": "assistant", "content": answer}],
                      answer=answer, answer_kind=kind, accuracy="consensus", images=images)


OPTS = "\nA. Myocardial infarction\nB. Pericarditis"
S1 = _sample("kg_qa", "Which of the following is the most likely diagnosis in a 45-year-old man with chest pain?" + OPTS,
             "A. Myocardial infarction", "choice")
S2 = _sample("medquad", "What is asthma?", "A chronic inflammatory disease of the airways.")
S3 = _sample("vqa_rad", [{"type": "image"}, {"type": "text", "text": "Is there a fracture of the left femur?"}], "yes",
             "judgement", images=[{"path": "data/vqa/1.png", "sha256": SHA}], uid="vqa:1")
S4 = _sample("instruct", "List three symptoms of flu in 3 bullets.", "- fever\n- cough\n- aches")
S5 = _sample("pubmedqa", "Does aspirin reduce the risk of stroke by 20%?", "yes", "judgement")
S6 = with_messages(S2, [{"role": "user", "content": "Could you explain what asthma is?"}, S2["messages"][1]],
                   rewrite_of=S2["id"], rewriter="local")
VOCAB = ["asthma", "aspirin", "stroke", "femur", "fracture", "chest pain", "myocardial infarction", "flu"]


def find_entities(text):
    return [w for w in VOCAB if re.search(rf"\b{w}\b", text, re.IGNORECASE)]


class ScriptedRewriter:
    """Round r of rewriting answers SCRIPT[r][text]; records what it was asked."""
    name = "local"

    def __init__(self, script):
        self.script, self.calls = script, []

    def rewrite(self, texts, rng, protect=None):
        self.calls.append((list(texts), protect))
        return [self.script[len(self.calls) - 1].get(t) for t in texts]


def test_rewrite_samples_gates_every_variant_and_touches_only_the_first_user_text():
    q1, q3, q5 = user_text(S1), "Is there a fracture of the left femur?", user_text(S5)
    good1 = "Among the options below, which is the most probable diagnosis in a 45-year-old man with chest pain?" + OPTS
    script = [{q1: good1, "What is asthma?": "What is it?", q3: "Is there a fracture of the left femur, please?",
               q5: "Does aspirin reduce the risk of stroke?"},
              {q1: good1, q3: q3, q5: "Does aspirin reduce the stroke risk by 20%?\nA. yes\nB. no"}]
    rw = ScriptedRewriter(script)
    out = rewrite_samples([S1, S2, S3, S4, S5, S6], rw, find_entities, RewriteParams(share=1.0, max_variants=2),
                          seed=7)
    assert out.read == 8 == len(out.kept) + len(out.rejected)          # 4 eligible samples x 2 rounds
    assert out.by_gate() == {"rewrite": {"duplicate": 1, "entity_lost": 1, "no_rewrite": 1, "number_lost": 1,
                                         "option_changed": 1, "unchanged": 1}}
    assert sorted(rw.calls[0][0]) == sorted([q1, "What is asthma?", q3, q5])  # instruct and variants are left out
    assert dict(zip(*rw.calls[0])) == {q1: ["chest pain", "myocardial infarction"], "What is asthma?": ["asthma"], q3: ["femur", "fracture"],
                                       q5: ["aspirin", "stroke"]}
    by_origin = {v["meta"]["rewrite_of"]: v for v in out.kept}
    assert set(by_origin) == {S1["id"], S3["id"]}
    v1, v3 = by_origin[S1["id"]], by_origin[S3["id"]]
    assert user_text(v1) == good1 and v1["messages"][1] == S1["messages"][1] and v1["meta"]["answer"] == S1["meta"]["answer"]
    assert v3["messages"][0]["content"][0] == {"type": "image"} and v3["images"] == S3["images"]
    assert v3["messages"][0]["content"][1]["text"] == "Is there a fracture of the left femur, please?"
    assert v1["meta"]["rewriter"] == "local" and v1["id"] != S1["id"] and v3["id"] != S3["id"]


def test_rewrite_samples_picks_an_exact_seeded_share_independent_of_order():
    diseases = ["asthma", "gout", "anemia", "psoriasis", "malaria", "rickets", "scurvy", "tetanus", "mumps", "croup"]
    samples = [_sample("medquad", f"What is {d}?", f"{d} is a disease.") for d in diseases]
    params = RewriteParams(share=0.3)
    a = rewrite_samples(samples, LocalRewriter(), lambda t: [], params, seed=3)
    shuffled = list(samples)
    random.Random(0).shuffle(shuffled)
    b = rewrite_samples(shuffled, LocalRewriter(), lambda t: [], params, seed=3)
    assert a.read == 3 == len(a.kept) + len(a.rejected)                  # round(0.3 * 10) samples, 1 variant each
    assert [s["id"] for s in a.kept] == [s["id"] for s in b.kept] and a.rejected == b.rejected
    assert all(s["meta"]["rewrite_of"] in {x["id"] for x in samples} for s in a.kept)


def test_rewrite_samples_needs_every_role_it_is_told_to_rewrite():
    out = rewrite_samples([S2], LocalRewriter(), lambda t: [], RewriteParams(share=1.0, roles=("system", "user")), 1)
    assert out.read == 0 and not out.kept and not out.rejected
