"""Bounded readers: peak memory does not grow with the input.

A small .xml.gz whose one abstract inflates to 1 GiB, and a JSONL file with one 768 MiB line, are
read in a subprocess whose address space may grow by only 512 MiB (RLIMIT_AS) past what the imports
take: a reader that held the abstract or the line whole would die of MemoryError there. The oversized
unit comes back as one rejection with its reason, and the units around it are read as usual. The
other tests drive each cap with small values, and the bad-file cases (corrupt .npz, a manifest that
is not JSON) the collect stage had no test for.

Run: pytest -q tests/corpus/test_bounded_readers.py
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tasks.common.io import iter_jsonl
from tasks.corpus.connectors import CONNECTORS, SourceContext
from tasks.corpus.images import ImageStore

ROOT = Path(__file__).resolve().parents[2]
GIB, MIB = 1 << 30, 1 << 20
HEADROOM = 512 * MIB     # what the reader may add to the address space it starts with

CITATION = ("<MedlineCitation><PMID>{pmid}</PMID><Article><ArticleTitle>Title {pmid}.</ArticleTitle>"
            "<Abstract><AbstractText>{body}</AbstractText></Abstract></Article></MedlineCitation>\n")


def write_medline_bomb(path: Path, abstract_bytes: int) -> None:
    """Citations 1 and 3 are ordinary; citation 2's abstract is `abstract_bytes` of "a".

    Written as concatenated gzip members (a valid .gz; gzip reads members in sequence): the
    1 MiB member of "a" is compressed once and written again and again, so neither the test nor
    the disk ever holds the inflated abstract.
    """
    head = "<MedlineCitationSet>\n" + CITATION.format(pmid=1, body="First abstract on asthma.")
    head += CITATION.format(pmid=2, body="").split("</AbstractText>")[0]
    tail = "</AbstractText></Abstract></Article></MedlineCitation>\n"
    tail += CITATION.format(pmid=3, body="Third abstract on gout.") + "</MedlineCitationSet>\n"
    block = gzip.compress(b"a" * MIB, compresslevel=9)
    assert abstract_bytes % MIB == 0
    with open(path, "wb") as f:
        f.write(gzip.compress(head.encode()))
        for _ in range(abstract_bytes // MIB):
            f.write(block)
        f.write(gzip.compress(tail.encode()))


def write_huge_jsonl(path: Path, line_bytes: int) -> None:
    """Good line, one line of about `line_bytes` (a record whose text is all "a"), good line."""
    good = {"id": "g{}", "source": "mine", "text": "A note on hypertension.", "images": [], "meta": {}}
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps({**good, "id": "g1"}) + "\n")
        f.write('{"id": "huge", "source": "mine", "images": [], "meta": {}, "text": "')
        chunk = "a" * MIB
        for _ in range(line_bytes // MIB):
            f.write(chunk)
        f.write('"}\n')
        f.write(json.dumps({**good, "id": "g2"}) + "\n")


# Runs one connector on PATH with the address space capped at its current size + HEADROOM and
# prints what it yielded; a MemoryError exits 3 and names itself.
CHILD = """
import json, resource, sys, tempfile
from pathlib import Path
from tasks.corpus.connectors import CONNECTORS, SourceContext
from tasks.corpus.images import ImageStore

name, path, headroom = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
vm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, vm + headroom))
ctx = SourceContext(name, path, ImageStore(Path(tempfile.mkdtemp()), "img", 10**7), 2_000_000)
out = []
try:
    for rec, rej, _ in CONNECTORS[name](ctx):
        out.append(["kept", rec["id"], rec["text"][:40]] if rec else ["rejected", rej["reason"], rej["locator"]])
except MemoryError:
    print("MemoryError"); sys.exit(3)
