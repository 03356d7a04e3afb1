"""Text connectors: MedQuAD XML, PubTator, MEDLINE XML.gz, IU-Xray reports, record JSONL."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Iterator
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as ET

from tasks.common.io import PathEscapeError, iter_jsonl, safe_join
from tasks.common.records import RecordError, make_record, rejection, validate_record
from tasks.corpus.connectors.base import XML_UNSAFE, Item, SourceContext, empty_file, files_under
from tasks.corpus.images import ImageError


def _xml_failure(path: Path, e: Exception) -> dict:
    if isinstance(e, XML_UNSAFE):
        return rejection("unsafe_xml", f"{type(e).__name__}: {e}", locator=str(path))
    if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
        return rejection("truncated_file", f"{type(e).__name__}: {e}", locator=str(path))
    return rejection("xml_parse_error", f"{type(e).__name__}: {e}", locator=str(path))


def _xml_errors() -> tuple[type[Exception], ...]:
    return (ParseError, *XML_UNSAFE, EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError)


def _text(el) -> str:
    return "".join(el.itertext()).strip() if el is not None else ""


# --------------------------------------------------------------------------- MedQuAD
def read_medquad(ctx: SourceContext) -> Iterator[Item]:
    """One record per QA pair that has an answer; focus, UMLS CUIs and semantic types in meta."""
    for path in files_under(ctx.path, ("*.xml",)):
        size = path.stat().st_size
        if (rej := empty_file(path)) is not None:
            yield None, rej, 0
            continue
        try:
            root = ET.parse(path, forbid_dtd=False).getroot()
        except _xml_errors() as e:
            yield None, _xml_failure(path, e), size
            continue
        umls = root.find("FocusAnnotations/UMLS")
        doc_meta = ctx.record_meta(
            doc_id=root.get("id", path.stem), collection=root.get("source", path.parent.name),
            url=root.get("url", ""), focus=_text(root.find("Focus")),
            cuis=[_text(c) for c in root.findall("FocusAnnotations/UMLS/CUIs/CUI")],
            semantic_types=[_text(t) for t in root.findall("FocusAnnotations/UMLS/SemanticTypes/SemanticType")],
            semantic_group=_text(umls.find("SemanticGroup")) if umls is not None else "",
        )
        pairs = root.findall("QAPairs/QAPair")
        for pair in pairs:
            q_el = pair.find("Question")
            question, answer = _text(q_el), _text(pair.find("Answer"))
            qid = q_el.get("qid", "") if q_el is not None else ""
            loc = f"{path}#{qid or pair.get('pid', '')}"
            nbytes = size // max(len(pairs), 1)
            if not answer:
                yield None, rejection("no_answer", "QA pair without an answer", locator=loc), nbytes
                continue
            text = f"{question}\n\n{answer}"
            if (rej := ctx.check_text(text, loc)) is not None:
                yield None, rej, nbytes
                continue
            meta = {**doc_meta, "qid": qid, "qtype": q_el.get("qtype", "") if q_el is not None else "",
                    "question": question}
            yield make_record(ctx.name, qid or loc, text, meta=meta), None, nbytes


# --------------------------------------------------------------------------- PubTator
_TITLE = re.compile(r"^(\d+)\|t\|(.*)$")
_ABSTRACT = re.compile(r"^(\d+)\|a\|(.*)$")


def _pubtator_blocks(path: Path) -> Iterator[tuple[int, list[str] | None, dict | None]]:
    """Blank-line separated blocks of decoded lines; undecodable blocks come back rejected."""
    block: list[bytes] = []
    start = 1
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if raw.strip():
                if not block:
                    start = lineno
                block.append(raw.rstrip(b"\r\n"))
                continue
            if block:
                yield start, *_decode_block(path, start, block)
                block = []
    if block:
        yield start, *_decode_block(path, start, block)


def _decode_block(path: Path, start: int, block: list[bytes]):
    try:
        return [b.decode("utf-8") for b in block], None
    except UnicodeDecodeError as e:
        return None, rejection("invalid_utf8", str(e)[:200], locator=f"{path}:{start}")


def _parse_pubtator(lines: list[str]) -> tuple[str, str, str, list, list]:
    """(pmid, title, abstract, mentions, relations) of one block; ValueError if malformed."""
    t, a = _TITLE.match(lines[0]), _ABSTRACT.match(lines[1]) if len(lines) > 1 else None
    if not t or not a or t.group(1) != a.group(1):
        raise ValueError("block does not start with PMID|t| and PMID|a| lines")
    pmid, mentions, relations = t.group(1), [], []
    for line in lines[2:]:
        cols = line.split("\t")
        if len(cols) >= 6 and cols[1].isdigit():
            mentions.append({"start": int(cols[1]), "end": int(cols[2]), "text": cols[3],
                             "type": cols[4], "id": cols[5]})
        elif len(cols) == 4 and cols[1] == "CID":
            relations.append({"type": "CID", "chemical": cols[2], "disease": cols[3]})
        else:
            raise ValueError(f"unrecognized annotation line {line[:80]!r}")
    return pmid, t.group(2), a.group(2), mentions, relations


def read_pubtator(ctx: SourceContext) -> Iterator[Item]:
    """Title + abstract per PMID; gold mentions (offsets into `text`) and CID relations in meta."""
    for path in files_under(ctx.path, ("*.txt", "*.PubTator")):
        if (rej := empty_file(path)) is not None:
            yield None, rej, 0
            continue
        corpus = "BC5CDR" if path.name.startswith("CDR") else "NCBI-disease"
        for start, lines, rej in _pubtator_blocks(path):
            loc = f"{path}:{start}"
            nbytes = sum(len(x) + 1 for x in lines) if lines else 0
            if rej is not None:
                yield None, rej, nbytes
                continue
            try:
                pmid, title, abstract, mentions, relations = _parse_pubtator(lines)
            except ValueError as e:
                yield None, rejection("malformed_pubtator", str(e), locator=loc), nbytes
                continue
            text = f"{title} {abstract}"  # PubTator offsets count title + one space + abstract
            if (rej := ctx.check_text(text, loc)) is not None:
                yield None, rej, nbytes
                continue
            meta = ctx.record_meta(pmid=pmid, corpus=corpus, file=path.name, mentions=mentions,
                                   relations=relations)
            yield make_record(ctx.name, f"{path.name}:{pmid}", text, meta=meta), None, nbytes


# --------------------------------------------------------------------------- MEDLINE
def _medline_record(ctx: SourceContext, cit, path: Path) -> Item:
    pmid = _text(cit.find("PMID"))
    loc = f"{path}#PMID{pmid}"
    title = _text(cit.find("Article/ArticleTitle"))
    parts = []
    for ab in cit.findall("Article/Abstract/AbstractText"):
        label, body = ab.get("Label"), _text(ab)
        parts.append(f"{label}: {body}" if label and label != "UNLABELLED" else body)
    abstract = "\n".join(p for p in parts if p)
    if not abstract:
        return None, rejection("no_abstract", "citation without abstract", locator=loc), 0
    text = f"{title}\n\n{abstract}" if title else abstract
    if (rej := ctx.check_text(text, loc)) is not None:
        return None, rej, 0
    meta = ctx.record_meta(pmid=pmid, title=title, journal=_text(cit.find("Article/Journal/Title")),
                           year=_text(cit.find("Article/Journal/JournalIssue/PubDate/Year")),
                           mesh=[_text(d) for d in cit.findall("MeshHeadingList/MeshHeading/DescriptorName")])
    return make_record(ctx.name, pmid, text, meta=meta), None, len(text.encode())


def read_medline(ctx: SourceContext) -> Iterator[Item]:
    """Abstracts from MEDLINE/PubMed baseline XML (.xml or .xml.gz), streamed."""
    for path in files_under(ctx.path, ("*.xml.gz", "*.xml")):
        if (rej := empty_file(path)) is not None:
            yield None, rej, 0
            continue
        try:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rb") as f:
                for _, el in ET.iterparse(f, events=("end",), forbid_dtd=False):
                    if el.tag == "MedlineCitation":
                        yield _medline_record(ctx, el, path)
                        el.clear()
        except _xml_errors() as e:
            # Citations parsed before the failure were yielded; the broken rest is one rejection.
            yield None, _xml_failure(path, e), 0


# --------------------------------------------------------------------------- IU-Xray
def read_iu_xray(ctx: SourceContext) -> Iterator[Item]:
    """Report text of the train split (images are not distributed here)."""
    path = ctx.path
    try:
        data = json.loads(path.read_bytes())
        split = data["train"]
        if not isinstance(split, list):
            raise ValueError("'train' is not a list")
    except (ValueError, KeyError, TypeError) as e:
        yield None, rejection("bad_json", f"{type(e).__name__}: {e}", locator=str(path)), 0
        return
    for i, item in enumerate(split):
        loc = f"{path}#train[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("report"), str):
            yield None, rejection("missing_field", "item lacks a string 'report'", locator=loc), 0
            continue
        text = item["report"]
        if (rej := ctx.check_text(text, loc)) is not None:
            yield None, rej, len(text)
            continue
        meta = ctx.record_meta(report_id=str(item.get("id", i)), split="train",
                               image_names=item.get("image_path", []))
        yield make_record(ctx.name, item.get("id", i), text, meta=meta), None, len(text.encode())


# --------------------------------------------------------------------------- record JSONL
def read_jsonl(ctx: SourceContext) -> Iterator[Item]:
    """Extra corpora already in the record schema; image paths are relative to the source dir."""
    root = ctx.path if ctx.path.is_dir() else ctx.path.parent
    for path in files_under(ctx.path, ("*.jsonl",)):
        if (rej := empty_file(path)) is not None:
            yield None, rej, 0
            continue
        for obj, rej in iter_jsonl(path):
            if rej is not None:
                yield None, rej, 0
                continue
            try:
                rec = validate_record(obj)
                if (rej := ctx.check_text(rec["text"], f"{path}#{rec['id']}")) is not None and not rec["images"]:
                    yield None, rej, 0
                    continue
                rec = {**rec, "source": ctx.name, "meta": {**ctx.record_meta(), **rec["meta"]},
                       "images": [ctx.images.put_bytes(safe_join(root, im["path"]).read_bytes())
                                  for im in rec["images"]]}
            except RecordError as e:
                yield None, rejection(e.reason, e.detail, locator=str(path)), 0
                continue
            except PathEscapeError as e:
                yield None, rejection("path_escapes_root", str(e), locator=str(path)), 0
                continue
            except ImageError as e:
                yield None, rejection(e.reason, e.detail, locator=str(path)), 0
                continue
            except OSError as e:
                yield None, rejection("missing_image", str(e), locator=str(path)), 0
                continue
            yield rec, None, len(rec["text"].encode())
