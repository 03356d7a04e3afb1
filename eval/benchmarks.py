"""Benchmark registry, loaders for the bundled benchmarks, and the bring-your-own JSONL format.

Every benchmark becomes a list of `Item`s of one task family (paper §6 "task normalization"):

| family   | what the model returns                 | scored as (`Item.kind`)                           |
|----------|----------------------------------------|---------------------------------------------------|
| mcq      | an option letter                       | `choice`: accuracy; also option log-likelihood    |
| yesno    | yes / no (/ maybe)                     | `yesno`: accuracy; also option log-likelihood     |
| short    | a short phrase or number               | `open`: exact match (numbers with units), F1, ... |
| vqa      | an answer about the image(s)           | `yesno`, `choice` or `open`, per item             |
| longform | a report / caption / long answer       | `longform`: ROUGE-L, BLEU, rubric judge           |
| ocr      | the text in the image                  | `ocr`: 1 - character error rate, exact match      |

Bundled (under `data_root`, default ../shared/data): medqa (MedQA-USMLE 4-option test), medmcqa
(dev), mmlu_medical (6 subjects; per-subject scores), pubmedqa (the 500 test ids, yes/no/maybe,
abstract as context), vqa_rad (test; closed and open questions with their images).

Item ids are the ones the clean stage's decontamination report uses (MedQA/MedMCQA `id`, MMLU
`<subject>:<line>`, PubMedQA PMID, VQA-RAD `qid:<qid>` plus the image file name), so the report
can say which evaluated items overlap the training data.

Bring your own benchmark: one JSONL file, one item per line, and one registry line --
`register(byo_spec("my_bench", "path/to/file.jsonl", "mcq", category="medical_text"))`, the
`eval.byo` params mapping, or `python -m eval --byo my_bench=mcq:path/to/file.jsonl`. Fields:

    common   id (str|int, unique, required), question (str, required), context (str),
             images (list of paths relative to the file's directory), subset (str), meta (dict)
    mcq      options: {"A": "...", "B": "..."} or ["...", "..."] (lettered A, B, ... in order);
             answer: the letter or the option's text
    yesno    answer: yes|no|maybe; choices: the label set (default ["yes", "no", "maybe"])
    short    answer: a string or a list of accepted strings
    vqa      images (required); answer: string or list; optional options (scored as mcq) or
             answer_type "closed" with a yes/no answer (scored as yes/no)
    longform reference: the reference text; key_points: list of statements for the rubric judge
    ocr      images (required); answer: the exact transcription

A line that cannot be used is quarantined with a reason (bad_json, invalid_utf8, line_too_large,
missing_field, duplicate_id, empty_options, bad_options, answer_not_in_options, ambiguous_gold_option,
multiple_gold_answers, bad_label, missing_image, unreadable_image, path_escape, missing_record), never
dropped: read = items + quarantined.

Memory is capped whatever the file: JSONL lines are read with a length cap (`MAX_RECORD_BYTES`, a
longer line is skipped as it streams and quarantined as line_too_large), and a JSON file read whole
(PubMedQA, VQA-RAD) above `MAX_FILE_BYTES`, not UTF-8, or not JSON stops the load with a
BenchmarkError that names it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from tasks.common.io import (
    MAX_FILE_BYTES,
    MAX_RECORD_BYTES,
    InputTooLarge,
    PathEscapeError,
    iter_bounded_lines,
    read_capped,
    safe_join,
)

FAMILIES = ("mcq", "yesno", "short", "vqa", "longform", "ocr")
KINDS = ("choice", "yesno", "open", "longform", "ocr")
CLOSED_KINDS = ("choice", "yesno")           # the kinds with a fixed answer set (log-likelihood mode)
YESNO_LABELS = ("yes", "no", "maybe")
LETTERS = string.ascii_uppercase

# The paper's capability categories (§6.1) plus its in-house OCR axis (§6.2).
CATEGORIES = ("visual_diagnosis", "medical_imaging", "diagnosis", "medical_text", "medical_report",
              "instruction_following", "ocr")
DEFAULT_CATEGORY = {"mcq": "medical_text", "yesno": "medical_text", "short": "medical_text",
                    "vqa": "medical_imaging", "longform": "medical_report", "ocr": "ocr"}


class BenchmarkError(ValueError):
    """A benchmark that cannot be loaded at all (missing file, unknown name or family)."""


@dataclasses.dataclass(frozen=True)
class Item:
    benchmark: str
    id: str
    family: str
    kind: str
    question: str
    answers: tuple[str, ...]                      # choice: (letter,); yesno: (label,); else accepted strings
    options: tuple[tuple[str, str], ...] = ()     # choice: ((letter, text), ...)
    choices: tuple[str, ...] = ()                 # yesno: the label set
    context: str = ""
    images: tuple[str, ...] = ()                  # absolute paths
    key_points: tuple[str, ...] = ()              # longform rubric
    subset: str = ""
    meta: tuple[tuple[str, Any], ...] = ()

    @property
    def option_map(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def answer(self) -> str:
        return self.answers[0]

    @property
    def chance(self) -> float:
        """Expected score of a uniform random guess (0 where the answer set is open)."""
        if self.kind == "choice":
            return 1.0 / len(self.options)
        if self.kind == "yesno":
            return 1.0 / len(self.choices)
        return 0.0

    @property
    def decontam_keys(self) -> set[str]:
        """Identifiers the decontamination report may name this item by (id, image file names)."""
        return {self.id, *(Path(p).name for p in self.images)}


@dataclasses.dataclass
class LoadResult:
    items: list[Item]
    quarantined: list[dict]
    read: int

    def check(self) -> None:
        if self.read != len(self.items) + len(self.quarantined):
            raise RuntimeError(f"accounting broken: read={self.read} items={len(self.items)} "
                               f"quarantined={len(self.quarantined)}")


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    family: str
    category: str
    path: str                                     # relative to data_root, or absolute
    loader: Callable[[BenchmarkSpec, Path], LoadResult]
    description: str = ""

    def resolve(self, data_root: Path) -> Path:
        p = Path(self.path)
        return p if p.is_absolute() else Path(data_root) / p


class Quarantine(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def quarantine_row(benchmark: str, item_id: str | None, reason: str, detail: str, locator: str) -> dict:
    return {"benchmark": benchmark, "id": item_id, "reason": reason, "detail": detail[:300],
            "locator": locator}


# ---- building and validating one item --------------------------------------------------------
def _as_options(raw: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(raw, dict):
        pairs = [(str(k).strip().upper(), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        if len(raw) > len(LETTERS):
            raise Quarantine("bad_options", f"{len(raw)} options (at most {len(LETTERS)})")
        pairs = list(zip(LETTERS, raw))
    else:
        raise Quarantine("empty_options", f"options is {type(raw).__name__}")
    if not pairs:
        raise Quarantine("empty_options", "no options")
    out = []
    for letter, text in pairs:
        if letter not in LETTERS or len(letter) != 1:
            raise Quarantine("bad_options", f"option key {letter!r} is not a single letter")
        if not isinstance(text, (str, int, float)) or not str(text).strip():
            raise Quarantine("empty_options", f"option {letter} is empty")
        out.append((letter, str(text).strip()))
    return tuple(out)


def _choice_answer(answer: Any, options: tuple[tuple[str, str], ...]) -> str:
    if isinstance(answer, list):
        if len(answer) != 1:
            raise Quarantine("multiple_gold_answers", f"answer {answer!r}")
        answer = answer[0]
    if not isinstance(answer, str) or not answer.strip():
        raise Quarantine("missing_field", "answer")
    a = answer.strip()
    letters = dict(options)
    if a.upper().strip("().") in letters and len(a.strip("().")) == 1:
        letter = a.upper().strip("().")
    else:  # the option's text instead of its letter
        hits = [k for k, text in options if text.casefold() == a.casefold()]
        if not hits:
            raise Quarantine("answer_not_in_options", f"answer {a[:80]!r} not among options {sorted(letters)}")
        letter = hits[0]
    # Real files repeat option texts (MedMCQA: "(C) Not Recalled (D) Not Recalled"); harmless unless
    # the gold option is one of the copies: then no answer, by letter or by text, is uniquely right.
    gold = letters[letter].casefold()
    if sum(t.casefold() == gold for t in letters.values()) > 1:
        raise Quarantine("ambiguous_gold_option", f"gold option {letter} has the same text as another option")
    return letter


def _answers(raw: Any) -> tuple[str, ...]:
    vals = raw if isinstance(raw, list) else [raw]
    out = tuple(str(v).strip() for v in vals if isinstance(v, (str, int, float)) and str(v).strip())
    if not out:
        raise Quarantine("missing_field", "answer")
    return out


def _images(raw: Any, base: Path) -> tuple[str, ...]:
    if raw in (None, ""):
        return ()
    paths = raw if isinstance(raw, list) else [raw]
    out = []
    for rel in paths:
        try:
            p = safe_join(base, rel)
        except PathEscapeError as e:
            raise Quarantine("path_escape", str(e)) from None
        if not p.is_file():
            raise Quarantine("missing_image", str(rel))
        try:
            from PIL import Image

            with Image.open(p) as im:   # header only: cheap, catches non-images and empty files
                if min(im.size) <= 0:
                    raise ValueError("empty image")
        except Exception as e:  # noqa: BLE001 - PIL raises many types; the reason is recorded
            raise Quarantine("unreadable_image", f"{rel}: {type(e).__name__}") from None
        out.append(str(p))
    return tuple(out)


def make_item(benchmark: str, family: str, row: dict, base: Path) -> Item:
    """One Item from a bring-your-own row (also used by the bundled loaders after mapping)."""
    if not isinstance(row, dict):
        raise Quarantine("bad_row", f"expected an object, got {type(row).__name__}")
    item_id = row.get("id")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or not str(item_id).strip():
        raise Quarantine("missing_field", "id")
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise Quarantine("missing_field", "question")
    context = row.get("context") or ""
    if not isinstance(context, str):
        raise Quarantine("bad_field", "context must be a string")
    images = _images(row.get("images"), base)
    if family in ("vqa", "ocr") and not images:
        raise Quarantine("missing_image", f"family {family} needs images")
    meta = row.get("meta") or {}
    common = {"benchmark": benchmark, "id": str(item_id).strip(), "family": family,
              "question": question.strip(), "context": context.strip(), "images": images,
              "subset": str(row.get("subset") or ""),
              "meta": tuple(sorted(meta.items())) if isinstance(meta, dict) else ()}
    options_raw = row.get("options")
    if family == "mcq" or (family == "vqa" and options_raw is not None):
        options = _as_options(options_raw)
        return Item(kind="choice", answers=(_choice_answer(row.get("answer"), options),), options=options,
                    **common)
    if family == "yesno" or (family == "vqa" and str(row.get("answer_type", "")).lower() == "closed"
                             and _is_yesno(row.get("answer"))):
        choices = tuple(c.lower() for c in row.get("choices") or
                        (YESNO_LABELS if family == "yesno" else YESNO_LABELS[:2]))
        label = str(row.get("answer", "")).strip().lower()
        if label not in choices:
            raise Quarantine("bad_label", f"answer {label[:40]!r} not in {list(choices)}")
        return Item(kind="yesno", answers=(label,), choices=choices, **common)
    if family == "longform":
        ref = row.get("reference", row.get("answer"))
        if not isinstance(ref, str) or not ref.strip():
            raise Quarantine("missing_field", "reference")
        kp = row.get("key_points") or []
        if not isinstance(kp, list) or not all(isinstance(k, str) for k in kp):
            raise Quarantine("bad_field", "key_points must be a list of strings")
        return Item(kind="longform", answers=(ref.strip(),),
                    key_points=tuple(k.strip() for k in kp if k.strip()), **common)
    if family in ("short", "vqa", "ocr"):
        return Item(kind="ocr" if family == "ocr" else "open", answers=_answers(row.get("answer")), **common)
    raise BenchmarkError(f"unknown family {family!r}; known: {FAMILIES}")


def _is_yesno(answer: Any) -> bool:
    return isinstance(answer, str) and answer.strip().lower() in YESNO_LABELS[:2]


class _Collector:
    """Items and quarantine rows of one benchmark, with duplicate-id detection."""

    def __init__(self, benchmark: str):
        self.benchmark = benchmark
        self.items: list[Item] = []
        self.quarantined: list[dict] = []
        self.read = 0
        self._seen: set[str] = set()

    def add(self, build: Callable[[], Item], locator: str, raw_id: Any = None) -> None:
        self.read += 1
        try:
            item = build()
        except Quarantine as q:
            rid = str(raw_id) if isinstance(raw_id, (str, int)) else None
            self.quarantined.append(quarantine_row(self.benchmark, rid, q.reason, q.detail, locator))
            return
        if item.id in self._seen:  # the first copy is kept: it is the one a reader meets first
            self.quarantined.append(quarantine_row(self.benchmark, item.id, "duplicate_id",
                                                   "id seen earlier in the file", locator))
            return
        self._seen.add(item.id)
        self.items.append(item)

    def bad_line(self, reason: str, detail: str, locator: str) -> None:
        self.read += 1
        self.quarantined.append(quarantine_row(self.benchmark, None, reason, detail, locator))

    def result(self) -> LoadResult:
        res = LoadResult(self.items, self.quarantined, self.read)
        res.check()
        return res


def iter_jsonl_lines(path: Path, max_line_bytes: int = MAX_RECORD_BYTES
                     ) -> Iterator[tuple[int, Any, Quarantine | None]]:
    """(line number, object, why not) for every non-blank line; a line over `max_line_bytes` is
    never held whole."""
    if not path.is_file():
        raise BenchmarkError(f"benchmark file missing: {path}")
    with open(path, "rb") as f:
        for lineno, raw, size in iter_bounded_lines(f, max_line_bytes):
            if raw is None:
                yield lineno, None, Quarantine("line_too_large", f"{size} bytes > {max_line_bytes}")
                continue
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, None, Quarantine("invalid_utf8", f"{type(e).__name__}: {str(e)[:120]}")
                continue
            try:
                yield lineno, json.loads(text), None
            except json.JSONDecodeError as e:
                yield lineno, None, Quarantine("bad_json", f"{type(e).__name__}: {str(e)[:120]}")


def read_json_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """A benchmark's JSON file read whole; BenchmarkError naming it when it is too large, not
    UTF-8 or not JSON (a file the loader cannot read at all, unlike a bad line)."""
    try:
        return json.loads(read_capped(path, max_bytes).decode("utf-8"))
    except InputTooLarge as e:
        raise BenchmarkError(f"benchmark file too large: {e.detail}") from None
    except UnicodeDecodeError as e:
        raise BenchmarkError(f"benchmark file {path} is not UTF-8: {str(e)[:120]}") from None
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"benchmark file {path} is not JSON: {e}") from None


# ---- bundled benchmarks -----------------------------------------------------------------------
_CHOICES_HEADER = "Answer Choices:"


def split_answer_choices(question: str) -> tuple[str, dict[str, str]]:
    """'stem\\nAnswer Choices: (A) x (B) y ...' -> (stem, {'A': 'x', 'B': 'y'}).

    Markers must come in letter order (A, B, C, ...), so a '(B)' inside an option's text that is
    not the next expected letter stays part of that text."""
    head, sep, tail = question.rpartition(_CHOICES_HEADER)
    if not sep:
        return question.strip(), {}
    positions = []
    pos = 0
    for letter in LETTERS:
        m = re.compile(rf"(?:^|\s)\({letter}\)\s").search(tail, pos)
        if not m:
            break
        positions.append((letter, m.start(), m.end()))
        pos = m.end()
    options = {}
    for i, (letter, _, end) in enumerate(positions):
        stop = positions[i + 1][1] if i + 1 < len(positions) else len(tail)
        options[letter] = tail[end:stop].strip()
    return head.strip(), options


def load_answer_choices_jsonl(spec: BenchmarkSpec, data_root: Path) -> LoadResult:
    """MedQA / MedMCQA / MMLU-medical rows: {id?, question (with 'Answer Choices:'), label: [X]}."""
    path = spec.resolve(data_root)
    col = _Collector(spec.name)
    for lineno, obj, err in iter_jsonl_lines(path):
        loc = f"{path.name}:{lineno}"
        if err:
            col.bad_line(err.reason, err.detail, loc)
            continue

        def build(obj=obj, lineno=lineno) -> Item:
            if not isinstance(obj, dict) or not isinstance(obj.get("question"), str):
                raise Quarantine("missing_field", "question")
            stem, options = split_answer_choices(obj["question"])
            subject = obj.get("subject") or obj.get("subject_name") or ""
            # MMLU rows have no id: subject + line number, as the decontamination index names them
            item_id = obj.get("id") if "id" in obj else f"{obj.get('subject', 'mmlu')}:{lineno}"
            row = {"id": item_id, "question": stem, "options": options or None,
                   "answer": obj.get("label"), "subset": subject if spec.name == "mmlu_medical" else ""}
            if not options:
                raise Quarantine("empty_options", "no 'Answer Choices: (A) ...' in the question")
            return make_item(spec.name, "mcq", row, path.parent)

        col.add(build, loc, obj.get("id") if isinstance(obj, dict) else None)
    return col.result()


def load_pubmedqa(spec: BenchmarkSpec, data_root: Path) -> LoadResult:
    """PubMedQA test: the 500 ids of test_ground_truth.json, looked up in ori_pqal.json."""
    d = spec.resolve(data_root)
    for name in ("ori_pqal.json", "test_ground_truth.json"):
        if not (d / name).is_file():
            raise BenchmarkError(f"benchmark file missing: {d / name}")
    pqal = read_json_file(d / "ori_pqal.json")
    truth = read_json_file(d / "test_ground_truth.json")
    col = _Collector(spec.name)
    for pmid, label in truth.items():
        def build(pmid=pmid, label=label) -> Item:
            rec = pqal.get(pmid)
            if not isinstance(rec, dict):
                raise Quarantine("missing_record", f"PMID {pmid} not in ori_pqal.json")
            contexts = rec.get("CONTEXTS") or []
            labels = rec.get("LABELS") or []
            parts = [f"{lab.title()}: {c}" if i < len(labels) and isinstance(lab := labels[i], str) else c
                     for i, c in enumerate(contexts) if isinstance(c, str)]
            row = {"id": pmid, "question": rec.get("QUESTION"), "context": "\n".join(parts),
                   "answer": label, "choices": list(YESNO_LABELS)}
            return make_item(spec.name, "yesno", row, d)

        col.add(build, f"test_ground_truth.json:{pmid}", pmid)
    return col.result()


def load_vqa_rad(spec: BenchmarkSpec, data_root: Path) -> LoadResult:
    """VQA-RAD test: closed (yes/no, or 'A or B' phrases scored as open answers) and open questions."""
    d = spec.resolve(data_root)
    path = d / "testset.json"
    if not path.is_file():
        raise BenchmarkError(f"benchmark file missing: {path}")
    rows = read_json_file(path)
    col = _Collector(spec.name)
    for i, r in enumerate(rows):
        def build(r=r) -> Item:
            if not isinstance(r, dict) or "qid" not in r:
                raise Quarantine("missing_field", "qid")
            atype = str(r.get("answer_type", "")).lower()
            row = {"id": f"qid:{r['qid']}", "question": r.get("question"),
                   "images": [f"images/{r['image_name']}"] if isinstance(r.get("image_name"), str) else [],
                   "answer": r.get("answer"), "answer_type": atype, "subset": atype,
                   "meta": {"organ": r.get("image_organ"), "question_type": r.get("question_type")}}
            return make_item(spec.name, "vqa", row, d)

        col.add(build, f"testset.json[{i}]", f"qid:{r.get('qid')}" if isinstance(r, dict) else None)
    return col.result()


def load_byo_jsonl(spec: BenchmarkSpec, data_root: Path) -> LoadResult:
    """A bring-your-own JSONL file in the format of the module docstring."""
    path = spec.resolve(data_root)
    col = _Collector(spec.name)
    for lineno, obj, err in iter_jsonl_lines(path):
        loc = f"{path.name}:{lineno}"
        if err:
            col.bad_line(err.reason, err.detail, loc)
            continue
        col.add(lambda obj=obj: make_item(spec.name, spec.family, obj, path.parent), loc,
                obj.get("id") if isinstance(obj, dict) else None)
    return col.result()


# ---- registry ---------------------------------------------------------------------------------
REGISTRY: dict[str, BenchmarkSpec] = {}


def register(spec: BenchmarkSpec) -> BenchmarkSpec:
    if spec.family not in FAMILIES:
        raise BenchmarkError(f"{spec.name}: unknown family {spec.family!r}; known: {FAMILIES}")
    if spec.category not in CATEGORIES:
        raise BenchmarkError(f"{spec.name}: unknown category {spec.category!r}; known: {CATEGORIES}")
    REGISTRY[spec.name] = spec
    return spec


def byo_spec(name: str, path: str, family: str, category: str | None = None,
             description: str = "") -> BenchmarkSpec:
    """The registry line of a bring-your-own JSONL benchmark."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise BenchmarkError(f"benchmark name {name!r}: use letters, digits, _ . -")
    if family not in FAMILIES:
        raise BenchmarkError(f"{name}: unknown family {family!r}; known: {FAMILIES}")
    return BenchmarkSpec(name, family, category or DEFAULT_CATEGORY[family], path, load_byo_jsonl,
                         description or f"bring-your-own {family} benchmark")


