"""Process reward on the reasoning (<think> block): framework completeness, logical robustness, depth.

Paper §5.2.2 scores the reasoning itself, not only the answer, on three criteria judged by an LLM:
whether it follows a complete clinical reasoning framework, whether its logic is robust (the
conclusion follows and matches the answer, no self-contradiction), and whether it explores enough
(weighs alternatives). The local path here, `score`, is a deterministic, code-checkable PROXY of those
criteria (cue phrases, the project's answer parsers, counts) -- cheap enough for every rollout and
reproducible, but a heuristic: it rewards the visible shape of good reasoning, not its medical
correctness. `judge_prompt` / `judge` are the paper's LLM-judge path with the same three criteria.

    s = score(item)     # Score(value, {"framework": .., "robustness": .., "depth": .., ...}); None: no <think>

1. framework completeness = fraction of the four stages of clinical reasoning with a cue present:

   | stage       | cue phrases (case-insensitive, whole words)                                          |
   |-------------|--------------------------------------------------------------------------------------|
   | restate     | "the question asks", "we are asked/given", "presents with", "N-year-old",            |
   |             | "key/relevant findings", "history of", "complains of", "let me restate/summarize"   |
   | hypotheses  | "differential", "could/might/may be", "possible/possibly", "consider", "candidate",  |
   |             | "alternative(ly)", "option X", "suspect", "hypothesis", "what about"                |
   | evidence    | "because", "since", "due to", "given that", "supports", "consistent with",           |
   |             | "points to", "argues for/against", "suggests", "indicates", "rules out", "excluded", |
   |             | "doesn't fit", "evidence", "characteristic", "typical", "classic", "hallmark"        |
   | conclusion  | "therefore", "thus", "hence", "in conclusion", "the answer is", "answer:",           |
   |             | "most likely", "the diagnosis/cause is", "the best option/choice/answer",           |
   |             | "I'll go with", "conclude"                                                           |

2. logical robustness: 0 when the reasoning is unclosed. Otherwise agreement of the reasoning's
   conclusion with the final answer after </think>: choice items compare the option letter the
   reasoning ends on (eval.parsing.parse_choice on the reasoning: its last answer statement) with the
   answer's; judgement items the yes/no/maybe label; other kinds the content-word overlap coefficient
   |C & A| / min(|C|, |A|) between the conclusion sentence (the last sentence with a conclusion cue, else
   the last sentence) and the answer. Agree 1, disagree 0, no final answer 0, no conclusion in the
   reasoning `no_conclusion` (0.5: nothing contradicts, nothing confirms). Self-contradiction (answer
   statements in the reasoning naming different options/labels: "the answer is A" ... "the answer is B")
   multiplies it by 1 - contradiction_penalty.
3. exploratory depth = min(1, n / k): n distinct candidates weighed -- options mentioned for choice
   items (by letter: "option B", "(B)", "B is ...", a line "B) ...", "the answer is B."; or by text),
   with k capped at the number of options; otherwise the distinct phrases named after hypothesis cues
   ("could be X", "consider X or Y", "differential includes X, Y and Z", "rule out X", "versus X").
   Counting every distinct content word instead would saturate k = 3 for any reasoning at all. Each
   distinct sentence repeated `loop_min`+ times (a degenerate loop) multiplies depth by 1 - loop_penalty.

value = weighted mean of the three (ProcessParams.weights, equal by default). An empty <think></think>
scores 0 on all three.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence

from eval.parsing import normalize_answer, parse_choice, parse_label
from tasks.reward.item import RewardItem, Score, split_thinking
from tasks.reward.router import asks_to_reason
from tasks.reward.shaping import segment_counts

CRITERIA = ("framework", "robustness", "depth")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _cues(*patterns: str) -> re.Pattern:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I)


STAGES: dict[str, re.Pattern] = {
    "restate": _cues(
        r"\b(?:the\s+)?(?:question|problem|stem|case|vignette)\s+(?:asks|is\s+asking|describes|presents|wants)\b",
        r"\b(?:we\s+are|we're|i\s+am|i'm)\s+(?:asked|given|told)\b", r"\bpresent(?:s|ing|ed)?\s+with\b",
        r"\b\d+[- ](?:year|month|week|day)s?[- ]old\b",
        r"\b(?:key|main|relevant|important|clinical)\s+(?:findings?|features?|points?|facts?|details?)\b",
        r"\bhistory\s+of\b", r"\bcomplain(?:s|ing)?\s+of\b",
        r"\blet\s+me\s+(?:restate|summari[sz]e|re-?read|recap|list)\b"),
    "hypotheses": _cues(
        r"\bdifferential\b", r"\b(?:could|might|may)\s+be\b", r"\bpossib(?:le|ly|ility|ilities)\b",
        r"\bconsider(?:s|ed|ing)?\b", r"\bcandidates?\b", r"\balternative(?:s|ly)?\b",
        r"\b(?:option|choice)\s*\(?[a-z]\)?(?![a-z0-9])", r"\bsuspect(?:s|ed)?\b", r"\bhypothes[ie]s\b",
        r"\bwhat\s+about\b"),
    "evidence": _cues(
        r"\bbecause\b", r"\bsince\b", r"\bdue\s+to\b", r"\bgiven\s+that\b",
        r"\b(?:supports?|supporting|consistent\s+with|inconsistent\s+with)\b",
        r"\bpoints?\s+(?:to|towards?)\b", r"\bargues?\s+(?:for|against)\b",
        r"\b(?:suggests?|suggestive|suggesting|indicates?|indicative|indicating)\b",
        r"\b(?:rules?\s+out|ruled\s+out|exclude[sd]?|doesn'?t\s+fit|does\s+not\s+fit)\b",
        r"\b(?:evidence|characteristic|typical(?:ly)?|classic(?:al|ally)?|hallmark|pathognomonic)\b"),
    "conclusion": _cues(
        r"\b(?:therefore|thus|hence|in\s+conclusion|to\s+conclude|conclude[sd]?)\b",
        r"\b(?:the\s+)?(?:final\s+|correct\s+|right\s+|best\s+)?answer\s+(?:is|would\s+be|should\s+be|must\s+be)\b",
        r"\banswer\s*[:：]", r"\bmost\s+likely\b", r"\bthe\s+(?:diagnosis|cause)\s+is\b",
        r"\bthe\s+best\s+(?:option|choice|answer|next\s+step)\b",
        r"\bi(?:\s+will|'ll|\s+would|'d)\s+(?:go\s+with|choose|pick|select|answer)\b"),
}

# an answer statement inside the reasoning, read to the end of its sentence
_STATEMENT = re.compile(r"\b(?:final\s+answer|(?:the\s+)?(?:correct\s+|right\s+|best\s+)?answer)\s*"
                        r"(?:is|would\s+be|should\s+be|must\s+be|[:：])[^\n]*?(?:[.!?](?=\s|$)|\n|$)", re.I)
_SENTENCE = re.compile(r"[^\n.!?]+(?:[.!?]+|$)")
_TERM = re.compile(r"[a-z][a-z0-9'-]*")
STOPWORDS = frozenset("""
a an the and or but if then than so of to in on at by for with from into onto as is are was were be been being
it its this that these those there here which who whom whose what when where why how not no nor do does did
done have has had having can could may might must should would will shall i we you he she they me us him her
them my our your his their also very more most less least much many some any all each every both either
neither other such only just even still yet about above below over under again further once same too
patient patients likely unlikely possibly probably maybe perhaps answer option options choice question
let think consider considering could be seems seem given because since therefore thus hence
""".split())
# phrases after these cues name candidate hypotheses
_HYPOTHESIS = re.compile(
    r"\b(?:could\s+be|might\s+be|may\s+be|consider(?:ing|ed)?"
    r"|differential(?:\s+diagnos[ie]s)?(?:\s+(?:includes?|is|are|of))?"
    r"|rule\s+out|ruled\s+out|versus|vs\.?|suspect(?:ing|ed)?|possibilit(?:y|ies)\s+(?:is|are|include)"
    r"|think\s+of|candidates?\s+(?:is|are|include)|what\s+about)\s*:?\s*([^.;:!?\n]+)", re.I)
_SPLIT_CANDIDATES = re.compile(r",|\bor\b|\band\b|\bversus\b|\bvs\.?", re.I)
_LETTER_MENTION = (
    re.compile(r"\b(?:option|choice)\s*\(?([A-Za-z])\)?(?![A-Za-z0-9])", re.I),
    re.compile(r"\(([A-Z])\)"),
    re.compile(r"^[ \t*_-]*([A-Z])[).:][ \t]", re.M),
    re.compile(r"(?<![A-Za-z0-9'’])([A-Z])\s+(?:is|seems|would|could|does|doesn'?t|fits|isn'?t)\b"),
    re.compile(r"\b(?:answer|choose|chose|pick|select|with|is|so)\s*[:：]?\s*\(?([A-Z])\)?(?=[.,;:!?)]|\s*$)", re.M),
)


@dataclasses.dataclass(frozen=True)
class ProcessParams:
    """weights: the three criteria's weights (equal by default). k: candidates weighed for full depth
    (3: a differential of three is the usual minimum). no_conclusion: robustness when the reasoning
    states no conclusion. contradiction_penalty: share of robustness lost to answer statements naming
    different answers. loop_min / loop_penalty: a sentence (>= 3 words) occurring loop_min times is a
    degenerate loop; each one halves depth."""
    weights: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"framework": 1.0, "robustness": 1.0, "depth": 1.0})
    k: int = 3
    no_conclusion: float = 0.5
    contradiction_penalty: float = 0.5
    loop_min: int = 3
    loop_penalty: float = 0.5

    def __post_init__(self):
        if set(self.weights) != set(CRITERIA) or any(w < 0 for w in self.weights.values()) \
                or sum(self.weights.values()) <= 0:
            raise ValueError(f"weights must give each of {CRITERIA} a non-negative weight, sum > 0")
        if self.k < 1:
            raise ValueError("k must be >= 1")


def _options(item: RewardItem) -> dict[str, str]:
    return {LETTERS[i]: t for i, t in enumerate(item.options)}


def framework(think: str) -> tuple[float, list[str]]:
    """(fraction of the stages present, the stages found)."""
    found = [stage for stage, pat in STAGES.items() if pat.search(think)]
    return len(found) / len(STAGES), found


def content_terms(text: str) -> set[str]:
    return {w for w in _TERM.findall(text.lower()) if len(w) >= 3 and w not in STOPWORDS}


def _conclusion_sentence(think: str) -> str:
    sentences = [s.strip() for s in _SENTENCE.findall(think) if s.strip()]
    for s in reversed(sentences):
        if STAGES["conclusion"].search(s):
            return s
    return sentences[-1] if sentences else ""


def _stated_answers(think: str, read) -> list[str]:
    """Every answer the reasoning states ("the answer is A", "Answer: no"), read by `read`."""
    out = []
    for m in _STATEMENT.finditer(think):
        got = read(m.group(0))
        if got.ok:
            out.append(got.value)
    return out


def robustness(item: RewardItem, think: str, answer: str, closed: bool,
               params: ProcessParams = ProcessParams()) -> tuple[float, dict]:
    """(logical robustness, why)."""
    if not closed:
        return 0.0, {"reason": "unclosed"}
    if item.answer_kind == "choice" and item.options:
        opts = _options(item)
        def read(t):
            return parse_choice(t, opts)
    elif item.answer_kind == "judgement":
        def read(t):
            return parse_label(t)
    else:
        read = None
    why: dict = {}
    if read is not None:
        final, concl = read(answer), read(think)
        why.update(final=final.value, conclusion=concl.value)
        if not final.ok:
            agree, why["reason"] = 0.0, "no_final_answer"
        elif not concl.ok:
            agree, why["reason"] = params.no_conclusion, "no_conclusion"
        else:
            agree = 1.0 if final.value == concl.value else 0.0
        stated = sorted(set(_stated_answers(think, read)))
    else:
        a, c = content_terms(answer), content_terms(_conclusion_sentence(think))
        if not a:
            agree, why["reason"] = 0.0, "no_final_answer"
        elif not c:
            agree, why["reason"] = params.no_conclusion, "no_conclusion"
        else:
            agree = len(a & c) / min(len(a), len(c))
            why["overlap"] = sorted(a & c)
        stated = []
    if len(stated) > 1:
        why["contradiction"] = stated
        agree *= 1.0 - params.contradiction_penalty
    return agree, why


def candidates(item: RewardItem, think: str) -> list[str]:
    """The distinct candidates the reasoning weighs: option letters for choice items, else the
    phrases named after hypothesis cues (their first three content words)."""
    if item.answer_kind == "choice" and item.options:
        opts = _options(item)
        found = {m.group(1).upper() for pat in _LETTER_MENTION for m in pat.finditer(think)}
        norm = f" {normalize_answer(think)} "
        found |= {k for k, t in opts.items() if len(normalize_answer(t)) > 2 and f" {normalize_answer(t)} " in norm}
        return sorted(found & set(opts))
    keys = set()
    for m in _HYPOTHESIS.finditer(think):
        for piece in _SPLIT_CANDIDATES.split(m.group(1)):
            terms = [w for w in _TERM.findall(piece.lower()) if len(w) >= 3 and w not in STOPWORDS]
            if terms:
                keys.add(" ".join(terms[:3]))
    return sorted(keys)


def depth(item: RewardItem, think: str, params: ProcessParams = ProcessParams()) -> tuple[float, dict]:
    """(exploratory depth, why)."""
    cands = candidates(item, think)
    k = min(params.k, len(item.options)) if item.answer_kind == "choice" and item.options else params.k
    value = min(1.0, len(cands) / k)
    loops = sorted(s for s, n in segment_counts(think, 3).items() if n >= params.loop_min)
    value *= (1.0 - params.loop_penalty) ** len(loops)
    return value, {"candidates": cands, "k": k, "loops": [s[:80] for s in loops]}


def _combine(subs: dict[str, float], params: ProcessParams) -> float:
    total = sum(params.weights.values())
    return min(1.0, max(0.0, sum(params.weights[c] * subs[c] for c in CRITERIA) / total))


def score(item: RewardItem, params: ProcessParams = ProcessParams()) -> Score:
    """The heuristic process reward (module docstring); None when the completion has no <think> block."""
    split = split_thinking(item.completion)
    if split.think is None:
        # a prompt that asks for reasoning and gets none scores 0, so skipping the <think> block never
        # pays more than reasoning does; elsewhere the component does not apply
        return Score(0.0 if asks_to_reason(item) else None, {"reason": "no_think"})
    think = split.think
    if not think.strip():
        return Score(0.0, {"reason": "empty_think", **dict.fromkeys(CRITERIA, 0.0)})
    fw, stages = framework(think)
    rob, rob_why = robustness(item, think, split.answer, split.closed, params)
    dep, dep_why = depth(item, think, params)
    subs = {"framework": fw, "robustness": rob, "depth": dep}
    return Score(_combine(subs, params), {**subs, "stages": stages, "robustness_why": rob_why, "depth_why": dep_why,
                                          "source": "heuristic"})


# ---- the paper's LLM-judge path -------------------------------------------------------------
JUDGE_SYSTEM = (
    "You grade the reasoning of an answer to a medical question. Grade only the reasoning, on three "
    "criteria, each an integer from 0 to 10:\n"
    "- framework: does it follow a complete clinical reasoning framework -- restate the question and the key "
    "findings, list candidate diagnoses/options, check them against the evidence, reach a conclusion?\n"
    "- robustness: is the logic sound -- each step follows, no self-contradiction, and the conclusion of the "
    "reasoning is the final answer given after it? An unfinished reasoning scores 0.\n"
    "- depth: does it weigh enough alternatives and the evidence for and against each, without repeating itself?\n"
    'Reply with one JSON object only: {"framework": <0-10>, "robustness": <0-10>, "depth": <0-10>}.')
REPAIR = ('Your reply could not be read ({problem}). Reply with one JSON object only: '
          '{{"framework": <0-10>, "robustness": <0-10>, "depth": <0-10>}}.')


def judge_prompt(item: RewardItem) -> list[dict]:
    """The chat asking an LLM judge for the three criteria (0-10 each) of one completion's reasoning."""
    split = split_thinking(item.completion)
    opts = "".join(f"\n{k}. {t}" for k, t in _options(item).items())
    reasoning = split.think or ""
    if not split.closed:
        reasoning += "\n[the reasoning was never finished]"
    user = (f"Question:\n{item.query}{opts}\n\nReasoning:\n{reasoning}\n\nFinal answer:\n{split.answer or '(none)'}")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_judgement(reply: str) -> dict[str, float]:
    """The three criteria in [0, 1] from a judge reply; ParseError (a ValueError) when unusable."""
    from tasks.llm.parsing import ParseError, parse_json_like

    obj = parse_json_like(reply, expect=dict)
    out = {}
    for c in CRITERIA:
        v = obj.get(c)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 10:
            raise ParseError(f"{c!r} must be a number from 0 to 10, got {json.dumps(v)}", reply)
        out[c] = v / 10.0
    return out


def judge(items: Sequence[RewardItem], client, params: ProcessParams = ProcessParams(), **llm) -> list[Score]:
    """The LLM-judge process reward of each item (items without <think>: as `score`; None for replies
    that stay unreadable after one repair turn, with the failure in detail)."""
    from tasks.llm.ask import ask_parsed

    todo = [i for i, it in enumerate(items) if split_thinking(it.completion).think is not None]
    answers = ask_parsed(client, [judge_prompt(items[i]) for i in todo], parse_judgement, REPAIR, **llm)
    # without a <think> block: 0 where the prompt asks for reasoning, as `score` (nothing to send the judge)
    out = [Score(0.0 if asks_to_reason(it) else None, {"reason": "no_think"}) for it in items]
    for i, a in zip(todo, answers):
        if a.ok:
            out[i] = Score(_combine(a.value, params), {**a.value, "source": "llm", "repaired": a.repaired})
        else:
            out[i] = Score(None, {"reason": "judge_failed", "failure": a.failure})
    return out
