"""Stages 2-3 of "label -> caption -> instruction" (paper §3.3.2): a caption in a senior radiologist's
voice from the structured attributes, then four instruction kinds derived from it.

    from tasks.cpt_synthesis.image_knowledge import LocalCaptioner, LocalInstructionWriter, image_knowledge
    out = image_knowledge(units, LocalCaptioner(), LocalInstructionWriter())   # Outcome of samples

Two implementations per role, one interface each (ARCHITECTURE.md "LLM roles"):
- Captioner.captions(units) -> caption text (or {"failure": ...}) per unit.
  LLM: the paper's system prompt ("Act as a senior radiologist. Convert the following structured
  findings into a detailed diagnostic report description ...") over the attributes as JSON.
  Local: report-style templates (modality/technique, findings, image quality, impression) that state
  only what the attributes hold; a finding's typical appearance is written as general knowledge
  ("typically appears as ..."), never as something seen in this image.
- InstructionWriter.instructions(units, captions) -> {kind: {question, answer} | None} per unit, kinds
  descriptive, diagnostic, localization, reasoning ("Describe the findings ...", "Is there evidence of
  ...?", "Where is ...?", "Based on the visual evidence, what is the most likely diagnosis and what
  follow-up is recommended?"). A kind the attributes cannot support (no finding, no location) is None
  and counted, not invented.

Samples: task `caption` and `instruction_<kind>`, kind image_text, the image as the first user part,
meta.attrs = the structured attributes (the caption rubric checks claims against them).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

from tasks.cpt_synthesis.image_attributes import MODALITY_NAMES, ImageUnit
from tasks.cpt_synthesis.samples import Outcome, image_part, make_sample, text_part
from tasks.llm.ask import ask_parsed, json_object

KINDS = ("descriptive", "diagnostic", "localization", "reasoning")
# What a labelled finding typically looks like and what is usually done next (general radiology
# knowledge, stated as such; keyed by the labels the corpus carries).
FINDING_KNOWLEDGE = {
    "pneumonia": (("Pneumonia on a chest radiograph typically appears as focal or patchy airspace opacity, "
                   "sometimes with air bronchograms."),
                  ("Recommended follow-up: correlate with fever, cough and inflammatory markers, and obtain a "
                   "follow-up radiograph after treatment to document resolution.")),
    "normal": ("A normal chest radiograph shows clear lungs without focal opacity, effusion or pneumothorax.",
               "No imaging follow-up is needed unless symptoms persist or change."),
}
CAPTION_SYSTEM = ("Act as a senior radiologist. Convert the following structured findings into a detailed "
                  "diagnostic report description. Ensure medical terminology is accurate, describe the visual "
                  "appearance of the findings")
CAPTION_PROMPT = ("Structured findings (JSON):\n{attrs}\n\nState only what these findings support; do not add "
                  'measurements, locations or diagnoses they do not contain. Reply with only JSON: {{"caption": "..."}}')
INSTRUCTION_PROMPT = ("Image description by a radiologist:\n{caption}\n\nStructured findings (JSON):\n{attrs}\n\n"
                      "Write four instruction-response pairs about this image, one per kind: descriptive "
                      '(e.g. "Describe the findings in this chest X-ray."), diagnostic (a yes/no question about a '
                      "finding, answered with the evidence), localization (where a finding is), reasoning (most "
                      "likely diagnosis and follow-up). Use only the description and the findings; a kind they "
                      "cannot support is null.\nReply with only JSON: "
                      '{{"descriptive": {{"question": "...", "answer": "..."}}, "diagnostic": ..., '
                      '"localization": ..., "reasoning": ...}}')
REPAIR = "That reply could not be used ({problem}). Answer again with only the JSON described above."
CAPTION_REQUEST = "Describe this image as a senior radiologist would in a report."


class Captioner(Protocol):
    name: str

    def captions(self, units: Sequence[ImageUnit]) -> list[str | dict]: ...


class InstructionWriter(Protocol):
    name: str

    def instructions(self, units: Sequence[ImageUnit], captions: Sequence[str]) -> list[dict]: ...


# ----------------------------------------------------------------------------- local wording
def modality_phrase(attrs: dict) -> str:
    """"frontal chest radiograph", "axial MRI of the head", "CT of the abdomen", "image of the chest"."""
    mod = MODALITY_NAMES.get(str(attrs.get("modality") or ""), attrs.get("modality") or "radiologic image")
    view = attrs.get("view")
    anatomy = attrs.get("anatomy")
    head = f"{view} {mod}" if view and view not in str(mod) else str(mod)
    if anatomy and anatomy not in head:
        head = f"{head} of the {anatomy}"
    return head


def _sentence(s: str) -> str:
    s = " ".join(s.split()).strip()
    return (s[:1].upper() + s[1:]).rstrip(".?!") + "." if s else s


_ADJ = re.compile(r"(?:normal|abnormal|enlarged|dilated|obstructed|present|visible|seen|intact|patent|fractured|"
                  r"enhancing|homogeneous|homogenous|thickened|calcified|displaced|\w+ed|\w+al|\w+ic|\w+ous|\w+ive)$")
_DIAGNOSIS_Q = re.compile(r"(?i)^(?:what|which)\b.*\b(?:pathology|diagnos\w*|suspicious|most likely)|suspicious of what")
_WHERE_Q = re.compile(r"(?i)\b(?:where|location|located|organ system|system)\b")
_THIS_IMAGE = re.compile(r"\b(?:the above|this|the shown) (image|film|scan|study)\b", re.IGNORECASE)


def qa_statement(question: str, answer: str) -> str:
    """A declarative sentence from an annotated question and its answer (yes/no patterns; otherwise
    "question: answer")."""
    q = _THIS_IMAGE.sub(r"the \1", question.strip().rstrip("?").strip())
    a = answer.strip().rstrip(".")
    yes, no = a.lower() in ("yes", "y", "true"), a.lower() in ("no", "n", "false")
    if yes or no:
        m = re.match(r"(?i)^(is|are) there (.+)$", q)
        if m:
            verb = m.group(1).lower()
            return _sentence(f"there {verb} {m.group(2)}" if yes else f"there {verb} no {m.group(2)}")
        m = re.match(r"(?i)^(is|are) (the .+?) (not )?(\S+)$", q)
        if m and _ADJ.match(m.group(4).lower()):
            neg = (m.group(3) is not None) == yes
            return _sentence(f"{m.group(2)} {m.group(1).lower()} {'not ' if neg else ''}{m.group(4)}")
        m = re.match(r"(?i)^(?:does|do) (the .+?) (show|contain|demonstrate|appear|have) (.+)$", q)
        if m:
            verb = m.group(2).lower()
            return _sentence(f"{m.group(1)} {verb}s {m.group(3)}" if yes else
                             f"{m.group(1)} does not {verb} {m.group(3)}")
        return _sentence(f"{q}: {'yes' if yes else 'no'}")
    return _sentence(f"{q}: {a}")


def _technique(t: dict) -> str:
    parts = []
    if t.get("SliceThickness"):
        parts.append(f"slice thickness {t['SliceThickness']:g} mm" if isinstance(t["SliceThickness"], (int, float))
                     else f"slice thickness {t['SliceThickness']}")
    ps = t.get("PixelSpacing")
    if isinstance(ps, list) and len(ps) == 2:
        parts.append(f"pixel spacing {ps[0]:.2f} x {ps[1]:.2f} mm")
    if t.get("Rows") and t.get("Columns"):
        parts.append(f"{t['Rows']} x {t['Columns']} matrix")
    if t.get("KVP"):
        parts.append(f"{t['KVP']:g} kVp" if isinstance(t["KVP"], (int, float)) else f"{t['KVP']} kVp")
    if t.get("Manufacturer"):
        parts.append(f"{t['Manufacturer']} equipment")
    desc = t.get("SeriesDescription") or t.get("StudyDescription")
    if desc:
        parts.append(f"series described as '{desc}'")
    return f"Technique: {', '.join(parts)}." if parts else ""


class LocalCaptioner:
    """Report-style templates over the attributes (module docstring)."""
    name = "local"

    def caption(self, u: ImageUnit) -> str:
        a = u.attrs
        out = [_sentence(modality_phrase(a))]
        if a.get("source") == "dicom":
            out.append(_technique(a.get("technical") or {}))
        finding = a.get("finding")
        if finding:
            out.append(f"Findings: the image is labelled {finding}." if finding != "normal" else
                       "Findings: the image is labelled normal, with no acute abnormality.")
            if finding in FINDING_KNOWLEDGE:
                out.append(FINDING_KNOWLEDGE[finding][0])
        statements = [qa_statement(q["question"], q["answer"]) for q in a.get("qa", [])]
        if statements:
            out.append("Annotated findings: " + " ".join(dict.fromkeys(statements)))
        tech = a.get("technical") or {}
        if tech.get("source_resolution") == "low":
            out.append(f"Image quality: low resolution ({tech.get('width')} x {tech.get('height')} pixels), "
                       "which limits assessment of fine detail.")
        if finding:
            out.append(f"Impression: {'findings consistent with ' + finding if finding != 'normal' else 'no acute abnormality'}.")
        return " ".join(s for s in out if s)

    def captions(self, units: Sequence[ImageUnit]) -> list[str]:
        return [self.caption(u) for u in units]


def _first_qa(attrs: dict, types: tuple[str, ...], closed: bool | None) -> dict | None:
    for q in attrs.get("qa", []):
        qt = q["question_type"].upper()
        is_closed = q["answer"].strip().lower() in ("yes", "no")
        if any(t in qt for t in types) and (closed is None or closed == is_closed):
            return q
    return None


class LocalInstructionWriter:
    """The four kinds from the attributes and caption; None where the attributes do not support a kind."""
    name = "local"

    def instructions(self, units: Sequence[ImageUnit], captions: Sequence[str]) -> list[dict]:
        return [self.one(u, c) for u, c in zip(units, captions)]

    def one(self, u: ImageUnit, caption: str) -> dict:
        a = u.attrs
        phrase = modality_phrase(a)
        out: dict = {"descriptive": {"question": f"Describe the findings in this {phrase}.", "answer": caption}}
        finding = a.get("finding")
        if finding in FINDING_KNOWLEDGE:
            looks, follow = FINDING_KNOWLEDGE[finding]
            pos = finding != "normal"
            out["diagnostic"] = {"question": f"Is there evidence of pneumonia on this {phrase}?",
                                 "answer": ("Yes. The image is labelled pneumonia. " + looks) if pos else
                                 "No. The image is labelled normal, with no acute abnormality."}
            out["reasoning"] = {"question": "Based on the visual evidence, what is the most likely diagnosis "
                                            "and what follow-up is recommended?",
                                "answer": (f"The most likely diagnosis is {finding}. " if pos else
                                           "No acute abnormality is labelled. ") + follow}
        q = _first_qa(a, ("PRES", "ABN"), closed=True)
        if q and "diagnostic" not in out:
            yes = q["answer"].strip().lower() == "yes"
            out["diagnostic"] = {"question": q["question"],
                                 "answer": f"{'Yes' if yes else 'No'}. {qa_statement(q['question'], q['answer'])}"}
        q = _first_qa(a, ("POS",), closed=False)
        if q:
            out["localization"] = {"question": q["question"], "answer": _sentence(q["answer"])}
        q = next((x for x in a.get("qa", []) if _DIAGNOSIS_Q.search(x["question"]) and not _WHERE_Q.search(x["question"])
                  and x["answer"].strip().lower() not in ("yes", "no")), None)
        if q and "reasoning" not in out:
            out["reasoning"] = {"question": "Based on the visual evidence, what is the most likely diagnosis?",
                                "answer": f"The annotated diagnosis is {q['answer'].strip().rstrip('.')}."}
        return {k: out.get(k) for k in KINDS}


# ----------------------------------------------------------------------------- LLM path
def _attrs_json(u: ImageUnit) -> str:
    return json.dumps(u.attrs, ensure_ascii=False, sort_keys=True)


def parse_instructions(reply: str) -> dict:
    obj = json_object(reply, {})
    out = {}
    for k in KINDS:
        v = obj.get(k)
        if v is None:
            out[k] = None
        elif (isinstance(v, dict) and isinstance(v.get("question"), str) and isinstance(v.get("answer"), str)
              and v["question"].strip() and v["answer"].strip()):
            out[k] = {"question": v["question"].strip(), "answer": v["answer"].strip()}
        else:
            raise ValueError(f"{k!r} must be null or an object with non-empty question and answer")
    if not any(out.values()):
        raise ValueError("every kind is null")
    return out


class LLMCaptioner:
    name = "llm"

    def __init__(self, client, max_tokens: int = 384):
        self.client, self.max_tokens = client, max_tokens

    def captions(self, units: Sequence[ImageUnit]) -> list:
        chats = [[{"role": "system", "content": CAPTION_SYSTEM},
                  {"role": "user", "content": CAPTION_PROMPT.format(attrs=_attrs_json(u))}] for u in units]
        answers = ask_parsed(self.client, chats, lambda r: json_object(r, {"caption": str})["caption"].strip(),
                             REPAIR, max_tokens=self.max_tokens)
        return [a.value if a.ok else {"failure": a.failure} for a in answers]


class LLMInstructionWriter:
    name = "llm"

    def __init__(self, client, max_tokens: int = 512):
        self.client, self.max_tokens = client, max_tokens

    def instructions(self, units: Sequence[ImageUnit], captions: Sequence[str]) -> list:
        chats = [[{"role": "system", "content": "You write medical imaging instruction data. You answer only with JSON."},
                  {"role": "user", "content": INSTRUCTION_PROMPT.format(caption=c, attrs=_attrs_json(u))}]
                 for u, c in zip(units, captions)]
        answers = ask_parsed(self.client, chats, parse_instructions, REPAIR, max_tokens=self.max_tokens)
        return [a.value if a.ok else {"failure": a.failure} for a in answers]


# ----------------------------------------------------------------------------- samples
def _image_sample(task: str, u: ImageUnit, question: str, answer: str, generator: str) -> dict:
    return make_sample("image_text", task, u.source_ids, images=[u.image], generator=generator,
                       messages=[{"role": "user", "content": [image_part(), text_part(question)]},
                                 {"role": "assistant", "content": answer}],
                       attrs=u.attrs, image_notes=u.notes)


def image_knowledge(units: Sequence[ImageUnit], captioner: Captioner, writer: InstructionWriter) -> tuple[Outcome, Counter]:
    """Caption + instruction samples per unit, and counts of the instruction kinds made / unsupported."""
    out, kinds = Outcome(), Counter()
    captions = captioner.captions(units)
    ok = [i for i, c in enumerate(captions) if isinstance(c, str) and c.strip()]
    for i, c in enumerate(captions):
        if not (isinstance(c, str) and c.strip()):
            fail = c.get("failure") if isinstance(c, dict) else {"detail": "empty caption"}
            out.reject("llm_failed", f"caption: {fail['detail']}", {"source_ids": units[i].source_ids, "failure": fail})
    instr = writer.instructions([units[i] for i in ok], [captions[i] for i in ok])
    for i, res in zip(ok, instr):
        u = units[i]
        out.kept.append(_image_sample("caption", u, CAPTION_REQUEST, captions[i], captioner.name))
        if isinstance(res, dict) and "failure" in res:
            out.reject("llm_failed", f"instructions: {res['failure']['detail']}",
                       {"source_ids": u.source_ids, "failure": res["failure"]})
            continue
        for kind in KINDS:
            pair = res.get(kind)
            if pair is None:
                kinds[f"{kind}_unsupported"] += 1
                continue
            kinds[kind] += 1
            out.kept.append(_image_sample(f"instruction_{kind}", u, pair["question"], pair["answer"], writer.name))
    return out, kinds