print(json.dumps(out))
"""


def run_capped(name: str, path: Path) -> list[list[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, name, str(path), str(HEADROOM)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


needs_proc = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmSize from /proc")


@needs_proc
def test_gzip_bomb_abstract_is_rejected_in_bounded_memory(tmp_path: Path):
    bomb = tmp_path / "medline" / "bomb.xml.gz"
    bomb.parent.mkdir()
    write_medline_bomb(bomb, GIB)
    assert bomb.stat().st_size < 4 * MIB  # small on disk, 1 GiB inflated: twice the headroom
    got = run_capped("medline", bomb.parent)
    assert [g[:2] for g in got] == [["kept", got[0][1]], ["rejected", "text_too_large"], ["kept", got[2][1]]]
    assert got[0][2].startswith("Title 1.") and got[2][2].startswith("Title 3.")
    assert got[1][2] == f"{bomb}#PMID2"


@needs_proc
def test_huge_jsonl_line_is_rejected_in_bounded_memory(tmp_path: Path):
    src = tmp_path / "extra"
    src.mkdir()
    path = src / "records.jsonl"
    try:
        write_huge_jsonl(path, 768 * MIB)
        got = run_capped("jsonl", src)
    finally:
        path.unlink()  # 768 MiB: not left behind in pytest's kept temp folders
    assert [g[:2] for g in got] == [["kept", got[0][1]], ["rejected", "line_too_large"], ["kept", got[2][1]]]
    assert got[1][2] == f"{path}:2"


# ---- each cap, with small values -------------------------------------------------------------
def ctx_for(name: str, path: Path, tmp_path: Path, **caps) -> SourceContext:
    return SourceContext(name, path, ImageStore(tmp_path / "img", "img", 10**7), caps.pop("max_text_bytes", 2000),
                         **caps)


def items(name: str, ctx: SourceContext) -> list[tuple[str, str]]:
    """(kept id | rejection reason, locator or text head) per item."""
    return [("kept", rec["text"][:12]) if rec else (rej["reason"], rej["locator"]) for rec, rej, _ in
            CONNECTORS[name](ctx)]


def test_medline_caps_text_node_citation_token_and_inflated_size(tmp_path: Path):
    d = tmp_path / "medline"
    d.mkdir()
    many = "".join(f"<AbstractText>part {i} of a long structured abstract.</AbstractText>" for i in range(100))
    doc = ("<MedlineCitationSet>" + CITATION.format(pmid=1, body="Short abstract.")
           + CITATION.format(pmid=2, body="b" * 3000)                                   # one node > 2000
           + CITATION.format(pmid=3, body="x").replace("<AbstractText>x</AbstractText>", many)  # 3900 in all > 2500
           + CITATION.format(pmid=4, body="Another short abstract.") + "</MedlineCitationSet>")
    (d / "a.xml.gz").write_bytes(gzip.compress(doc.encode()))
    got = items("medline", ctx_for("medline", d, tmp_path, max_record_bytes=2500))
    loc = f"{d / 'a.xml.gz'}#PMID"
    assert got == [("kept", "Title 1.\n\nSh"), ("text_too_large", loc + "2"), ("record_too_large", loc + "3"),
                   ("kept", "Title 4.\n\nAn")]
    # 400 citations (about 40 kB) under a 20 kB inflated-size cap: the parser is fed 16 KiB at a time,
    # so the citations finished within the first 16 KiB are read, then the file is one rejection
    doc = "<MedlineCitationSet>" + "".join(CITATION.format(pmid=100 + i, body=f"Abstract {i}.")
                                           for i in range(400)) + "</MedlineCitationSet>"
    (d / "a.xml.gz").write_bytes(gzip.compress(doc.encode()))
    got = items("medline", ctx_for("medline", d, tmp_path, max_inflated_bytes=20_000))
    first = doc[:16 * 1024].count("</MedlineCitation>")
    assert 50 < first < 200 and len(got) == first + 1
    assert got[-1] == ("file_too_large", str(d / "a.xml.gz")) and {g[0] for g in got[:-1]} == {"kept"}
    # one tag bigger than the record cap: the parser would buffer it whole, so the file stops there
    (d / "a.xml.gz").write_bytes(gzip.compress(
        (CITATION.format(pmid=1, body="ok").replace("<Article>", f'<Article note="{"n" * 200_000}">')).encode()))
    got = items("medline", ctx_for("medline", d, tmp_path, max_record_bytes=50_000))
    assert got == [("record_too_large", str(d / "a.xml.gz"))]


def test_pubtator_block_over_the_record_cap(tmp_path: Path):
    d = tmp_path / "pubtator"
    d.mkdir()
    good = "5|t|Aspirin and asthma.\n5|a|A short abstract.\n\n"
    long_block = "6|t|Title.\n6|a|Abstract.\n" + "".join(f"6\t0\t6\tTitle{i}\tChemical\tD{i:06d}\n"
                                                          for i in range(100)) + "\n"
    huge_line = "7|t|" + "z" * 5000 + "\n7|a|x\n\n"
    (d / "x.txt").write_text(good + long_block + huge_line + good.replace("5|", "8|"))
    got = items("pubtator", ctx_for("pubtator", d, tmp_path, max_record_bytes=1000, max_text_bytes=10**6))
    assert got == [("kept", "Aspirin and "), ("record_too_large", f"{d / 'x.txt'}:4"),
                   ("record_too_large", f"{d / 'x.txt'}:107"), ("kept", "Aspirin and ")]


def test_jsonl_line_cap_and_image_file_cap(tmp_path: Path):
    from PIL import Image

    d = tmp_path / "extra"
    d.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(d / "big.png")   # 64x64 of noise: about 4 kB, over the 100-byte file cap
    rec = {"id": "r", "source": "s", "text": "A clinical note.", "images": [], "meta": {}}
    (d / "r.jsonl").write_text("\n".join([
        json.dumps(rec), json.dumps({**rec, "id": "long", "text": "y" * 500}),
        json.dumps({**rec, "id": "img", "images": [{"path": "big.png", "sha256": ""}]})]) + "\n")
    got = items("jsonl", ctx_for("jsonl", d, tmp_path, max_record_bytes=300, max_file_bytes=100))
    assert got == [("kept", "A clinical n"), ("line_too_large", f"{d / 'r.jsonl'}:2"),
                   ("file_too_large", str(d / "r.jsonl"))]


def test_iter_jsonl_skips_a_long_line_without_losing_line_numbers(tmp_path: Path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n' + b'{"b": "' + b"q" * 5000 + b'"}\n' + b"\n" + b'{"c": 3}')  # no final newline
    got = list(iter_jsonl(p, max_line_bytes=100))
    assert got[0] == ({"a": 1}, None) and got[2] == ({"c": 3}, None) and len(got) == 3
    assert got[1][1]["reason"] == "line_too_large" and got[1][1]["locator"] == f"{p}:2"
    assert got[1][1]["detail"] == "5010 bytes > 100"   # 7 + 5000 + 2 + newline, counted as it was skipped
    # a line of exactly the cap passes, one byte more does not (the newline is not counted)
    p.write_bytes(b'"' + b"k" * 98 + b'"\n' + b'"' + b"k" * 99 + b'"\n')
    assert [r["reason"] if r else o[:3] for o, r in iter_jsonl(p, max_line_bytes=100)] == ["kkk", "line_too_large"]


def test_manifest_and_document_file_caps(tmp_path: Path):
    (tmp_path / "iu.json").write_text(json.dumps({"train": [{"id": "1", "report": "r" * 400}]}))
    got = items("iu_xray", ctx_for("iu_xray", tmp_path / "iu.json", tmp_path, max_file_bytes=100))
    assert got == [("file_too_large", str(tmp_path / "iu.json"))]
    mq = tmp_path / "medquad"
    mq.mkdir()
    (mq / "doc.xml").write_text("<Document id='1'>" + "<Focus>f</Focus>" * 50 + "</Document>")
    got = items("medquad", ctx_for("medquad", mq, tmp_path, max_file_bytes=100))
    assert got == [("file_too_large", str(mq / "doc.xml"))]


# ---- bad files the collect stage had no test for -------------------------------------------------
def write_npz(path: Path, n: int = 3) -> None:
    np.savez_compressed(path, train_images=np.zeros((n, 28, 28), np.uint8), train_labels=np.zeros((n, 1), np.uint8))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bit_flip", "missing_array", "bare_npy"])
def test_corrupt_npz_is_one_rejection_naming_the_file(tmp_path: Path, damage: str):
    p = tmp_path / "pm.npz"
    write_npz(p, 50)
    data = p.read_bytes()
    if damage == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(bytes(range(256)) * 8)
    elif damage == "bit_flip":  # inside the deflated images: zlib error or CRC mismatch on read
        with zipfile.ZipFile(p) as zf:
            info = zf.getinfo("train_images.npy")
        start = info.header_offset + 30 + len(info.filename) + len(info.extra)
        p.write_bytes(data[:start + 40] + bytes(b ^ 0xFF for b in data[start + 40:start + 60]) + data[start + 60:])
    elif damage == "missing_array":
        np.savez(p, train_images=np.zeros((2, 28, 28), np.uint8))
    else:
        np.save(p.with_suffix(".npy"), np.zeros((2, 28, 28), np.uint8))
        p.with_suffix(".npy").rename(p)
    got = list(CONNECTORS["pneumoniamnist"](ctx_for("pneumoniamnist", p, tmp_path)))
    assert len(got) == 1 and got[0][0] is None
    assert got[0][1]["reason"] == "corrupt_file" and got[0][1]["locator"] == str(p)


def test_npz_inflating_past_the_file_cap_is_refused_before_loading(tmp_path: Path):
    p = tmp_path / "pm.npz"
    write_npz(p, 2000)   # 1.5 MB of zeros inflated, a few kB on disk
    assert p.stat().st_size < 20_000
    got = list(CONNECTORS["pneumoniamnist"](ctx_for("pneumoniamnist", p, tmp_path, max_file_bytes=1_000_000)))
    assert [(r["reason"], r["detail"]) for _, r, _ in got] == [
        ("file_too_large", "train_images: 1568128 bytes inflated > 1000000")]   # 128-byte header + 2000*784


@pytest.mark.parametrize("content", [b"{\"train\": [", b"\xff\xfe\x00garbage", b"", b"[1, 2, 3]"])
def test_iu_xray_manifest_that_is_not_json_is_one_rejection(tmp_path: Path, content: bytes):
    p = tmp_path / "iu.json"
    p.write_bytes(content)
    got = list(CONNECTORS["iu_xray"](ctx_for("iu_xray", p, tmp_path)))
    assert [(r["reason"], r["locator"]) for _, r, _ in got] == [("bad_json", str(p))]


@pytest.mark.parametrize("content", [b"[{\"qid\": 1,", b"\xff\xfe\x00garbage", b"", b"{\"qid\": 1}"])
def test_vqa_rad_manifest_that_is_not_json_is_one_rejection(tmp_path: Path, content: bytes):
    d = tmp_path / "vqa_rad"
    (d / "images").mkdir(parents=True)
    (d / "trainset.json").write_bytes(content)
    got = list(CONNECTORS["vqa_rad"](ctx_for("vqa_rad", d, tmp_path)))
    assert [(r["reason"], r["locator"]) for _, r, _ in got] == [("bad_json", str(d / "trainset.json"))]
