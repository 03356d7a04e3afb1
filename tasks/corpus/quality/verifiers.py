"""Second-pass verification of the classifier's calls (paper §3.1: "a more capable LLM").

One interface, two implementations (ARCHITECTURE.md "LLM roles"): `verify(texts) -> list[label]` where a
label is "high", "low", or None when the verifier could not decide (None is never silent: it is
counted in `stats` and described in `failures`).
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

from tasks.corpus.quality.classifier import HIGH, LOW
from tasks.corpus.quality.signals import gopher_failures, signals


class Verifier(Protocol):
    name: str
    stats: dict[str, int]
    failures: list[dict]

    def verify(self, texts: Sequence[str]) -> list[str | None]: ...


@dataclasses.dataclass
class LocalVerifierParams:
    min_words: int = 20                 # radiology impressions are short but real
    max_dup_5gram_frac: float = 0.5     # relaxed Gopher limit, see signals.gopher_failures
    # Gopher's stop-word rule rejects telegraphic clinical style ("Heart size normal. No effusion.");
    # text at least this dense in medical terms is exempt from it.
    terse_clinical_density: float = 0.1
    max_oov_rate: float = 0.3           # real text p99 0.27 with a 430-text pool; char noise p1 0.29
    max_junk_word_frac: float = 0.02    # real MedQuAD p99 0.006; char noise p1 0.033
    min_medical_density: float = 0.02
    max_bad_determiner_rate: float = 0.15
    min_capitalized_sentence_frac: float = 0.5
    max_boilerplate_per_word: float = 0.05


class LocalVerifier:
    """Rules-based verifier: no LLM, independent of the classifier's features.

    Why it is the default: the only instruct model reachable offline here is SmolLM2-135M, which is
    too small to judge text quality (measured: it labels real, shuffled and boilerplate text alike
    "high"). Why it is a meaningful check on fastText: fastText sees hashed word n-grams; this
    verifier sees document statistics instead -- Gopher quality rules (length, word length,
    symbols, bullets, stop words, duplicate 5-grams), medical-term density, a fluency proxy
    (determiners followed by function words; sentences starting in upper case) and noise proxies
    (garbage-symbol words; out-of-vocabulary rate against a vocabulary of the real corpus). A text
    is "low" if it fails any check; `failures` stays empty because a rule always decides.
    """

    name = "local"

    def __init__(self, params: LocalVerifierParams | None = None, vocab: set[str] | None = None):
        self.params = params or LocalVerifierParams()
        self.vocab = vocab
        self.stats = {"verified": 0, HIGH: 0, LOW: 0, "failed": 0}
        self.failures: list[dict] = []

    def reasons(self, text: str) -> list[str]:
        """The checks `text` fails (empty list: high quality)."""
        p = self.params
        s = signals(text, self.vocab)
        out = gopher_failures(s, p.min_words, p.max_dup_5gram_frac)
        if "stopwords" in out and s["medical_density"] >= p.terse_clinical_density:
            out.remove("stopwords")
        if s.get("oov_rate", 0.0) > p.max_oov_rate:
            out.append("oov_rate")
        if s["junk_word_frac"] > p.max_junk_word_frac:
            out.append("junk_words")
        if s["medical_density"] < p.min_medical_density:
            out.append("not_medical")
        if s["n_determiners"] >= 5 and s["bad_determiner_rate"] > p.max_bad_determiner_rate:
            out.append("disfluent")
        if s["sentence_ends"] >= 3 and s["capitalized_sentence_frac"] < p.min_capitalized_sentence_frac:
            out.append("sentence_case")
        if s["boilerplate_per_word"] > p.max_boilerplate_per_word:
            out.append("boilerplate")
        return out

    def verify(self, texts: Sequence[str]) -> list[str | None]:
        labels = [LOW if self.reasons(t) else HIGH for t in texts]
        self.stats["verified"] += len(labels)
        self.stats[HIGH] += labels.count(HIGH)
        self.stats[LOW] += labels.count(LOW)
        return list(labels)


@dataclasses.dataclass
class LLMVerifierParams:
    max_chars: int = 1500          # text shown to the model; fits the embedded server's n_ctx 2048
    # Ask the server to constrain decoding to the label schema (OpenAI-style response_format
    # json_object + schema: llama.cpp server and vLLM honour it). Turn off for endpoints that
    # reject the `schema` field; the strict parser + one repair turn then do the work alone.
    constrained_json: bool = True


LABEL_FORMAT = {"type": "json_object",
                "schema": {"type": "object", "properties": {"label": {"enum": ["high", "low"]}},
                           "required": ["label"]}}

SYSTEM = "You are a strict annotator of medical pre-training data. You answer only with JSON."
PROMPT = ("Judge the quality of the text below as medical pre-training data. High quality means "
          "fluent, coherent, informative medical or health text. Low quality means garbled, "
          "shuffled, repetitive, boilerplate/navigation, fragmentary or non-medical text.\n"
          'Answer with exactly one JSON object: {{"label": "high"}} or {{"label": "low"}}.\n\n'
          "Text:\n<<<\n{text}\n>>>")
# a str.format template for ask_parsed (no {problem}: the turn is the same text it always was, so
# cached repair replies stay valid)
REPAIR = ('Your answer was not valid. Reply with exactly {{"label": "high"}} or {{"label": "low"}} '
          "and nothing else.")


class LLMVerifier:
    """The paper's method: ask an LLM through the project client, parse strict JSON.

    Replies go through tasks.llm.ask.ask_parsed: an unparseable reply is retried once with a repair
    turn (a different request, so the response cache does not just replay the bad reply); if that
    also fails, or a request fails, the label is None and the case is recorded in `failures`
    (first-pass request failures first, then what the repair turn did not fix), never guessed.
    """

    name = "llm"

    def __init__(self, client, params: "LLMVerifierParams | None" = None):
        self.client = client
        self.params = params or LLMVerifierParams()
        self.max_chars = self.params.max_chars  # keeps prompt + reply inside the server's n_ctx
        self.stats = {"verified": 0, HIGH: 0, LOW: 0, "failed": 0, "parsed_first": 0,
                      "parsed_after_repair": 0, "parse_failures": 0, "request_failures": 0}
        self.failures: list[dict] = []

    def messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": PROMPT.format(text=text[:self.max_chars])}]

    @staticmethod
    def parse_label(reply: str) -> str:
        from tasks.llm.parsing import ParseError, parse_json_like
        obj = parse_json_like(reply, expect=dict)
        label = str(obj.get("label", "")).strip().lower()
        if label not in (HIGH, LOW):
            raise ParseError(f"label {label!r} is not 'high' or 'low'", reply)
        return label

    def verify(self, texts: Sequence[str]) -> list[str | None]:
        from tasks.llm.ask import ask_parsed

        unparsed = 0  # replies (first or repaired) that did not parse

        def parse(reply: str) -> str:
            nonlocal unparsed
            try:
                return self.parse_label(reply)
            except ValueError:
                unparsed += 1
                raise

        kw = {"response_format": LABEL_FORMAT} if self.params.constrained_json else {}
        answers = ask_parsed(self.client, [self.messages(t) for t in texts], parse, REPAIR, **kw)
        labels: list[str | None] = [a.value if a.ok else None for a in answers]
        first_failed = [(t, a.failure) for t, a in zip(texts, answers)
                        if not a.ok and a.failure["kind"] == "request_failed"]
        after_repair = [(t, a.failure) for t, a in zip(texts, answers)
                        if not a.ok and a.failure["kind"] != "request_failed"]
        for text, f in first_failed + after_repair:
            self._record(text, f)
        # `unparsed` counts first replies (each got a repair turn) and repair replies that did not parse
        # (raw_repair text); a repair turn ended parsed, unparsed, or with its request failed
        unparsed_repairs = sum(isinstance(f.get("raw_repair"), str) for _, f in after_repair)
        repaired = (unparsed - unparsed_repairs) - len(after_repair)
        self.stats["parsed_after_repair"] += repaired
        self.stats["parsed_first"] += sum(a.ok for a in answers) - repaired
        self.stats["verified"] += len(texts)
        self.stats[HIGH] += labels.count(HIGH)
        self.stats[LOW] += labels.count(LOW)
        return labels

    def _record(self, text: str, failure: dict) -> None:
        """One `failures` entry from an ask_parsed failure: a request that failed (first or repair
        turn; raw is the error) or a reply the repair turn did not fix (raw is that reply)."""
        if failure["kind"] == "request_failed":
            kind, raw = "request_failed", failure["detail"]
        elif failure.get("raw_repair") is None:
            kind, raw = "request_failed", failure["detail"].split("; repair request failed: ", 1)[-1]
        else:
            kind, raw = "unparseable", failure["raw_repair"]
        self.stats["failed"] += 1
        self.stats["request_failures" if kind == "request_failed" else "parse_failures"] += 1
        self.failures.append({"kind": kind, "text_head": text[:100], "raw": raw[:300]})
