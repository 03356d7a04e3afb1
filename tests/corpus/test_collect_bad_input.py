"""Bad input for the collect stage: every case is quarantined with a reason, the stage
completes, and read == kept + rejected holds."""

from __future__ import annotations

import gzip
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks import collect
from tasks.common.io import iter_jsonl, shard_paths
from tasks.common.stage import main
from tasks.corpus.connectors import CONNECTORS, SourceContext
from tasks.corpus.images import ImageStore

GOOD_PUBTATOR = ("123|t|Aspirin induced asthma.\n"
                 "123|a|We report a case of asthma after aspirin in an adult patient with rhinitis.\n"
                 "123\t0\t7\tAspirin\tChemical\tD001241\n"
                 "123\t16\t22\tasthma\tDisease\tD001249\n123\tCID\tD001241\tD001249\n\n")
MEDQUAD_DOC = """<?xml version="1.0" encoding="UTF-8"?>
<Document id="0001" source="Test" url="https://example.org/x"><Focus>Asthma</Focus>
<FocusAnnotations><UMLS><CUIs><CUI>C0004096</CUI></CUIs><SemanticTypes><SemanticType>T047</SemanticType>
</SemanticTypes><SemanticGroup>Disorders</SemanticGroup></UMLS></FocusAnnotations>
<QAPairs><QAPair pid="1"><Question qid="0001-1" qtype="information">What is asthma?</Question>
<Answer>Asthma is a chronic disease of the airways that makes breathing difficult.</Answer></QAPair>
<QAPair pid="2"><Question qid="0001-2" qtype="symptoms">What are the symptoms?</Question><Answer></Answer></QAPair>
</QAPairs></Document>"""
BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]>'
                  '<Document id="x"><Focus>&c;</Focus></Document>')
