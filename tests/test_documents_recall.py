"""Recall of the corpus's ground truth: which true medications, allergies, conditions and lab values the text holds.

For the figures per file and category:
    .venv/bin/python tests/test_documents_recall.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from documents import load

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
CATEGORIES = ("medications", "allergies", "conditions", "labs")
LAB_WINDOW = 120  # how far after a lab's name its value may be written

# Truth that a note states in other words. The reader gets the note's text
# whole; the truth file paraphrases it. (file, category, fact): what the text
# says instead, verbatim, and is checked to say.
PARAPHRASED: dict[tuple[str, str, str], str] = {
    ("ccda_referral_note_eve_betterhalf.xml", "conditions", "Pressure ulcer of left knee"):
        "developed a pressure ulcer on her left knee",
    ("mtsamples_ed_back_pain.txt", "medications", "Voltaren 75 mg q.12h."):
        "Rx for Voltaren 75 mg tabs, dispensed 20, sig. one p.o. q.12h.",
    ("mtsamples_gastric_bypass_consult.docx", "conditions", "Morbid obesity (BMI 51)"): "He has a BMI of 51.",
    ("mtsamples_gastric_bypass_discussion.txt", "medications", "Crestor 20 mg daily"): "Crestor 20 mg p.o. daily",
    ("mtsamples_gastric_bypass_discussion.txt", "medications", "Hydrochlorothiazide 20 mg daily"):
        "hydrochlorothiazide 20 mg p.o. daily",
    ("mtsamples_gastric_bypass_discussion.txt", "conditions", "Obesity (BMI 41)"):
        "a body mass index of 41 with obesity related comorbidities",
    ("mtsamples_moyamoya.txt", "conditions", "Moyamoya disease"): "Moya Moya disease",
    ("mtsamples_moyamoya.txt", "conditions", "Old lacunar infarct, right basal ganglia"):
        "an old lacunar infarct in the right basal ganglia",
    ("mtsamples_tka_discharge_summary.pdf", "medications", "Diprosone cream 0.05% b.i.d."):
        "Diprosone cream 0.05% cream b.i.d.",
    ("mtsamples_tka_discharge_summary.pdf", "medications", "Oxycodone SR 20 mg q.12h. (then 10 mg q.12h.)"):
        "oxycodone SR 20 mg p.o. q.12h. for five days, then decrease to oxycodone SR 10 mg p.o. q.12h.",
    ("mtsamples_tka_discharge_summary.pdf", "medications", "Percocet 5/325 mg p.r.n."):
        "Percocet 5/325 mg one to two tablets q.6h. to be used p.r.n.",
    ("mtsamples_tka_discharge_summary.pdf", "medications", "Trazodone 50 mg at bedtime p.r.n."):
        "trazodone 50 mg p.o. at bedtime p.r.n.",
    ("mtsamples_tka_discharge_summary.pdf", "labs", "Urinalysis"): "a UA on 08/28/2007, which was negative",
    ("mtsamples_tka_discharge_summary.pdf", "labs", "WBC"): "a white count of 6.3",
}


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text) is not None


def _forms(fact: str) -> list[str]:
    """The fact as written, and, for "name (qualifier)", the name alone."""
    fact = normalised(fact)
    name = normalised(re.sub(r"\([^)]*\)", " ", fact))
    return [fact, name] if name and name != fact else [fact]


def fact_found(fact: str, text: str) -> bool:
    """Whether `fact` is in `text` (normalised).

    The truth writes qualifiers in parentheses ("Ultram (tramadol)",
    "Hematocrit (admission)") and alternatives with slashes ("Azotemia / acute
    renal failure"): such a fact also counts when each of its parts is in the text.
    """
    forms = _forms(fact)
    if _contains(text, forms[0]):
        return True
    parts = re.findall(r"\(([^)]*)\)", forms[0]) + forms[-1].split(" / ")
    return len(parts) > 1 and all(_contains(text, normalised(part)) for part in parts)


_NUMBER = re.compile(r"(?<![\d.])\d[\d,]*(?:\.\d+)?")


def value_written(value: object, window: str) -> bool:
    """Whether `window` states `value`: text values as written; numbers at any precision.

    A number counts when it is the value rounded or cut to its own decimals
    ("134.63" or "134.6" for 134.6303...). A whole number counts only as the
    value rounded to two decimals with the zeros dropped ("338" for 337.998),
    so that "1" never passes for 1.1.
    """
    if isinstance(value, str):
        return _contains(window, normalised(value))
    assert isinstance(value, (int, float))
    for match in _NUMBER.finditer(window):
        written = match.group().rstrip(",")
        number = float(written.replace(",", ""))
        decimals = len(written.partition(".")[2])
        if abs(number - value) < (10**-decimals if decimals else 0.005):
            return True
    return False


def lab_found(lab: dict, text: str) -> bool:
    """Whether the lab's name is in the text with its value written shortly after it."""
    for name in _forms(lab["name"]):
        for match in re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text):
            if value_written(lab["value"], text[match.end() : match.end() + LAB_WINDOW]):
                return True
    return False