for _spec in (
    BenchmarkSpec("medqa", "mcq", "medical_text", "benchmarks/medqa/medqa_input.jsonl",
                  load_answer_choices_jsonl, "MedQA-USMLE 4-option test"),
    BenchmarkSpec("medmcqa", "mcq", "medical_text", "benchmarks/medmcqa/medmcqa_input.jsonl",
                  load_answer_choices_jsonl, "MedMCQA dev"),
    BenchmarkSpec("mmlu_medical", "mcq", "medical_text", "benchmarks/mmlu_medical/mmlu_medical_input.jsonl",
                  load_answer_choices_jsonl, "MMLU, 6 medical subjects (scored per subject too)"),
    BenchmarkSpec("pubmedqa", "yesno", "medical_text", "benchmarks/pubmedqa",
                  load_pubmedqa, "PubMedQA test (500 ids), yes/no/maybe with the abstract as context"),
    BenchmarkSpec("vqa_rad", "vqa", "medical_imaging", "benchmarks/vqa_rad",
                  load_vqa_rad, "VQA-RAD test: closed and open radiology questions with images"),
):
    register(_spec)

BUNDLED = tuple(REGISTRY)


def get_spec(name: str, extra: dict[str, BenchmarkSpec] | None = None) -> BenchmarkSpec:
    if extra and name in extra:
        return extra[name]
    if name not in REGISTRY:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {sorted({*REGISTRY, *(extra or {})})}")
    return REGISTRY[name]


