"""Source connectors, by the name used in params.yaml `collect.sources`."""

from tasks.corpus.connectors.base import Connector, SourceConfig, SourceContext, SourceError
from tasks.corpus.connectors.image_sources import read_dicom, read_pneumoniamnist, read_vqa_rad
from tasks.corpus.connectors.text_sources import read_iu_xray, read_jsonl, read_medline, read_medquad, read_pubtator

CONNECTORS: dict[str, Connector] = {
    "medquad": read_medquad,
    "pubtator": read_pubtator,
    "medline": read_medline,
    "iu_xray": read_iu_xray,
    "vqa_rad": read_vqa_rad,
    "pneumoniamnist": read_pneumoniamnist,
    "dicom": read_dicom,
    "jsonl": read_jsonl,
}

LICENSES = {
    "medquad": "CC BY 4.0 (MedQuAD)",
    "pubtator": "NCBI public-domain notice (BC5CDR, NCBI-disease)",
    "medline": "NLM terms and conditions (MEDLINE)",
    "iu_xray": "Open-i terms (IU-Xray)",
    "vqa_rad": "CC0 (VQA-RAD)",
    "pneumoniamnist": "CC BY 4.0 (MedMNIST)",
    "dicom": "MIT (pydicom test files)",
    "jsonl": "as declared in each record's meta",
}

__all__ = ["CONNECTORS", "LICENSES", "Connector", "SourceConfig", "SourceContext", "SourceError"]
