"""Lab-report content for OCR synthesis (paper §3.3.4): analyte panels with units and adult reference
ranges, and a seeded report generator (which panels, which values, which flags).

    from tasks.cpt_synthesis.ocr_panels import make_report
    report = make_report(np.random.default_rng(7), lang="en")   # Report(title, info lines, rows, ...)

Ranges and units are common adult values in SI-style units as printed by hospital laboratories (they
vary by laboratory and population; the report only has to be plausible, and the QA targets are read
from the report itself, never from this table). Values are drawn inside the range most of the time and
outside it with probability `abnormal_rate`, flagged H/L (English) or ↑/↓ (Chinese) as printed reports do.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Analyte:
    code: str
    en: str
    zh: str
    unit: str
    low: float
    high: float
    decimals: int


def _a(code, en, zh, unit, low, high, decimals):
    return Analyte(code, en, zh, unit, float(low), float(high), decimals)


PANELS: dict[str, tuple[str, str, tuple[Analyte, ...]]] = {
    "cbc": ("Complete Blood Count", "血常规", (
        _a("WBC", "White blood cell count", "白细胞计数", "10^9/L", 3.5, 9.5, 2),
        _a("RBC", "Red blood cell count", "红细胞计数", "10^12/L", 4.3, 5.8, 2),
        _a("HGB", "Hemoglobin", "血红蛋白", "g/L", 130, 175, 0),
        _a("HCT", "Hematocrit", "红细胞压积", "%", 40, 50, 1),
        _a("MCV", "Mean corpuscular volume", "平均红细胞体积", "fL", 82, 100, 1),
        _a("MCH", "Mean corpuscular hemoglobin", "平均红细胞血红蛋白量", "pg", 27, 34, 1),
        _a("MCHC", "Mean corpuscular Hb concentration", "平均红细胞血红蛋白浓度", "g/L", 316, 354, 0),
        _a("PLT", "Platelet count", "血小板计数", "10^9/L", 125, 350, 0),
        _a("NEUT%", "Neutrophils", "中性粒细胞百分比", "%", 40, 75, 1),
        _a("LYMPH%", "Lymphocytes", "淋巴细胞百分比", "%", 20, 50, 1),
    )),
    "bmp": ("Basic Metabolic Panel", "电解质及肾功能", (
        _a("NA", "Sodium", "钠", "mmol/L", 137, 147, 1),
        _a("K", "Potassium", "钾", "mmol/L", 3.5, 5.3, 2),
        _a("CL", "Chloride", "氯", "mmol/L", 99, 110, 1),
        _a("CO2", "Bicarbonate", "二氧化碳结合力", "mmol/L", 22, 29, 1),
        _a("UREA", "Urea", "尿素", "mmol/L", 2.8, 7.2, 2),
        _a("CREA", "Creatinine", "肌酐", "µmol/L", 57, 111, 0),
        _a("GLU", "Glucose (fasting)", "空腹血糖", "mmol/L", 3.9, 6.1, 2),
        _a("CA", "Calcium", "钙", "mmol/L", 2.11, 2.52, 2),
    )),
    "liver": ("Liver Function Tests", "肝功能", (
        _a("ALT", "Alanine aminotransferase", "丙氨酸氨基转移酶", "U/L", 9, 50, 0),
        _a("AST", "Aspartate aminotransferase", "天门冬氨酸氨基转移酶", "U/L", 15, 40, 0),
        _a("ALP", "Alkaline phosphatase", "碱性磷酸酶", "U/L", 45, 125, 0),
        _a("GGT", "Gamma-glutamyl transferase", "γ-谷氨酰转移酶", "U/L", 10, 60, 0),
        _a("TBIL", "Total bilirubin", "总胆红素", "µmol/L", 0, 26, 1),
        _a("DBIL", "Direct bilirubin", "直接胆红素", "µmol/L", 0, 8, 1),
        _a("TP", "Total protein", "总蛋白", "g/L", 65, 85, 1),
        _a("ALB", "Albumin", "白蛋白", "g/L", 40, 55, 1),
    )),
    "lipid": ("Lipid Panel", "血脂", (
        _a("TC", "Total cholesterol", "总胆固醇", "mmol/L", 0, 5.18, 2),
        _a("TG", "Triglycerides", "甘油三酯", "mmol/L", 0, 1.70, 2),
        _a("HDL", "HDL cholesterol", "高密度脂蛋白胆固醇", "mmol/L", 1.04, 2.0, 2),
        _a("LDL", "LDL cholesterol", "低密度脂蛋白胆固醇", "mmol/L", 0, 3.37, 2),
    )),
    "thyroid": ("Thyroid Function", "甲状腺功能", (
        _a("TSH", "Thyroid-stimulating hormone", "促甲状腺激素", "mIU/L", 0.27, 4.2, 2),
        _a("FT4", "Free thyroxine", "游离甲状腺素", "pmol/L", 12, 22, 1),
        _a("FT3", "Free triiodothyronine", "游离三碘甲状腺原氨酸", "pmol/L", 3.1, 6.8, 2),
        _a("TT4", "Total thyroxine", "总甲状腺素", "nmol/L", 66, 181, 0),
    )),
    "coag": ("Coagulation", "凝血功能", (
        _a("PT", "Prothrombin time", "凝血酶原时间", "s", 9.4, 12.5, 1),
        _a("INR", "International normalized ratio", "国际标准化比值", "", 0.8, 1.2, 2),
        _a("APTT", "Activated partial thromboplastin time", "活化部分凝血活酶时间", "s", 25.1, 36.5, 1),
        _a("FIB", "Fibrinogen", "纤维蛋白原", "g/L", 2.0, 4.0, 2),
    )),
}
ALL_ANALYTES = tuple(a for _, _, rows in PANELS.values() for a in rows)

LABELS = {
    "en": {"title": "Clinical Laboratory Report", "cols": ("Test", "Result", "Flag", "Unit", "Reference range"),
           "high": "H", "low": "L", "legend": "Flag: H = above reference range, L = below reference range",
           "info": ("Patient ID: {pid}", "Sex: {sex}", "Age: {age}", "Specimen: {specimen}",
                    "Collected: {date}"),
           "sex": ("M", "F"), "specimen": {"coag": "Citrated plasma", "cbc": "Whole blood (EDTA)", None: "Serum"},
           "footer": "Reported: {date}   Verified by: laboratory physician",
           "hospitals": ("Riverside General Hospital", "St. Anne Medical Center", "Northfield University Hospital",
                         "Lakeview Community Hospital")},
    "zh": {"title": "检验报告单", "cols": ("项目", "结果", "提示", "单位", "参考范围"),
           "high": "↑", "low": "↓", "legend": "提示：↑ 高于参考范围，↓ 低于参考范围",
           "info": ("患者编号：{pid}", "性别：{sex}", "年龄：{age}岁", "标本：{specimen}", "采集时间：{date}"),
           "sex": ("男", "女"), "specimen": {"coag": "枸橼酸钠抗凝血浆", "cbc": "EDTA抗凝全血", None: "血清"},
           "footer": "报告时间：{date}   审核：检验科医师",
           "hospitals": ("滨江市第一人民医院", "东湖医科大学附属医院", "南山区中心医院", "青城市妇幼保健院")},
}


@dataclasses.dataclass
class Row:
    analyte: Analyte
    name: str          # as printed (language of the report)
    value: str         # as printed, e.g. "6.42"
    flag: str          # "", "H"/"L" or "↑"/"↓"
    unit: str
    ref: str           # as printed, e.g. "3.50-9.50" or "<5.18"
    status: str        # "normal" | "high" | "low"

    def cells(self) -> tuple[str, str, str, str, str]:
        return (self.name, self.value, self.flag, self.unit, self.ref)


@dataclasses.dataclass
class Report:
    lang: str
    hospital: str
    title: str
    panels: list[str]
    info: list[str]            # patient/specimen lines as printed
    columns: tuple[str, ...]
    rows: list[Row]
    legend: str
    footer: str


def fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


def ref_text(a: Analyte) -> str:
    return f"<{fmt(a.high, a.decimals)}" if a.low == 0 else f"{fmt(a.low, a.decimals)}-{fmt(a.high, a.decimals)}"


def draw_value(a: Analyte, rng: np.random.Generator, abnormal_rate: float) -> tuple[float, str]:
    """(value, status): inside the range, or with probability abnormal_rate above/below it (never
    below a range that starts at 0). Rounded so the printed value and its status agree."""
    span = a.high - a.low
    status = "normal"
    if rng.random() < abnormal_rate:
        status = "low" if a.low > 0 and rng.random() < 0.4 else "high"
    if status == "normal":
        x = rng.uniform(a.low + 0.05 * span, a.high - 0.05 * span)
    elif status == "high":
        x = a.high + rng.uniform(0.05, 0.8) * max(span, a.high * 0.2)
    else:
        x = a.low - rng.uniform(0.05, 0.45) * a.low
    x = round(x, a.decimals)
    step = 10.0 ** -a.decimals                            # rounding must not move a value across a limit
    if status == "normal":
        x = min(max(x, a.low), a.high)
    elif status == "high" and x <= a.high:
        x = round(a.high + step, a.decimals)
    elif status == "low" and x >= a.low:
        x = round(a.low - step, a.decimals)
    return x, status


def make_report(rng: np.random.Generator, lang: str = "en", *, abnormal_rate: float = 0.25,
                max_panels: int = 2) -> Report:
    """A seeded lab report: 1..max_panels panels, every analyte of each panel, patient lines."""
    if lang not in LABELS:
        raise ValueError(f"lang must be one of {sorted(LABELS)}, got {lang!r}")
    lab = LABELS[lang]
    keys = list(PANELS)
    n = int(rng.integers(1, max_panels + 1))
    chosen = [keys[i] for i in sorted(rng.choice(len(keys), size=n, replace=False))]
    rows = []
    for key in chosen:
        for a in PANELS[key][2]:
            x, status = draw_value(a, rng, abnormal_rate)
            flag = {"normal": "", "high": lab["high"], "low": lab["low"]}[status]
            rows.append(Row(a, a.en if lang == "en" else a.zh, fmt(x, a.decimals), flag, a.unit, ref_text(a), status))
    date = f"20{int(rng.integers(19, 25))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d} " \
           f"{int(rng.integers(6, 18)):02d}:{int(rng.integers(0, 60)):02d}"
    specimen = lab["specimen"].get(chosen[0], lab["specimen"][None]) if len(chosen) == 1 else lab["specimen"][None]
    fields = {"pid": str(int(rng.integers(1_000_000, 9_999_999))), "sex": lab["sex"][int(rng.integers(2))],
              "age": str(int(rng.integers(18, 90))), "specimen": specimen, "date": date}
    info = [t.format(**fields) for t in lab["info"]]
    panel_names = [PANELS[k][0] if lang == "en" else PANELS[k][1] for k in chosen]
    sep = " / " if lang == "en" else "、"
    title = f"{lab['title']} - {sep.join(panel_names)}" if lang == "en" else f"{lab['title']}（{sep.join(panel_names)}）"
    return Report(lang, lab["hospitals"][int(rng.integers(len(lab["hospitals"])))], title, chosen, info,
                  lab["cols"], rows, lab["legend"], lab["footer"].format(date=date))
