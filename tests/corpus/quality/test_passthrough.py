from tasks.common.records import make_record
from tasks.corpus.quality.run import passthrough


def test_structured_records_pass_through_unscored():
    image = make_record("vqa_rad", 1, "Question: mass?\nAnswer: no", images=[{"path": "p", "sha256": "s"}])
    dicom = make_record("dicom", "CT_small.dcm", "", meta={"attributes": {"Modality": "CT"}})
    text = make_record("medquad", 2, "Short answer about asthma.")
    assert passthrough(image, 200) and passthrough(dicom, 200)
    assert not passthrough(text, 200)
    long_caption = make_record("x", 3, "word " * 100, images=[{"path": "p", "sha256": "s"}])
    assert not passthrough(long_caption, 200)  # enough text to judge: it is scored
