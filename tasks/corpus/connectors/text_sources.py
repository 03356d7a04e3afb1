"""Text connectors: MedQuAD XML, PubTator, MEDLINE XML.gz, IU-Xray reports, record JSONL.

Every reader streams or caps what it holds (see base.py): MEDLINE is parsed chunk by chunk with a
target that builds one citation at a time and stops building one that passes its caps, PubTator
and JSONL lines are read with a length cap, and files parsed whole are refused above
`max_file_bytes`.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from pathlib import Path
from typing import Iterator
from xml.etree.ElementTree import ParseError, TreeBuilder

import defusedxml.ElementTree as ET

from tasks.common.io import InputTooLarge, PathEscapeError, iter_bounded_lines, iter_jsonl, safe_join
from tasks.common.records import RecordError, make_record, rejection, validate_record
from tasks.corpus.connectors.base import (
    XML_UNSAFE,
    Item,
    SourceContext,
    empty_file,
    files_under,
    read_bytes,
    too_large,
)
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
        if (rej := too_large(path, ctx.max_file_bytes)) is not None:  # parsed whole: capped on disk
            yield None, rej, size
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


def _pubtator_blocks(path: Path, max_bytes: int) -> Iterator[tuple[int, list[str] | None, dict | None]]:
    """Blank-line separated blocks of decoded lines; undecodable blocks, and blocks over `max_bytes`
    (whose lines are dropped as they stream), come back rejected."""
    block: list[bytes] = []
    in_block, start, size = False, 1, 0
    with open(path, "rb") as f:
        for lineno, raw, n in iter_bounded_lines(f, max_bytes):
            if raw is None or raw.strip():
                if not in_block:
                    in_block, start, size = True, lineno, 0
                size += n
                if raw is None or size > max_bytes:  # (a None line is itself over the cap)
                    block = []  # over the cap: keep counting to the block's end, hold nothing
                else:
                    block.append(raw.rstrip(b"\r\n"))
                continue
            if in_block:
                yield start, *_end_block(path, start, block, size, max_bytes)
                block, in_block = [], False
    if in_block:
        yield start, *_end_block(path, start, block, size, max_bytes)


def _end_block(path: Path, start: int, block: list[bytes], size: int, max_bytes: int):
    if size > max_bytes:
        return None, rejection("record_too_large", f"block over {max_bytes} bytes", locator=f"{path}:{start}")
    return _decode_block(path, start, block)


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
        for start, lines, rej in _pubtator_blocks(path, ctx.max_record_bytes):
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


_CITATION = "MedlineCitation"
# Inflated bytes fed to the parser at a time: ElementTree.iterparse's read size. A truncated .gz
# loses the last partial read, so the same reads give the same citations as iterparse did.
_FEED_BYTES = 16 * 1024


class _CitationTarget:
    """Parser target that builds each top-level MedlineCitation as its own Element and nothing else.

    Text outside citations is dropped. A citation with a text node over `max_text` characters, or
    more than `max_record` characters of text and attributes, stops being built there (the rest
    of it is dropped as it streams) and comes out as a rejection; parsing goes on with the next
    citation. Characters are counted, not bytes: a node over the cap in characters is over it
    in UTF-8 bytes too, so no citation that fits is ever cut.
    """

    def __init__(self, max_text: int, max_record: int):
        self.max_text, self.max_record = max_text, max_record
        self.done: list = []     # finished citations: an Element, or (pmid, reason, detail)
        self.events = 0          # callbacks so far: the feeding loop's sign of progress
        self._depth = 0          # depth inside the current citation; 0 outside
        self._builder: TreeBuilder | None = None
        self._over: tuple[str, str] | None = None
        self._run = self._total = 0
        self._pmid: list[str] | None = None   # collecting the PMID's text (for a rejection's locator)
        self._pmid_text = ""

    def start(self, tag, attrib):
        self.events += 1
        self._run = 0
        if self._depth == 0:
            if tag != _CITATION:
                return
            self._builder, self._over, self._total, self._pmid_text = TreeBuilder(), None, 0, ""
        self._depth += 1
        if self._depth == 2 and tag == "PMID":
            self._pmid = []
        if attrib:
            self._total += sum(len(k) + len(v) for k, v in attrib.items())
            if self._total > self.max_record:
                self._check()
        if self._builder is not None:
            self._builder.start(tag, attrib)

    def data(self, text):
        self.events += 1
        if self._depth == 0:
            return
        n = len(text)
        self._run += n
        self._total += n
        if self._pmid is not None and len(self._pmid) < 8:
            self._pmid.append(text[:64])
        if self._run > self.max_text or self._total > self.max_record:
            self._check()
        if self._builder is not None:
            self._builder.data(text)

    def end(self, tag):
        self.events += 1
        self._run = 0
        if self._depth == 0:
            return
        self._depth -= 1
        if self._pmid is not None and self._depth == 1:
            self._pmid_text, self._pmid = "".join(self._pmid).strip(), None
        if self._builder is not None:
            self._builder.end(tag)
        if self._depth == 0:
            self.done.append(self._builder.close() if self._over is None else (self._pmid_text, *self._over))
            self._builder = None

    def comment(self, text):  # not kept; counted so a long run of comments is not taken for a stall
        self.events += 1

    def pi(self, target, text=None):
        self.events += 1

    def _check(self) -> None:
        if self._over is not None:
            return
        if self._run > self.max_text:
            self._over = ("text_too_large", f"a text node over {self.max_text} bytes")
        elif self._total > self.max_record:
            self._over = ("record_too_large", f"citation over {self.max_record} bytes")
        if self._over is not None:
            self._builder = None  # what was built is dropped now; the rest is never built


def _drain(ctx: SourceContext, target: _CitationTarget, path: Path) -> Iterator[Item]:
    done, target.done = target.done, []
    for cit in done:
        if isinstance(cit, tuple):
            pmid, reason, detail = cit
            yield None, rejection(reason, detail, locator=f"{path}#PMID{pmid}"), 0
        else:
            yield _medline_record(ctx, cit, path)


def _medline_items(ctx: SourceContext, path: Path) -> Iterator[Item]:
    """Citations of one file as the parser finishes them. Memory holds one fed chunk and one
    capped citation; the inflated size is capped, and so is a single token (a tag, a comment)
    that gives the parser no callback for `max_record_bytes`, since the parser buffers it whole."""
    target = _CitationTarget(ctx.max_text_bytes, ctx.max_record_bytes)
    parser = ET.DefusedXMLParser(target=target, forbid_dtd=False)
    opener = gzip.open if path.name.endswith(".gz") else open
    inflated = progress = 0  # bytes fed so far; bytes fed when the parser last called back
    with opener(path, "rb") as f:
        while chunk := f.read(_FEED_BYTES):
            inflated += len(chunk)
            if inflated > ctx.max_inflated_bytes:
                yield None, rejection("file_too_large", f"more than {ctx.max_inflated_bytes} bytes after "
                                      "inflating; citations before the cap were read", locator=str(path)), 0
                return
            events = target.events
            try:
                parser.feed(chunk)
            finally:  # citations finished before a parse error still count
                yield from _drain(ctx, target, path)
            if target.events != events:
                progress = inflated
            elif inflated - progress > ctx.max_record_bytes:
                yield None, rejection("record_too_large", f"one XML token over {ctx.max_record_bytes} bytes",
                                      locator=str(path)), 0
                return
        try:
            parser.close()
        finally:
            yield from _drain(ctx, target, path)


def read_medline(ctx: SourceContext) -> Iterator[Item]:
    """Abstracts from MEDLINE/PubMed baseline XML (.xml or .xml.gz), streamed with capped memory."""
    for path in files_under(ctx.path, ("*.xml.gz", "*.xml")):
        if (rej := empty_file(path)) is not None:
            yield None, rej, 0
            continue
        if (rej := too_large(path, ctx.max_inflated_bytes)) is not None:
            yield None, rej, 0
            continue
        try:
            yield from _medline_items(ctx, path)
        except _xml_errors() as e:
            # Citations parsed before the failure were yielded; the broken rest is one rejection.
            yield None, _xml_failure(path, e), 0


# --------------------------------------------------------------------------- IU-Xray
def read_iu_xray(ctx: SourceContext) -> Iterator[Item]:
    """Report text of the train split (images are not distributed here)."""
    path = ctx.path
    try:
        data = json.loads(read_bytes(path, ctx.max_file_bytes))
        split = data["train"]
        if not isinstance(split, list):
            raise ValueError("'train' is not a list")
    except InputTooLarge as e:
        yield None, rejection(e.reason, e.detail, locator=str(path)), 0
        return
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
        for obj, rej in iter_jsonl(path, ctx.max_record_bytes):
            if rej is not None:
                yield None, rej, 0
                continue
            try:
                rec = validate_record(obj)
                if (rej := ctx.check_text(rec["text"], f"{path}#{rec['id']}")) is not None and not rec["images"]:
                    yield None, rej, 0
                    continue
                rec = {**rec, "source": ctx.name, "meta": {**ctx.record_meta(), **rec["meta"]},
                       "images": [ctx.images.put_bytes(read_bytes(safe_join(root, im["path"]), ctx.max_file_bytes))
                                  for im in rec["images"]]}
            except RecordError as e:
                yield None, rejection(e.reason, e.detail, locator=str(path)), 0
                continue
            except PathEscapeError as e:
                yield None, rejection("path_escapes_root", str(e), locator=str(path)), 0
                continue
            except (ImageError, InputTooLarge) as e:
                yield None, rejection(e.reason, e.detail, locator=str(path)), 0
                continue
            except OSError as e:
                yield None, rejection("missing_image", str(e), locator=str(path)), 0
                continue
            yield rec, None, len(rec["text"].encode())