def text_of(path: Path) -> str:
    return normalised(" ".join(page.text for page in load(path).pages))


def misses(path: Path) -> dict[str, list[str]]:
    """Per category, the true facts that the loaded document's text does not hold."""
    truth = json.loads((path.parent / "truth" / f"{path.stem}.json").read_text())["facts"]
    text = text_of(path)
    return {
        category: [lab["name"] for lab in truth["labs"] if not lab_found(lab, text)]
        if category == "labs"
        else [fact for fact in truth[category] if not fact_found(fact, text)]
        for category in CATEGORIES
    }


def corpus_files(corpus: Path) -> list[str]:
    return sorted(path.name for path in corpus.iterdir() if path.is_file() and path.suffix != ".md")


@pytest.mark.parametrize("file_name", corpus_files(CORPUS) if CORPUS.is_dir() else [])
def test_ground_truth_is_in_the_text(corpus: Path, file_name: str) -> None:
    missed = {(file_name, category, fact) for category, facts in misses(corpus / file_name).items() for fact in facts}
    assert missed == {key for key in PARAPHRASED if key[0] == file_name}
    text = text_of(corpus / file_name)
    assert [key for key in missed if normalised(PARAPHRASED[key]) not in text] == []


def test_fact_matching_rules() -> None:
    text = normalised("Azotemia, acute renal failure. Ultram and tramadol. Triglycerides: 134.63 mg/dL; INR 1.")
    assert fact_found("Azotemia / acute renal failure", text)
    assert fact_found("Ultram (tramadol)", text)
    assert not fact_found("Ultram (codeine)", text)
    assert not fact_found("renal", normalised("adrenal"))
    assert lab_found({"name": "Triglycerides", "value": 134.6303398426167}, text)
    assert not lab_found({"name": "Triglycerides", "value": 134.7}, text)
    assert not lab_found({"name": "INR", "value": 1.1}, text)
    assert lab_found({"name": "Platelets", "value": 278000}, normalised("platelets were 278,000."))
    assert lab_found({"name": "Platelets", "value": 337.998}, normalised("Platelets | 338 | 10*3/uL"))


def _category(name: str) -> str:
    suffix = Path(name).suffix
    if suffix in (".json", ".xml"):
        return {".json": "FHIR", ".xml": "C-CDA"}[suffix]
    return "Synthea summary" if name.startswith("synthea_") else "MTSamples"


if __name__ == "__main__":
    totals: dict[str, list[int]] = {}
    for file_name in corpus_files(CORPUS):
        truth = json.loads((CORPUS / "truth" / f"{Path(file_name).stem}.json").read_text())["facts"]
        for category, missed in misses(CORPUS / file_name).items():
            total = len(truth[category])
            found = total - len(missed)
            share = f"{found}/{total}" + (f" ({100 * found / total:.0f}%)" if total else "")
            print(f"{file_name:44} {category:12} {share:13} {'; '.join(missed)}")
            counts = totals.setdefault(f"{_category(file_name)} {category}", [0, 0])
            counts[0] += found
            counts[1] += total
    print()
    for key, (found, total) in totals.items():
        print(f"{key:30} {found}/{total}" + (f" ({100 * found / total:.0f}%)" if total else ""))
