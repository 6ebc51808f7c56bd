"""Vital signs and laboratory values written in prose: "BP118/66. HR83.", "pulse is elevated at 105", "hemoglobin was
12.1", "a white count of 6.3", "95% O2 saturation on room air", "a UA on 08/28/2007, which was negative".

No maintained library reads these (clinical NLP toolkits leave them to regular expressions, as cTAKES and medspaCy
do), so the patterns are here, each with tests. A value introduced by a comparison ("until the INR was greater
than 1.7") is a threshold, not a result, and is not read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Each vital sign: the names a note gives it, the name it is listed under, and the unit when the note gives none.
_VITALS: list[tuple[str, str, str | None]] = [
    (r"blood\s+pressure|b/?p", "Blood pressure", "mmHg"),
    (r"heart\s+rate|hr", "Heart rate", "/min"),
    (r"pulse(?:\s+rate)?|p", "Pulse", "/min"),
    (r"respiratory\s+rate|resp(?:irations|\.)?|rr", "Respiratory rate", "/min"),
    (r"temperature|temp\.?|t", "Temperature", None),
    (r"(?:spo2|sao2|o2\s+sat(?:uration)?s?|oxygen\s+saturation|pulse\s+ox(?:imetry)?|sat(?:uration)?s?)",
     "O2 saturation", "%"),
    (r"weight|wt\.?|weighs|weighing", "Weight", None),
    (r"height|ht\.?", "Height", None),
    (r"bmi|body\s+mass\s+index", "BMI", "kg/m2"),
]

# Words that may stand between a name and its value: "pulse is elevated at 105", "BMI of 51".
_FILLER = (r"(?:\s*[:=]|\s*(?:is|was|were|of|at|reading|measured|elevated|low|high|normal|today|currently|around|about)"
           r"\b)*\s*")
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_COMPARISON = re.compile(r"(?:greater|less|more|higher|lower)\s+than\s*$|(?:above|below|over|under|>|<|≥|≤)\s*$",
                         re.IGNORECASE)

_VALUES = {
    "Blood pressure": r"(?P<value>\d{2,3}\s*/\s*\d{2,3})",
    "Height": r"(?P<value>\d\s*(?:'|′|ft\.?|feet|foot)\s*\d{1,2}\s*(?:\"|″|''|inch(?:es)?|in\.?)?|\d{2,3}(?:\.\d)?)"
              r"\s*(?P<unit>cm|m|in(?:ches)?\b)?",
    "Temperature": r"(?P<value>\d{2,3}(?:\.\d+)?)\s*°?\s*(?P<unit>[CF](?![a-z])|degrees?\s+(?:fahrenheit|celsius))?",
    "Weight": r"(?P<value>\d{2,3}(?:\.\d+)?)\s*(?P<unit>lbs?\b|pounds|kg\b|kilograms)?",
    "O2 saturation": r"(?P<value>\d{2,3})\s*%?",
}


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str  # the vital sign or test as listed: "Blood pressure", "Hemoglobin"
    value: str  # as written: "127/72", "12.1", "278,000", "negative", "5'9\""
    unit: str | None
    start: int  # the name's start to the value's end, in the text given
    end: int


def _vital_pattern(names: str, listed: str) -> re.Pattern[str]:
    value = _VALUES.get(listed, rf"(?P<value>{_NUMBER})")
    return re.compile(rf"(?<![A-Za-z])(?:{names})(?![A-Za-z]){_FILLER}{value}", re.IGNORECASE)


_VITAL_PATTERNS = [(_vital_pattern(names, listed), listed, unit) for names, listed, unit in _VITALS]
# A height in feet and inches is one without its name: "He is 5'9\"."
_FEET_AND_INCHES = re.compile(r"(?<![\d'])(?P<value>[3-7]\s?(?:'|′)\s?\d{1,2}\s?(?:\"|″|''))")
# Words before a weight that make it another weight than the patient's: "ideal body weight is 160 pounds".
_NOT_THE_WEIGHT = re.compile(r"(?:ideal|goal|target|excess|desired|lose|lost|loss|gain|gained)\s+(?:body\s+)?$", re.IGNORECASE)
# A value before its name: "95% O2 saturation on room air".
_SATURATION_FIRST = re.compile(r"(?P<value>\d{2,3})\s*%\s*(?:o2|oxygen)\s+sat(?:uration)?", re.IGNORECASE)

# Plausible ranges: a number outside is a different thing the pattern caught ("T4", "P 2").
_RANGES = {
    "Heart rate": (20, 250), "Pulse": (20, 250), "Respiratory rate": (4, 60), "Temperature": (30, 110),
    "O2 saturation": (50, 100), "Weight": (1, 700), "BMI": (10, 90),
}


def vitals(text: str) -> list[Measurement]:
    """Every vital sign written in `text`, in order; where two patterns read one place, the first listed wins."""
    found: list[Measurement] = []

    def add(measured: Measurement | None) -> None:
        if measured is not None and not any(other.start < measured.end and measured.start < other.end for other in found):
            found.append(measured)

    for pattern, listed, unit in _VITAL_PATTERNS:
        for match in pattern.finditer(text):
            if _single_letter(match) or _COMPARISON.search(text[max(0, match.start("value") - 16) : match.start("value")]):
                continue
            if listed == "Weight" and _NOT_THE_WEIGHT.search(text[max(0, match.start() - 20) : match.start()]):
                continue
            add(_measurement(match, listed, unit))
    for match in _SATURATION_FIRST.finditer(text):
        add(Measurement("O2 saturation", match.group("value"), "%", match.start(), match.end()))
    for match in _FEET_AND_INCHES.finditer(text):
        add(Measurement("Height", match.group("value"), None, match.start(), match.end()))
    return sorted(found, key=lambda m: m.start)


def _single_letter(match: re.Match[str]) -> bool:
    """Whether a name of one letter ("T", "P") is read where it names nothing: it names a vital only in capitals with
    the number at once, as in "T36.8C" or "P 84", not "t 2"."""
    name = match.group(0)[: match.start("value") - match.start()]
    return len(name.strip()) == 1 and not re.fullmatch(r"[TP]\s?", name)


def _measurement(match: re.Match[str], listed: str, unit: str | None) -> Measurement | None:
    value = " ".join(match.group("value").split())
    written_unit = match.groupdict().get("unit")
    number = _number(value)
    low, high = _RANGES.get(listed, (None, None))
    if number is not None and low is not None and not low <= number <= high:
        return None
    if listed == "Temperature":
        unit = (written_unit or ("F" if number and number > 50 else "C"))[0].upper()
    elif written_unit:
        unit = written_unit
    return Measurement(listed, value, unit, match.start(), match.end("unit") if written_unit else match.end("value"))


def _number(value: str) -> float | None:
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return None


# Laboratory tests as notes name them, with the name each is listed under. Written here because no offline library
# maps lab abbreviations; LOINC's table is not redistributable on PyPI.
_LABS: dict[str, tuple[str, ...]] = {
    "WBC": ("wbc", "white count", "white blood cell count", "white blood cells", "white cell count", "leukocytes"),
    "Hemoglobin": ("hemoglobin", "haemoglobin", "hgb", "hb"),
    "Hematocrit": ("hematocrit", "haematocrit", "hct"),
    "Platelets": ("platelets", "platelet count", "plt"),
    "Creatinine": ("creatinine", "creat", "cr"),
    "BUN": ("bun", "blood urea nitrogen", "urea"),
    "Sodium": ("sodium", "na"),
    "Potassium": ("potassium", "k"),
    "Chloride": ("chloride", "cl"),
    "Bicarbonate": ("bicarbonate", "bicarb", "co2", "hco3"),
    "Anion gap": ("anion gap",),
    "Glucose": ("glucose", "blood sugar", "blood glucose"),
    "Fasting glucose": ("fasting glucose", "fasting blood sugar", "fasting blood glucose"),
    "Calcium": ("calcium", "ca"),
    "Magnesium": ("magnesium", "mg"),
    "Phosphorus": ("phosphorus", "phosphate"),
    "Albumin": ("albumin",),
    "ALT": ("alt", "sgpt"),
    "AST": ("ast", "sgot"),
    "Alkaline phosphatase": ("alkaline phosphatase", "alk phos"),
    "Bilirubin": ("bilirubin", "total bilirubin", "t bili"),
    "INR": ("inr",),
    "PT": ("pt", "prothrombin time"),
    "PTT": ("ptt", "aptt"),
    "Troponin": ("troponin", "troponin i", "troponin t"),
    "BNP": ("bnp",),
    "Hemoglobin A1c": ("hemoglobin a1c", "hba1c", "a1c", "glycosylated hemoglobin"),
    "TSH": ("tsh",),
    "Cholesterol": ("cholesterol", "total cholesterol"),
    "LDL": ("ldl",),
    "HDL": ("hdl",),
    "Triglycerides": ("triglycerides",),
    "ESR": ("esr", "sed rate"),
    "CRP": ("crp", "c-reactive protein"),
    "Lactate": ("lactate", "lactic acid"),
    "Lipase": ("lipase",),
    "eGFR": ("egfr", "gfr"),
    "Urinalysis": ("urinalysis", "ua"),
}
# Abbreviations of two letters or fewer that are everyday words or units in prose ("mg", "K", "Ca", "PT" as physical
# therapy): read as a test only when the value follows at once.
_TERSE = 2

_QUALITATIVE = r"negative|positive|not\s+detected|detected"
_LAB_NAMES = sorted(((name, listed) for listed, names in _LABS.items() for name in names), key=lambda p: -len(p[0]))


def _lab_pattern() -> re.Pattern[str]:
    names = "|".join(re.escape(name).replace(r"\ ", r"\s+") for name, _ in _LAB_NAMES)
    return re.compile(
        rf"(?<![A-Za-z])(?P<name>{names})(?![A-Za-z])(?P<gap>{_FILLER}(?:slightly\s+|mildly\s+|markedly\s+)?"
        rf"(?:(?:decreased|increased|elevated|low|high)\s+(?:at\s+)?)?)(?P<value>{_NUMBER})(?![\d/])"
        rf"(?:\s*(?P<unit>mg/dl|g/dl|mmol/l|meq/l|u/l|iu/l|k/ul|x10\^?\d+/l|%|ng/ml|pg/ml|seconds|sec))?",
        re.IGNORECASE,
    )


_LAB = _lab_pattern()
_QUALITATIVE_LAB = re.compile(
    rf"(?<![A-Za-z])(?P<name>urinalysis|ua|urine\s+culture|blood\s+cultures?|covid(?:-19)?\s+test|pregnancy\s+test)"
    rf"(?![A-Za-z])[^.;\n]{{0,40}}?\b(?:was|were|is|:)\s+(?P<value>{_QUALITATIVE})\b",
    re.IGNORECASE,
)
_LISTED = {name: listed for name, listed in _LAB_NAMES}


def labs(text: str) -> list[Measurement]:
    """Every laboratory value written in prose in `text`, in order."""
    found = []
    for match in _LAB.finditer(text):
        name = match.group("name")
        if len(name) <= _TERSE and (match.group("gap").strip() not in ("", ":", "=") or not name[0].isupper()):
            continue
        if _COMPARISON.search(text[max(0, match.start("value") - 16) : match.start("value")]):
            continue
        listed = _LISTED[" ".join(name.casefold().split())]
        end = match.end("unit") if match.group("unit") else match.end("value")
        found.append(Measurement(listed, match.group("value"), match.group("unit"), match.start(), end))
    for match in _QUALITATIVE_LAB.finditer(text):
        listed = _LISTED.get(" ".join(match.group("name").casefold().split()), match.group("name").strip().capitalize())
        found.append(Measurement(listed, match.group("value").lower(), None, match.start(), match.end()))
    return sorted(found, key=lambda m: m.start)