XXE = ('<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       '<Document id="y"><Focus>&x;</Focus></Document>')
MEDLINE = """<?xml version="1.0" encoding="UTF-8"?>
<MedlineCitationSet>
<MedlineCitation><PMID>1</PMID><Article><Journal><Title>J</Title></Journal>
<ArticleTitle>Title one.</ArticleTitle><Abstract><AbstractText Label="BACKGROUND">First abstract text about hypertension.</AbstractText></Abstract></Article></MedlineCitation>
<MedlineCitation><PMID>2</PMID><Article><ArticleTitle>No abstract here.</ArticleTitle></Article></MedlineCitation>
<MedlineCitation><PMID>3</PMID><Article><ArticleTitle>Title three.</ArticleTitle><Abstract><AbstractText>Third abstract text on diabetes mellitus and insulin.</AbstractText></Abstract></Article></MedlineCitation>
</MedlineCitationSet>
"""


def jpeg_bytes(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (120, 30, 30)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def hostile_root(tmp_path: Path) -> Path:
    """A data_root where every source mixes good records with the bad inputs of the issue."""
    root = tmp_path / "data"
    pub = root / "corpus" / "pubtator"
    pub.mkdir(parents=True)
    (pub / "good.txt").write_text(GOOD_PUBTATOR)
    (pub / "invalid_utf8.txt").write_bytes(b"9|t|Bad \xff\xfe title\n9|a|abstract\n\n")
    (pub / "garbage.txt").write_bytes(bytes(range(1, 255)) * 40)
    (pub / "empty.txt").write_bytes(b"")
    (pub / "malformed.txt").write_text("this is not PubTator\nsecond line\n\n")
    (pub / "huge_line.txt").write_text("7|t|" + "a" * 10_000_000 + "\n7|a|short abstract\n\n")
    mq = root / "corpus" / "medquad" / "1_Test_QA"
    mq.mkdir(parents=True)
    (mq / "good.xml").write_text(MEDQUAD_DOC)
    (mq / "truncated.xml").write_text(MEDQUAD_DOC[: len(MEDQUAD_DOC) // 2])
    (mq / "bomb.xml").write_text(BILLION_LAUGHS)
    (mq / "xxe.xml").write_text(XXE)
    (mq / "binary.xml").write_bytes(bytes(range(256)) * 10)
    ml = root / "corpus" / "medline"
    ml.mkdir(parents=True)
    (ml / "complete.xml").write_text(MEDLINE)
    many = "".join(f"<MedlineCitation><PMID>{100 + i}</PMID><Article><ArticleTitle>T{i}.</ArticleTitle>"
                   f"<Abstract><AbstractText>Abstract {i} on renal failure {i * 7919 % 1000}."
                   "</AbstractText></Abstract></Article></MedlineCitation>\n" for i in range(300))
    data = gzip.compress(f"<MedlineCitationSet>{many}</MedlineCitationSet>".encode())
    (ml / "truncated.xml.gz").write_bytes(data[: int(len(data) * 0.6)])
    vqa = root / "benchmarks" / "vqa_rad"
    (vqa / "images").mkdir(parents=True)
    (vqa / "images" / "good.jpg").write_bytes(jpeg_bytes())
    (vqa / "images" / "corrupt.jpg").write_bytes(jpeg_bytes()[:40])
    (vqa / "images" / "bomb.png").write_bytes(_png((3000, 3000)))
    (vqa / "trainset.json").write_text(json.dumps([
        {"qid": 1, "image_name": "good.jpg", "question": "Is there a mass?", "answer": "no"},
        {"qid": 2, "image_name": "corrupt.jpg", "question": "q", "answer": "a"},
        {"qid": 3, "image_name": "bomb.png", "question": "q", "answer": "a"},
        {"qid": 4, "image_name": "../../etc/passwd", "question": "q", "answer": "a"},
        {"qid": 5, "image_name": "missing.jpg", "question": "q", "answer": "a"},
        {"qid": 6, "question": "no image field"},
    ]))
    (root / "reports").mkdir()
    (root / "reports" / "iu.json").write_text(json.dumps(
        {"train": [{"id": "1", "report": "XXXX heart size is normal. Lungs are clear."}, {"id": "2"}]}))
    (root / "images").mkdir()
    np.savez(root / "images" / "pm.npz", train_images=np.zeros((3, 28, 28), np.uint8),
             train_labels=np.array([[0], [1], [7]], np.uint8))
    ext = root / "extra"
    ext.mkdir()
    good = {"id": "x1", "source": "mine", "text": "A clinical note on hypertension management.",
            "images": [], "meta": {}}
    (ext / "records.jsonl").write_text("\n".join([
        json.dumps(good), "{not json", json.dumps({"id": "x2", "text": "missing fields"}),
        json.dumps({**good, "id": "x3", "images": [{"path": "../../etc/passwd", "sha256": ""}]}),
    ]) + "\n")
    return root


def _png(size) -> bytes:
    buf = io.BytesIO()
    Image.new("L", size).save(buf, format="PNG")
    return buf.getvalue()


def hostile_argv(root: Path, out: Path) -> list[str]:
    return [f"data_root={root}", f"out_dir={out}", "max_image_pixels=1000000", "max_records_per_source=0",
            "sources.medquad.path=corpus/medquad", "sources.pubtator.path=corpus/pubtator",
            "sources.medline.path=corpus/medline", "sources.iu_xray.path=reports/iu.json",
            "sources.vqa_rad.path=benchmarks/vqa_rad", "sources.pneumoniamnist.path=images/pm.npz",
            "sources.dicom.enabled=false", "sources.jsonl.enabled=true", "sources.jsonl.path=extra"]


def test_collect_quarantines_every_bad_input(hostile_root: Path, tmp_path: Path):
    out = tmp_path / "collect"
    summary = main(collect.STAGE, hostile_argv(hostile_root, out))
    assert summary["read"] == summary["kept"] + summary["rejected"]
    reasons = summary["rejected_by_reason"]
    for reason in ("invalid_utf8", "malformed_pubtator", "empty_file", "text_too_large", "xml_parse_error",
                   "unsafe_xml", "truncated_file", "corrupt_image", "too_many_pixels",
                   "path_escapes_root", "missing_image", "missing_field", "bad_json", "no_answer",
                   "no_abstract", "bad_label"):
        assert reasons.get(reason, 0) >= 1, (reason, reasons)
    assert reasons["unsafe_xml"] == 2  # billion laughs and the external entity
    rejected = [e for p in shard_paths(out / "rejected") for e, _ in iter_jsonl(p)]
    assert len(rejected) == summary["rejected"]
    assert all(e["reason"] and ("locator" in e or "record" in e) for e in rejected)
    kept = [r for p in shard_paths(out / "kept") for r, _ in iter_jsonl(p)]
    by_source = {r["source"] for r in kept}
    assert {"pubtator", "medquad", "medline", "vqa_rad", "iu_xray", "pneumoniamnist", "jsonl"} <= by_source
    # the truncated .gz still yields the citation that came before the break
    assert any(r["source"] == "medline" and r["meta"]["pmid"] == "100" for r in kept)
    assert not any("root:" in r["text"] for r in kept)  # nothing from /etc/passwd got in
    # duplicate PneumoniaMNIST images (all zeros) are stored once
    assert summary["images_stored"] == 2 and summary["images_reused"] == 1


def test_missing_source_stops_with_the_path(tmp_path: Path):
    with pytest.raises(SystemExit, match="does not exist"):
        main(collect.STAGE, [f"data_root={tmp_path}", f"out_dir={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists()  # nothing half-written for DVC to cache


def test_checksum_mismatch_stops(hostile_root: Path, tmp_path: Path):
    argv = hostile_argv(hostile_root, tmp_path / "out") + ["sources.iu_xray.sha256=" + "ab" * 32]
    with pytest.raises(SystemExit, match="sha256"):
        main(collect.STAGE, argv)


def test_pubtator_offsets_point_at_gold_mentions(data_root: Path, tmp_path: Path):
    ctx = SourceContext("pubtator", data_root / "corpus" / "pubtator" / "CDR_TestSet.PubTator.txt",
                        ImageStore(tmp_path, "img", 10**8), 10**7)
    checked = 0
    for rec, rej, _ in CONNECTORS["pubtator"](ctx):
        assert rej is None
        for m in rec["meta"]["mentions"]:
            assert rec["text"][m["start"]:m["end"]] == m["text"]
            checked += 1
        if checked > 500:
            break
    assert checked > 500


def test_dicom_headers_without_phi(tmp_path: Path):
    import pydicom

    root = Path(pydicom.__file__).parent / "data" / "test_files"
    ctx = SourceContext("dicom", root, ImageStore(tmp_path, "img", 10**8), 10**7)
    items = list(CONNECTORS["dicom"](ctx))
    kept = [r for r, _, _ in items if r]
    assert len(kept) > 20 and any(r["images"] for r in kept)
    ct = next(r for r in kept if r["meta"]["file"] == "CT_small.dcm")
    assert ct["meta"]["attributes"]["Modality"] == "CT"
    flat = json.dumps([r["meta"] for r in kept])
    assert "PatientName" not in flat and "PatientID" not in flat
    assert any(rej["reason"] == "corrupt_dicom" for _, rej, _ in items if rej)


def test_vqa_rad_reads_train_split_only(data_root: Path, tmp_path: Path):
    ctx = SourceContext("vqa_rad", data_root / "benchmarks" / "vqa_rad",
                        ImageStore(tmp_path, "data/collect/images", 10**8), 10**7)
    n = 0
    for rec, rej, _ in CONNECTORS["vqa_rad"](ctx):
        assert rej is None and rec["meta"]["split"] == "train"
        assert rec["images"][0]["path"].startswith("data/collect/images/")
        n += 1
    assert n == 1798


def test_collect_is_deterministic(hostile_root: Path, tmp_path: Path):
    out = tmp_path / "out"
    main(collect.STAGE, hostile_argv(hostile_root, out))
    first = tmp_path / "first"
    shutil.move(out, first)
    main(collect.STAGE, hostile_argv(hostile_root, out))
    for rel in ("kept/part-00000.jsonl", "rejected/part-00000.jsonl", "summary.json"):
        assert (first / rel).read_bytes() == (out / rel).read_bytes()
    # locators name files relative to data_root, so outputs do not depend on the checkout path
    assert str(hostile_root) not in (out / "rejected/part-00000.jsonl").read_text()
