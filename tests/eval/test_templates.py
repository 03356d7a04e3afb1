"""Templates: fixed placement (images, context, question, options, format line), the thinking
variant, and the completion-style log-likelihood requests."""

from __future__ import annotations

import pytest

from eval.benchmarks import Item
from eval.templates import SYSTEM, fingerprint, generation_prompt, loglik_request

MCQ = Item("b", "1", "mcq", "choice", "Which organ filters blood?", ("C",),
           options=(("A", "Bladder"), ("B", "Kidney stone"), ("C", "Kidney")))
YESNO = Item("p", "2", "yesno", "yesno", "Does X reduce Y?", ("no",), choices=("yes", "no", "maybe"),
             context="Background: a trial of X.")
VQA = Item("v", "3", "vqa", "open", "Where is the lesion?", ("left",), images=("/img/a.jpg", "/img/b.jpg"))


def test_mcq_prompt_layout():
    p = generation_prompt(MCQ)
    assert p.system == SYSTEM and p.images == []
    text = p.text
    assert text.index("multiple-choice") < text.index("Question:") < text.index("A. Bladder") < text.index("Answer: X")
    assert "C. Kidney" in text and "<think>" not in text


def test_context_goes_before_the_question_and_labels_are_named():
    text = generation_prompt(YESNO).text
    assert text.index("Context:\nBackground") < text.index("Question: Does X")
    assert "yes, no or maybe" in text and "'Answer: yes/no/maybe'" in text


def test_images_come_first_in_order():
    p = generation_prompt(VQA)
    assert [k for k, _ in p.parts] == ["image", "image", "text"] and p.images == ["/img/a.jpg", "/img/b.jpg"]
    assert "short phrase" in p.text


def test_thinking_variant():
    text = generation_prompt(MCQ, "thinking").text
    assert "<think>" in text and "</think>" in text and text.endswith("give only the final answer in the format below.")
    with pytest.raises(ValueError):
        generation_prompt(MCQ, "verbose")


def test_loglik_requests():
    req = loglik_request(MCQ)
    assert req.continuations == (" Bladder", " Kidney stone", " Kidney") and req.gold == 2
    assert req.prompt.text.endswith("Answer:") and "A. Bladder" not in req.prompt.text and req.prompt.system == ""
    by_letter = loglik_request(MCQ, "letter")
    assert by_letter.continuations == (" A", " B", " C") and "A. Bladder" in by_letter.prompt.text
    yn = loglik_request(YESNO)
    assert yn.continuations == (" yes", " no", " maybe") and yn.gold == 1 and yn.labels == ("yes", "no", "maybe")
    with pytest.raises(ValueError, match="no fixed answer set"):
        loglik_request(VQA)


def test_fingerprint_is_stable():
    assert fingerprint() == fingerprint() and len(fingerprint()) == 12
