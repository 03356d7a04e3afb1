"""Filter for non-self-contained text (paper §3.3.1: "rigorous filtering for non-self-contained
expressions"): a synthesized sample must make sense on its own, without the document, figure or
earlier turn it was cut from.

    from tasks.cpt_synthesis.self_contained import dangling_reference, filter_self_contained
    dangling_reference("As shown in Figure 2, the lesion grows.")  # -> ("figure_table_reference", "shown in Figure 2")
    outcome = filter_self_contained(samples)                        # kept samples, rejected with a reason

Reasons (the first that matches wins, in this order):
    external_reference      "the above", "aforementioned", "mentioned earlier", "the following table",
                            "described below", "previous section", 上述 / 以下表格 ...
    figure_table_reference  "as shown in Figure 2", "(Fig. 3)", "Table 1", "supplementary", 如图 / 见表 ...
    study_reference         "this study", "the present study", "our patients", "this paper", 本研究 ...
    dangling_demonstrative  "these patients", "this finding", "such cases" in the first sentence, where
                            nothing earlier can be what they point at
    pronoun_start           the text starts with an unresolved pronoun ("It is ...", "They ...", "This ...")
    unresolved_pronoun      the text ends on a pronoun with nothing to resolve it ("What causes it?")

Image samples: a demonstrative naming the attached image ("this chest X-ray", "this lab report") is
resolved by the image and allowed. Conversations: user turns are checked with every rule (a question is the sample's context); answers
may start with a pronoun or a demonstrative (the question holds the antecedent) but not point outside
the sample. Why rules and not a model: deterministic, explainable per rejection, and these phrases are
exactly the failure the paper names ("ambiguity from dangling references").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from tasks.cpt_synthesis.samples import Outcome

_I = re.IGNORECASE
EXTERNAL = re.compile(
    r"\b(?:the above|above[- ]mentioned|aforementioned|aforesaid|as (?:mentioned|noted|stated|described|discussed) "
    r"(?:above|below|earlier|previously|before)|(?:mentioned|described|discussed|listed|shown) (?:above|below|earlier|previously)"
    r"|the following (?:table|figure|list|passage|text|section|paragraph|chart|image)s?|the (?:table|figure|list|chart) "
    r"below|(?:previous|preceding|next|following) (?:section|chapter|paragraph|page)|in this (?:chapter|section))\b"
    r"|上述|前述|如上所述|以下表格|下表|下图|前文", _I)
FIGURE_TABLE = re.compile(
    r"(?:\b(?:as )?(?:shown|seen|illustrated|depicted|presented|summari[sz]ed) in (?:the )?(?:fig(?:ure)?s?\.?|tables?)\s*\d*"
    r"|\((?:see )?(?:fig(?:ure)?s?\.?|tables?|suppl\w*)\s*[\dA-Z]"
    r"|\b(?:see|in) (?:fig(?:ure)?s?\.?|tables?|panel)\s*\d+"
    r"|\b(?:fig(?:ure)?\.?|table)\s+\d+[a-z]?\b|\bsupplementary (?:table|figure|material|data)"
    r"|如图\s*\d*|见表\s*\d*|见图\s*\d*|表\s*\d+所示|图\s*\d+所示)", _I)
STUDY = re.compile(
    r"\b(?:this|the present|the current|our) (?:study|paper|article|trial|review|report|work|analysis|cohort|series|survey"
    r"|investigation|experiment|meta-analysis)\b|\bour (?:patients|results|findings|data|participants|subjects)\b"
    r"|\bthe authors\b|\bin this case report\b|本研究|本文|我们的研究", _I)
DEMONSTRATIVE = re.compile(
    r"\b(?:these|those|this|that|such|the same|said) (?:patients?|subjects?|participants?|results?|findings?|cases?|data"
    r"|individuals|cohort|group|drugs?|compounds?|lesions?|conditions?|diseases?|effects?|changes|mice|rats|samples?"
    r"|values?|images?|methods?|approach)\b|这些患者|该患者|这些结果|该研究", _I)
PRONOUN_START = re.compile(
    r"^\s*(?:[\-–•*]\s*)?(?:it|its|they|them|their|theirs|he|she|his|her|this|these|those|that|such|both|it's|they're)\b"
    r"|^\s*(?:它|他们|她|他|其|这些|该)", _I)
PRONOUN_END = re.compile(r"\b(?:it|them|this|these|those|that|him|her)\s*[?.!。？]?\s*$", re.IGNORECASE)
IMAGE_DEIXIS = re.compile(
    r"\b(?:this|these|the above|the shown) (?:[\w-]+ ){0,3}?(?:images?|pictures?|photos?|scans?|films?|radiographs?|"
    r"x-rays?|ct|mri|studies|study|reports?|slices?|views?)\b|这张(?:图片|图像|报告单|检验报告单)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def first_sentence(text: str) -> str:
    return _SENTENCE_END.split(text.strip(), maxsplit=1)[0]


def dangling_reference(text: str, *, is_answer: bool = False) -> tuple[str, str] | None:
    """(reason, matched phrase) for the first dangling reference in `text`, or None if self-contained.

    `is_answer`: the text answers a question in the same sample, so a leading pronoun or a
    demonstrative can point at the question and is allowed.
    """
    for reason, pattern in (("external_reference", EXTERNAL), ("figure_table_reference", FIGURE_TABLE),
                            ("study_reference", STUDY)):
        m = pattern.search(text)
        if m:
            return reason, m.group(0).strip()
    if is_answer:
        return None
    m = DEMONSTRATIVE.search(first_sentence(text))
    if m:
        return "dangling_demonstrative", m.group(0)
    m = PRONOUN_START.search(text)
    if m:
        return "pronoun_start", m.group(0).strip()
    m = PRONOUN_END.search(text)
    if m:
        return "unresolved_pronoun", m.group(0).strip()
    return None


def _content_text(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def sample_dangling(sample: dict) -> tuple[str, str] | None:
    """The first dangling reference in a CPT sample (text, or each turn of its conversation). In a
    sample that carries its image, "this image" / "this X-ray" / "this report" points at that image."""
    has_image = bool(sample.get("images"))
    if sample.get("text"):
        return dangling_reference(sample["text"])
    for m in sample.get("messages", []):
        text = _content_text(m["content"])
        if has_image:
            text = IMAGE_DEIXIS.sub("the image", text)
        found = dangling_reference(text, is_answer=m["role"] == "assistant")
        if found:
            return found
    return None


def filter_self_contained(samples: Iterable[dict]) -> Outcome:
    """Keep self-contained samples; reject the others with reason and the matched phrase."""
    out = Outcome()
    for s in samples:
        found = sample_dangling(s)
        if found is None:
            out.kept.append(s)
        else:
            out.reject(found[0], f"matched {found[1]!r}", {"id": s.get("id"), "task": s.get("task")})
    return out
