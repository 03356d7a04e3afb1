"""Prompt templates per answer kind and capability: one phrasing for every model (paper §6 "prompt
templates ... standardize instruction phrasing, answer format constraints, and the placement of
auxiliary context").

A prompt is a system line plus ordered parts, ("image", path) or ("text", str). Placement is fixed:
images first (as LLaVA-style models are trained), then the auxiliary context (an abstract), then
the question, then the options, then the answer-format constraint. The model adapter turns parts
into its own format (a chat template with image slots, an OpenAI message with data URLs, or plain
text with the processor's image token); the template itself knows no model.

Two styles for generation:
- `direct`: answer immediately in the stated format (`Answer: C`);
- `thinking`: reason inside <think>...</think> first, then the same answer line; the parser strips
  the block before reading the answer, so both styles are scored by the same rules.

Log-likelihood prompts (lm-evaluation-harness style, completion text, no chat template) end in
`Answer:`; the continuations are the option texts (` Glomerulus`: acc and length-normalized acc_norm
differ) or the letters (` C`, with the options listed in the prompt), per `continuation`.
"""

from __future__ import annotations

import dataclasses
import hashlib

from eval.benchmarks import Item

SYSTEM = "You are a medical expert. Answer accurately and follow the requested answer format exactly."

INSTRUCTION = {
    "choice": "Answer the following multiple-choice question.",
    "yesno": "Answer the following question with {labels}.",
    "open": "Answer the following question with a single word or a short phrase.",
    "longform": "Respond to the following request in full sentences, stating only what the input supports.",
    "ocr": "Transcribe all the text in the image exactly as written.",
}
FORMAT = {
    "choice": "Reply with the letter of the correct option on the last line, as 'Answer: X'.",
    "yesno": "Reply on the last line as 'Answer: {slash}'.",
    "open": "Reply on the last line as 'Answer: <your answer>'.",
    "longform": "Reply with the text only.",
    "ocr": "Reply with the transcription only.",
}
THINKING = ("First think step by step inside <think> and </think>. After </think>, give only the final "
            "answer in the format below.")
STYLES = ("direct", "thinking")
CONTINUATIONS = ("text", "letter")


@dataclasses.dataclass(frozen=True)
class Prompt:
    system: str
    parts: tuple[tuple[str, str], ...]
    thinking: bool = False      # chat templates with a reasoning switch get enable_thinking=this

    @property
    def images(self) -> list[str]:
        return [v for k, v in self.parts if k == "image"]

    @property
    def text(self) -> str:
        """The text parts joined (what a text-only model or a length estimate sees)."""
        return "".join(v for k, v in self.parts if k == "text")


@dataclasses.dataclass(frozen=True)
class LoglikRequest:
    prompt: Prompt                      # completion-style context ending in "Answer:"
    continuations: tuple[str, ...]      # one per option/label, each with its leading space
    labels: tuple[str, ...]             # the option letter / label of each continuation
    gold: int


def _labels_phrase(choices: tuple[str, ...]) -> str:
    words = list(choices)
    return ", ".join(words[:-1]) + f" or {words[-1]}" if len(words) > 1 else words[0]


def _body(item: Item, *, list_options: bool = True) -> str:
    lines = []
    if item.context:
        lines += ["Context:", item.context, ""]
    lines.append(f"Question: {item.question}")
    if item.kind == "choice" and list_options:
        lines.append("Options:")
        lines += [f"{k}. {v}" for k, v in item.options]
    return "\n".join(lines)


def _image_parts(item: Item) -> list[tuple[str, str]]:
    return [("image", p) for p in item.images]


def generation_prompt(item: Item, style: str = "direct") -> Prompt:
    if style not in STYLES:
        raise ValueError(f"style {style!r}: one of {STYLES}")
    kind = item.kind
    labels = _labels_phrase(item.choices) if kind == "yesno" else ""
    instruction = INSTRUCTION[kind].format(labels=labels)
    fmt = FORMAT[kind].format(slash="/".join(item.choices))
    # longform / ocr: the item's own question is the request ("Write the findings ...")
    text = "\n\n".join([instruction, _body(item), fmt])
    if style == "thinking":
        text = f"{text}\n{THINKING}"
    return Prompt(SYSTEM, (*_image_parts(item), ("text", text)), thinking=style == "thinking")


def loglik_request(item: Item, continuation: str = "text") -> LoglikRequest:
    """The completion-style context and the scored continuations of a closed item."""
    if continuation not in CONTINUATIONS:
        raise ValueError(f"continuation {continuation!r}: one of {CONTINUATIONS}")
    if item.kind == "choice":
        by_letter = continuation == "letter"
        body = _body(item, list_options=by_letter)
        labels = tuple(k for k, _ in item.options)
        conts = tuple(f" {k}" if by_letter else f" {v}" for k, v in item.options)
        gold = labels.index(item.answer)
    elif item.kind == "yesno":
        body = _body(item)
        labels = item.choices
        conts = tuple(f" {c}" for c in labels)
        gold = labels.index(item.answer)
    else:
        raise ValueError(f"{item.benchmark}/{item.id}: kind {item.kind} has no fixed answer set")
    return LoglikRequest(Prompt("", (*_image_parts(item), ("text", f"{body}\nAnswer:"))), conts, labels, gold)


def fingerprint() -> str:
    """Changes whenever any template text changes (part of a run's resume fingerprint)."""
    blob = repr((SYSTEM, sorted(INSTRUCTION.items()), sorted(FORMAT.items()), THINKING))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