def load(spec: BenchmarkSpec, data_root: str | Path) -> LoadResult:
    return spec.loader(spec, Path(data_root))


def select(items: list[Item], limit: int, seed: int) -> list[Item]:
    """A seeded sample of `limit` items in file order (all when limit <= 0): the same slice every run,
    spread over the file (MMLU's subjects are contiguous, a head slice would be one subject)."""
    import random

    if limit <= 0 or len(items) <= limit:
        return list(items)
    name = items[0].benchmark
    keep = sorted(random.Random(f"{seed}:{name}").sample(range(len(items)), limit))
    return [items[i] for i in keep]


def parse_byo_arg(arg: str) -> BenchmarkSpec:
    """'name=family:path[:category]' (the CLI's --byo) -> spec."""
    name, sep, rest = arg.partition("=")
    parts = rest.split(":")
    if not sep or len(parts) < 2:
        raise BenchmarkError(f"--byo {arg!r}: expected name=family:path[:category]")
    family, category = parts[0], None
    if len(parts) > 2 and parts[-1] in CATEGORIES:
        category = parts[-1]
        parts = parts[:-1]
    return byo_spec(name.strip(), ":".join(parts[1:]), family.strip(), category)


def names(items: Iterable[Item]) -> list[str]:
    return sorted({i.benchmark for i in items})
