import time

import pytest

from tasks.corpus.clean import filters
from tasks.corpus.clean.filters import FilterParams, check, explain

P = FilterParams()
PROSE = ("Asthma is a chronic disease of the airways. The inside walls of the airways become "
         "inflamed and swollen, which makes them very sensitive; they may react strongly to "
         "allergens, tobacco smoke, cold air or exercise. When the airways react, the muscles "
         "around them tighten and less air flows into the lungs. Symptoms include wheezing, "
         "coughing, chest tightness and shortness of breath, often at night or early morning.")


def test_clean_prose_passes():
    assert check(PROSE, P) is None


def test_real_medquad_answers_mostly_pass(medquad_answers):
    rejected = [t for t in medquad_answers if check(t, P)]
    assert len(rejected) <= 0.02 * len(medquad_answers)


def test_too_short_and_image_exemption():
    assert check("Short answer.", P) == "too_short"
    assert check("", P) == "too_short"
    assert check("Short answer.", P, has_images=True) is None
    assert check("", P, has_images=True) is None  # image-only record


def test_symbol_ratio_catches_markup_not_punctuation():
    markup = "<div class='x'><p>{{template}}</p> | ## ** __ ~~ </div>" * 10
    assert check(markup, P, has_images=True) == "symbol_ratio"
    chem = ("(+)-6,6'-dihydroxythiobinupharidine (+)-1a; 5-FU/FA [12]; p < 0.05; (S(c)O(2)), "
            "n = 30; 1,2-dimethyl-3-nitrobenzene; 95% CI 1.2-3.4. ") * 4
    assert filters.symbol_ratio(chem) < P.max_symbol_ratio


def test_digit_ratio():
    table = "Results: " + " ".join(f"{i} {i * 37 % 1000} {i * 91 % 977}" for i in range(60))
    assert check(table, P) == "digit_ratio"


def test_dup_line_ratio():
    text = "\n".join(["Home | About | Contact"] * 6 + [PROSE])
    assert filters.dup_line_ratio(text) > 0.3
    assert check(text.replace("|", "-"), P) == "dup_line_ratio"


def test_top_ngram_repetition_spam():
    spam = "buy cheap pills now " * 40 + PROSE
    assert check(spam, P) == "top_ngram_ratio"
    assert "top 2-gram" in explain(spam, "top_ngram_ratio", P)


def test_repetition_rule_skips_short_documents():
    # One entity name said three times in a 40-word answer is not spam.
    short = ("Congenital pulmonary alveolar proteinosis is rare. Congenital pulmonary alveolar "
             "proteinosis presents at birth. Infants with congenital pulmonary alveolar "
             "proteinosis need care from specialists in lung disease and breathing support.")
    assert len(short.split()) < P.repetition_min_words
    assert check(short, FilterParams(min_chars=10)) is None


def test_thresholds_are_configurable():
    strict = FilterParams(min_chars=10_000)
    assert check(PROSE, strict) == "too_short"
    assert check(PROSE, FilterParams(max_symbol_ratio=0.0, min_chars=10)) is None  # no markup at all
    assert check(PROSE + " #", FilterParams(max_symbol_ratio=0.0, min_chars=10)) == "symbol_ratio"


@pytest.mark.parametrize("reason", ["too_short", "symbol_ratio", "digit_ratio", "dup_line_ratio"])
def test_explain_names_the_measure(reason):
    assert explain("x", reason, P) != ""


def test_unicode_text():
    text = ("Le diabète sucré est une maladie chronique caractérisée par une hyperglycémie "
            "persistante. 糖尿病は慢性疾患であり、血糖値が高い状態が続きます。 Сахарный диабет — "
            "хроническое заболевание, при котором уровень глюкозы в крови повышен.")
    assert len(text) >= P.min_chars
    assert check(text, P) is None


def test_dup_ngram_ratio_catches_self_copies():
    # An IU-Xray report whose findings were pasted again as its impression (real pattern).
    report = ("Stable normal cardiac size and contour, unremarkable mediastinal silhouette. Normal "
              "pulmonary vasculature and interstitium. Lungs clear, no airspace disease, pleural "
              "effusion, or pneumothorax. No active or acute cardiopulmonary disease.")
    assert check(report, FilterParams(min_chars=50)) is None
    doubled = report + " " + report
    assert check(doubled, FilterParams(min_chars=50)) == "dup_ngram_ratio"
    assert filters.dup_ngram_ratio(doubled.split(), 10) == 1.0
    assert "10-grams" in explain(doubled, "dup_ngram_ratio", P)


def test_ten_megabyte_single_line_is_fast(ten_mb_line):
    text = ten_mb_line
    assert len(text) > 9_000_000 and "\n" not in text
    t0 = time.perf_counter()
    assert check(text, P) is None  # every rule runs to the end
    assert time.perf_counter() - t0 < 10
    repeated = "the same sentence again and again " * 300_000
    t0 = time.perf_counter()
    assert check(repeated, P) == "top_ngram_ratio"
    assert time.perf_counter() - t0 < 10
