import pytest

from tasks.corpus.clean.phi import scrub_phi


@pytest.mark.parametrize("text,expected,kind", [
    ("Contact jane.doe+x@hospital.example.org today.", "Contact [EMAIL] today.", "email"),
    ("Call (301) 555-1234 now", "Call [PHONE] now", "phone"),
    ("Call 1-800-422-6237.", "Call [PHONE].", "phone"),
    ("tel 301.555.1234;", "tel [PHONE];", "phone"),
    ("London +44 20 7946 0958.", "London [PHONE].", "phone"),
    ("MRN: 1234567", "MRN: [ID]", "id"),
    ("Medical record # A12-3456 noted", "Medical record # [ID] noted", "id"),
    ("medical record number 99887766", "medical record number [ID]", "id"),
    ("SSN 123-45-6789", "SSN [ID]", "id"),
    ("see https://portal.example.com/r?id=3&token=abc123.", "see [URL].", "url"),
    ("GET http://api.example.com/v1?access_token=XYZ&x=1 ok", "GET [URL] ok", "url"),
    ("(https://s3.example.com/f.pdf?X-Amz-Signature=deadbeef)", "([URL])", "url"),
])
def test_scrubs_each_kind(text, expected, kind):
    out, counts = scrub_phi(text)
    assert out == expected
    assert counts == {kind: 1}


@pytest.mark.parametrize("text", [
    "Infuse 5 to 20 micrograms/kg/min; titrate 0.5-1.0 mg every 2-4 hours.",
    "Enrolled 1998-2004, follow-up 2004-2010; 120/80 mmHg; 36.5-37.5 C.",
    "PMID: 12345678. PMID 9876543. Neurology. 2004;62(3):456-459. doi:10.1016/j.cell.2004.05.012",
    "scores improved (+2.73) and (+0.30 ± 0.50 D); +13.1% in males; p < 0.001; n=1234567",
    "ISBN 978-0-12-345678-9; CAS 50-00-0; ICD-10 E11.9; version 3.2.1; 555-1234",
    "Read more at https://medlineplus.gov/ency/article/000123.htm?lang=en or www.cancer.gov.",
    "The medical record is complete. MRN: pending. The patient is stable.",
    "",
])
def test_leaves_medical_text_alone(text):
    out, counts = scrub_phi(text)
    assert out == text
    assert not counts


def test_counts_several_kinds():
    text = "a@b.org, c@d.net, MRN: 7654321, 212-605-3719 and 410-785-1414."
    out, counts = scrub_phi(text)
    assert out == "[EMAIL], [EMAIL], MRN: [ID], [PHONE] and [PHONE]."
    assert counts == {"email": 2, "id": 1, "phone": 2}
