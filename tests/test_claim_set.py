"""The claim test set of `bench/claims.py`: what the builder writes from the truth files, and how `score` counts.

The checker's own figures are not asserted here: `score` is fed hand-made checks (anything with `.label` and
`.citations`), and `main` runs with a stand-in checker.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

import documents
from bench.claims import Claim, ClaimSet, build, build_claim_set, main, score
from documents.dates import find_dates

MARKER = re.compile(r"\[Document: (?P<document>[^|\]]+?) \| page (?P<page>\d+)\]")
KINDS = {
    "true", "true+marker", "true:list", "false:number", "false:dose", "false:date", "false:negation",
    "false:other-patient", "false:list",
}
# Words too common in records to tell one patient's fact from another's; the rest of a fact's name must be absent.
COMMON = {
    "allergy", "allergic", "oral", "tablet", "capsule", "injection", "injectable", "solution", "disorder", "finding",
    "situation", "procedure", "chronic", "acute", "history", "blood", "count", "automated", "volume", "mass",
    "entitic", "serum", "plasma", "left", "right", "lower", "upper", "disease", "pain", "test", "tests", "testing",
    "study", "level", "total", "rate", "documentation", "current", "medications", "extended", "release", "topical",
    "cream", "metered", "dose", "inhaler", "with", "without", "body", "type", "status", "post", "stage", "from",
    "hour", "hours", "daily", "severe", "mild", "moderate", "old", "the", "and", "for", "not",
}  # fmt: skip


@pytest.fixture(scope="module")
def built(corpus: Path) -> ClaimSet:
    return build(corpus)


@pytest.fixture(scope="module")
def texts(corpus: Path, built: ClaimSet) -> dict[str, list[str]]:
    """Each document's page texts, by name."""
    names = {claim.document for claim in built.claims}
    return {name: [page.text for page in documents.load(corpus / name).pages] for name in names}


def _without_marker(text: str) -> str:
    return re.sub(r"\s*" + MARKER.pattern, "", text)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def _numbers(text: str) -> set[str]:
    """The numbers a sentence states, dates left out, "278,000" as "278000", "127/72" whole."""
    for found in reversed(find_dates(text)):
        text = text[: found.start] + " " + text[found.end :]
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return set(re.findall(r"\d+(?:\.\d+)?(?:/\d+(?:\.\d+)?)?", text))


# --- The set as a whole ---------------------------------------------------------------------------------------


def test_the_set_has_over_a_thousand_claims_of_every_kind_about_half_true(built: ClaimSet) -> None:
    claims = built.claims
    assert len(claims) >= 1_000
    assert {claim.kind for claim in claims} == KINDS
    true = sum(claim.expected == "supported" for claim in claims)
    assert 0.4 <= true / len(claims) <= 0.6, f"{true} of {len(claims)} claims are true"
    for claim in claims:
        assert (claim.expected == "supported") == claim.kind.startswith("true"), claim
        assert claim.expected in ("supported", "contradicted", "not_found")
        assert claim.text.strip() == claim.text and claim.text
    # Each claim once per document: the same sentence twice would count twice.
    keys = [(c.document, c.text.lower()) for c in claims]
    assert len(keys) == len(set(keys))


def test_every_truth_document_contributes_true_and_false_claims(corpus: Path, built: ClaimSet) -> None:
    truth_docs = {json.loads(path.read_text())["doc"] for path in (corpus / "truth").glob("*.json")}
    assert len(truth_docs) == 16
    for name in truth_docs:
        kinds = {claim.kind for claim in built.claims if claim.document == name}
        assert {"true", "true+marker"} <= kinds, name
        assert any(kind.startswith("false") for kind in kinds), name


def test_every_true_fact_is_phrased_three_ways_and_each_phrasing_also_with_a_marker(built: ClaimSet) -> None:
    phrasings: dict[tuple[str, str], set[str]] = defaultdict(set)
    for claim in built.claims:
        if claim.kind == "true":
            phrasings[(claim.document, claim.fact)].add(claim.text)
    assert len(phrasings) >= 300
    few = {fact: texts for fact, texts in phrasings.items() if len(texts) < 3}
    assert not few
    # A marked claim is one of its fact's phrasings with the marker put at its end.
    for claim in built.claims:
        if claim.kind == "true+marker":
            plain = _without_marker(claim.text)
            texts = phrasings[(claim.document, claim.fact)]
            assert plain in texts or plain + "." in texts, claim.text


def test_phrasings_vary_in_wording_and_in_how_they_write_dates_and_frequencies(built: ClaimSet) -> None:
    true = [claim.text for claim in built.claims if claim.kind == "true"]
    joined = "\n".join(true)
    for written in ("The patient takes", "is among", "Medications include", "NKDA.", "no known drug allergies",
                    "BP ", "blood pressure was", "twice", "b.i.d."):  # fmt: skip
        assert written in joined, written
    # Dates in ISO, US and written forms.
    assert re.search(r"\b\d{4}-\d\d-\d\d\b", joined)
    assert re.search(r"\b\d\d/\d\d/\d{4}\b", joined)
    assert re.search(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December) "
                     r"\d{1,2}, \d{4}\b", joined)  # fmt: skip
    # Not one template per category in a fixed order: a category's first phrasings differ between facts.
    first: dict[str, set[str]] = defaultdict(set)
    seen: set[tuple[str, str]] = set()
    for claim in built.claims:
        if claim.kind == "true" and (claim.document, claim.fact) not in seen:
            seen.add((claim.document, claim.fact))
            first[claim.category].add(re.sub(r"\d", "#", claim.text.split()[0]))
    assert len(first["condition"]) >= 3 and len(first["medication"]) >= 3


def test_truth_annotations_and_raw_floats_do_not_reach_the_claims(built: ClaimSet) -> None:
    for claim in built.claims:
        text = _without_marker(claim.text)
        if claim.expected == "supported":
            assert "(" not in text and "[" not in text, claim.text
        for annotation in ("then 10 mg", "no DVT", "distant history", "(finding)", "(disorder)", "BMI 51)"):
            assert annotation not in text, claim.text
        # FHIR's 134.6303398426167 is written as the record shows it, 134.63.
        assert not re.search(r"\d\.\d{4,}", text), claim.text


def test_the_builder_is_the_same_on_every_run(corpus: Path, built: ClaimSet) -> None:
    assert build_claim_set(corpus, quiet=True) == built.claims


# --- Markers --------------------------------------------------------------------------------------------------


def test_markers_cite_the_document_and_the_page_the_fact_is_on(built: ClaimSet, texts: dict[str, list[str]]) -> None:
    marked = [claim for claim in built.claims if claim.kind == "true+marker"]
    assert len(marked) >= 500
    checked = 0
    for claim in marked:
        markers = list(MARKER.finditer(claim.text))
        assert len(markers) == 1, claim.text
        marker = markers[0]
        # Appended before the final full stop or after it, as the answer prompt's markers are.
        assert claim.text[marker.end() :] in ("", "."), claim.text
        assert marker.group("document") == claim.document
        page = int(marker.group("page"))
        assert page == claim.page
        pages = texts[claim.document]
        text = pages[page - 1]
        # What the claim states is on that page: its numbers (dates left out) and a word of what it is about.
        on_page = {float(part) for number in _numbers(text) for part in number.split("/")}
        for number in _numbers(_without_marker(claim.text)):
            assert all(float(part) in on_page for part in number.split("/")), (claim.text, number)
        named = claim.category in ("medication", "allergy", "condition", "procedure", "plan")
        if named and "none:" not in claim.fact:
            # Labs and vitals go by abbreviations ("BP118/66"): their numbers above pin them to the page; "NKDA"
            # names no allergen.
            words = [w for w in _words(claim.subject) if len(w) >= 4] or list(_words(claim.subject))
            squashed = re.sub(r"[^a-z]", "", text.lower())
            assert any(w in squashed or w.rstrip("s") in squashed for w in words), (claim.text, page)
        checked += len(pages) > 1
    assert checked >= 50  # the multi-page documents, where the page is a choice


@pytest.mark.parametrize(
    ("document", "subject", "page"),
    [
        ("mtsamples_tka_discharge_summary.pdf", "Celebrex 200 mg", 2),
        ("mtsamples_tka_discharge_summary.pdf", "127/72", 1),
        ("mtsamples_tka_discharge_summary.pdf", "INR", 2),
        ("mtsamples_tka_discharge_summary.pdf", "degenerative joint disease", 1),
        ("synthea_summary_stevie_cormier.pdf", "triglycerides", 2),
        ("synthea_summary_stevie_cormier.pdf", "allergy to nut", 1),
        ("synthea_summary_stevie_cormier.pdf", "prostatectomy", 2),
    ],
)
def test_a_marker_names_the_page_a_reader_finds_the_fact_on(built: ClaimSet, document: str, subject: str,
                                                            page: int) -> None:  # fmt: skip
    marked = [c for c in built.claims if c.document == document and c.kind == "true+marker"
              and subject.lower() in _without_marker(c.text).lower()]  # fmt: skip
    assert marked, subject
    assert {c.page for c in marked} == {page}
    assert all(f"| page {page}]" in c.text for c in marked)


# --- False claims ---------------------------------------------------------------------------------------------


def test_other_patients_facts_name_nothing_the_document_says(corpus: Path, built: ClaimSet,
                                                             texts: dict[str, list[str]]) -> None:  # fmt: skip
    truths = {}
    for path in (corpus / "truth").glob("*.json"):
        data = json.loads(path.read_text())
        truths[data["doc"]] = data["facts"]
    others = [claim for claim in built.claims if claim.kind == "false:other-patient"]
    assert len(others) >= 200
    assert {c.category for c in others} >= {"medication", "allergy", "condition", "lab", "procedure"}
    for claim in others:
        text = "\n".join(texts[claim.document]).lower()
        squashed = re.sub(r"[^a-z]", "", text)
        words = [w for w in _words(claim.subject) if len(w) >= 3 and w not in COMMON]
        assert words, claim
        # Not even inside a longer word ("fish" in "shellfish"), but for short words ("nut" in "minutes").
        present = [w for w in words if (w in squashed if len(w) >= 4 else re.search(rf"\b{w}(?:e?s)?\b", text))]
        assert not present, (claim.document, claim.text, present)
        facts = truths[claim.document]
        none_known = not facts["allergies"] and re.search(r"no known|nkda", str(facts.get("allergy_status", "")), re.I)
        expected = "contradicted" if claim.category == "allergy" and none_known else "not_found"
        assert claim.expected == expected, claim
        # Never a fact of the document's own truth file, found in its text or not.
        subject = _words(claim.subject) - COMMON
        for listed in re.findall(r'"([^"]+)"', json.dumps(facts)):
            assert not subject <= _words(listed), (claim, listed)


def test_an_allergy_claimed_against_no_known_drug_allergies_is_contradicted(built: ClaimSet) -> None:
    tka = [c for c in built.claims if c.document == "mtsamples_tka_discharge_summary.pdf" and c.category == "allergy"]
    claimed = [c for c in tka if c.kind == "false:other-patient"]
    assert claimed and all(c.expected == "contradicted" for c in claimed)
    # The consult's allergies are "not documented": another patient's allergy is not found there, not contradicted.
    consult = [c for c in built.claims if c.document == "mtsamples_gastric_bypass_consult.docx"
               and c.category == "allergy" and c.kind == "false:other-patient"]  # fmt: skip
    assert consult and all(c.expected == "not_found" for c in consult)


def test_changed_numbers_doses_and_dates_really_differ_from_the_truth(built: ClaimSet,
                                                                      texts: dict[str, list[str]]) -> None:  # fmt: skip
    changed = [c for c in built.claims if c.kind in ("false:number", "false:dose", "false:date")]
    assert {c.kind for c in changed} == {"false:number", "false:dose", "false:date"}
    for claim in changed:
        assert claim.expected == "contradicted"
        assert claim.original and claim.changed and claim.original != claim.changed, claim
        text = _without_marker(claim.text)
        if claim.kind == "false:number":
            numbers = _numbers(text)
            assert claim.changed in numbers and claim.original not in numbers, (claim.text, numbers)
            # Clearly changed: a tenth of the value or more.
            for before, after in zip(claim.original.split("/"), claim.changed.split("/")):
                if before != after:
                    assert abs(float(after) - float(before)) >= 0.1 * float(before), claim
        elif claim.kind == "false:dose":
            assert claim.changed.lower() in text.lower(), claim
            assert not re.search(rf"(?<![\d.]){re.escape(claim.original.lower())}", text.lower()), claim
        else:
            dates = {found.date for found in find_dates(text)}
            if len(claim.changed) == 4:  # a year alone
                dates |= set(re.findall(r"\b\d{4}\b", text))
            assert claim.changed in dates and claim.original not in dates, (claim.text, dates)
            # Another date, not one the record gives anything.
            assert claim.changed not in {f.date for f in find_dates("\n".join(texts[claim.document]))}, claim


def test_denials_deny_facts_the_document_states(built: ClaimSet) -> None:
    denials = [c for c in built.claims if c.kind == "false:negation"]
    assert len(denials) >= 200
    assert all(c.expected == "contradicted" for c in denials)
    stated = {(c.document, c.fact) for c in built.claims if c.kind == "true"}
    assert all((c.document, c.fact) in stated for c in denials)
    texts = {c.text for c in denials}
    assert any(t.startswith("There is no history of") for t in texts)
    assert any(re.search(r"is not taking", t) for t in texts)
    # "Not taking" only where the record says the drug is taken now: Celebrex was replaced by Voltaren.
    back_pain = [c.text for c in denials if c.document == "mtsamples_ed_back_pain.txt"]
    assert not any("not taking Celebrex" in t for t in back_pain)


@pytest.mark.parametrize(
    ("document", "drug"),
    [
        ("mtsamples_allergic_rhinitis.txt", "Zyrtec"),  # tried in the past, to be tried again: not taken now
        ("mtsamples_allergic_rhinitis.txt", "Claritin"),
        ("mtsamples_ed_back_pain.txt", "Celebrex"),  # replaced by Voltaren
        ("synthea_fhir_asa_hermiston.json", "Amoxicillin"),  # stopped
        ("synthea_summary_dusty_stracke.docx", "atomoxetine"),
    ],
)
def test_medications_no_longer_taken_are_not_said_to_be_taken_nor_denied_as_such(built: ClaimSet, document: str,
                                                                                  drug: str) -> None:  # fmt: skip
    about = [c for c in built.claims if c.document == document and drug.lower() in c.text.lower()
             and c.kind != "false:other-patient"]  # fmt: skip
    assert any(c.expected == "supported" for c in about)
    present = re.compile(r"\b(?:takes|is on|is currently taking|is not taking|Current medications|list (?:does not )?"
                         r"includes?)\b")  # fmt: skip
    assert not [c.text for c in about if present.search(c.text)]


def test_facts_the_document_does_not_show_are_left_out_and_said_so(built: ClaimSet) -> None:
    dropped = {(d.document, d.fact): d.reason for d in built.dropped}
    # "MRI Brian Scan" in the note, "MRI brain" in the truth; "5'9"" with no word for height.
    assert ("mtsamples_moyamoya.txt", "procedure: MRI brain @ 1992-02-11") in dropped
    consult = "mtsamples_gastric_bypass_consult.docx"
    assert any(doc == consult and fact.startswith("vital: Height") for doc, fact in dropped)
    left_out = {(d.document, d.fact) for d in built.dropped if not d.kept}
    assert not any((claim.document, claim.fact) in left_out for claim in built.claims)


# --- Another corpus -------------------------------------------------------------------------------------------


def _small_corpus(folder: Path) -> Path:
    (folder / "truth").mkdir(parents=True)
    (folder / "note_a.txt").write_text(
        "HISTORY: The patient is a 60-year-old woman with hypertension and gout.\n"
        "MEDICATIONS: Lisinopril 10 mg daily, metformin 500 mg b.i.d.\n"
        "ALLERGIES: NKDA.\n"
        "VITALS: BP 142/90, pulse 88.\n"
        "LABS: Hemoglobin 11.41 g/dL on 03/02/2020. Creatinine was 1.3.\n"
        "PROCEDURES: Cholecystectomy in 2015.\n"
    )
    (folder / "note_b.txt").write_text(
        "He has asthma and eczema. He uses albuterol 90 mcg as needed. He is allergic to sulfa (hives).\n"
        "Potassium 4.1 on 2021-05-06. Appendectomy on 2010-06-01.\n"
    )
    truth_a = {
        "doc": "note_a.txt",
        "facts": {
            "medications": ["Lisinopril 10 mg daily", "Metformin 500 mg b.i.d. (with meals)"],
            "allergies": [],
            "allergy_status": "NKDA",
            "conditions": ["Hypertension", "Gout", "Atrial fibrillation"],
            "labs": [{"name": "Hemoglobin [Mass/volume] in Blood", "value": 11.41234567, "unit": "g/dL",
                      "date": "2020-03-02"}, {"name": "Creatinine", "value": 1.3, "unit": None, "date": None}],
            "vitals": [{"name": "Blood pressure", "value": "142/90", "unit": "mmHg", "date": None},
                       {"name": "Pulse", "value": 88, "unit": "/min", "date": None}],
            "procedures": [{"name": "Cholecystectomy", "date": "2015"}],
        },
    }  # fmt: skip
    truth_b = {
        "doc": "note_b.txt",
        "facts": {
            "medications": ["Albuterol 90 mcg p.r.n."],
            "allergies": ["Sulfa"],
            "allergy_reactions": {"Sulfa": "hives"},
            "conditions": ["Asthma", "Eczema"],
            "labs": [{"name": "Potassium", "value": 4.1, "unit": None, "date": "2021-05-06"}],
            "procedures": [{"name": "Appendectomy", "date": "2010-06-01"}],
        },
    }
    (folder / "truth" / "note_a.json").write_text(json.dumps(truth_a))
    (folder / "truth" / "note_b.json").write_text(json.dumps(truth_b))
    return folder


def test_the_builder_works_on_another_corpus_in_the_same_format(tmp_path: Path) -> None:
    corpus = _small_corpus(tmp_path)
    built = build(corpus)
    a = [c for c in built.claims if c.document == "note_a.txt"]
    b = [c for c in built.claims if c.document == "note_b.txt"]
    assert a and b
    # Atrial fibrillation is in the truth, not the note: left out, said why.
    assert [(d.document, d.fact) for d in built.dropped] == [("note_a.txt", "condition: Atrial fibrillation")]
    assert not any("fibrillation" in c.text.lower() for c in built.claims if c.expected == "supported")
    texts = "\n".join(c.text for c in a if c.expected == "supported")
    assert "11.41" in texts and "11.41234567" not in texts and "with meals" not in texts
    assert re.search(r"[Mm]etformin 500 mg (?:b\.i\.d\.|twice daily|twice a day|BID)", texts)
    assert "NKDA." in texts or "no known drug allergies" in texts
    assert "She" in texts or "Her" in texts  # the note says "woman": she
    # Note A says NKDA: note B's sulfa allergy claimed there is contradicted, asthma is not found.
    others = {c.subject.lower(): c.expected for c in a if c.kind == "false:other-patient"}
    assert others.get("sulfa") == "contradicted"
    assert others.get("asthma", "not_found") == "not_found"
    assert all(c.page == 1 for c in built.claims if c.kind == "true+marker")
    assert build(corpus) == built


# --- Scoring --------------------------------------------------------------------------------------------------


def _claim(kind: str, expected: str, category: str = "lab", page: int | None = 1) -> Claim:
    return Claim(document="note.pdf", text=f"{kind} {expected}", expected=expected, kind=kind,  # type: ignore[arg-type]
                 category=category, fact="lab: x", subject="x", page=page, marker=kind == "true+marker")  # fmt: skip


def _check(label: str, page: int | None = None, quote: str = "") -> SimpleNamespace:
    citations = [SimpleNamespace(document="note.pdf", page=page, start=0, end=len(quote), quote=quote)] if page else []
    return SimpleNamespace(label=label, citations=citations, note=None)


def test_score_counts_each_rate_from_labels_and_citations() -> None:
    claims = [
        _claim("true", "supported"),
        _claim("true", "supported"),
        _claim("true+marker", "supported", page=2),
        _claim("false:number", "contradicted"),
        _claim("false:number", "contradicted"),
        _claim("false:other-patient", "not_found", category="medication", page=None),
        _claim("false:other-patient", "contradicted", category="allergy", page=None),
    ]
    checks = [
        _check("supported", page=1, quote="Hemoglobin 12.1"),  # right, cites the fact's page
        _check("not_found"),  # missed
        _check("supported", page=1, quote="elsewhere"),  # right label, wrong page
        _check("contradicted", page=1, quote="Hemoglobin 12.1"),  # right
        _check("supported", page=1, quote="Hemoglobin 12.1"),  # fooled
        _check("contradicted"),  # not supported, but the wrong kind of false
        _check("not_found"),  # not supported, wrong kind of false
    ]
    report = score(claims, checks, failures=10, seconds=1.5)
    overall = report.overall
    assert overall.claims == 7
    assert (overall.supported_true.hits, overall.supported_true.of) == (1, 2)
    assert (overall.supported_true_marker.hits, overall.supported_true_marker.of) == (1, 1)
    assert (overall.false_not_supported.hits, overall.false_not_supported.of) == (3, 4)
    assert (overall.contradicted_found.hits, overall.contradicted_found.of) == (1, 3)
    assert (overall.false_label_right.hits, overall.false_label_right.of) == (1, 4)
    assert (overall.rejected_label_right.hits, overall.rejected_label_right.of) == (1, 3)
    assert (overall.cites_fact_page.hits, overall.cites_fact_page.of) == (1, 2)
    assert overall.supported_true.rate == 0.5 and report.seconds == 1.5
    kinds = {row.group: row for row in report.by_kind}
    assert list(kinds) == ["true", "true+marker", "false:number", "false:other-patient"]
    assert kinds["false:number"].false_not_supported.rate == 0.5
    assert kinds["true"].false_not_supported.rate is None
    categories = {row.group: row for row in report.by_category}
    assert categories["allergy"].contradicted_found.of == 1 and categories["allergy"].contradicted_found.hits == 0
    assert {row.group for row in report.by_marker} == {"with a marker", "without a marker"}
    assert report.confusion["contradicted"] == {"supported": 1, "contradicted": 1, "not_found": 1}
    assert report.confusion["supported"]["not_found"] == 1
    # The four wrong labels, taken in turn from each kind, each with what it cited.
    assert len(report.failures) == 4
    assert [f.kind for f in report.failures][:3] == ["true", "false:number", "false:other-patient"]
    fooled = next(f for f in report.failures if f.kind == "false:number")
    assert (fooled.given, fooled.quote, fooled.cited) == ("supported", "Hemoglobin 12.1", "note.pdf page 1")
    assert score(claims, checks, failures=2).failures == report.failures[:2]
    json.dumps(report.model_dump())  # the --json output


def test_score_wants_one_check_per_claim() -> None:
    with pytest.raises(ValueError):
        score([_claim("true", "supported")], [])


def test_main_checks_each_document_once_and_prints_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    corpus = _small_corpus(tmp_path)
    calls: list[tuple[int, list[str]]] = []

    def check_claims(claims: list[str], docs: list[documents.Document]) -> list[SimpleNamespace]:
        calls.append((len(claims), [d.name for d in docs]))
        # A checker that believes everything with a marker and nothing else.
        return [_check("supported" if "[Document:" in c else "not_found") for c in claims]

    monkeypatch.setitem(sys.modules, "app.claims", SimpleNamespace(check_claims=check_claims))
    monkeypatch.setattr(sys, "argv", ["bench.claims", "--corpus", str(corpus), "--json", "--failures", "3"])
    main()
    output = json.loads(capsys.readouterr().out)
    assert sorted(names[0] for _, names in calls) == ["note_a.txt", "note_b.txt"]
    assert all(len(names) == 1 for _, names in calls)
    overall = output["report"]["overall"]
    assert overall["claims"] == sum(n for n, _ in calls)
    assert overall["supported_true"]["rate"] == 0.0 and overall["supported_true_marker"]["rate"] == 1.0
    assert len(output["report"]["failures"]) == 3 and output["report"]["seconds"] >= 0
    assert output["dropped"][0]["fact"] == "condition: Atrial fibrillation"

    monkeypatch.setattr(sys, "argv", ["bench.claims", "--corpus", str(corpus)])
    main()
    markdown = capsys.readouterr().out
    assert "| true+marker |" in markdown and "### Failures" in markdown and "Atrial fibrillation" in markdown


def test_a_false_list_holds_one_item_the_record_never_mentions(built: ClaimSet, corpus: Path) -> None:
    lists = [claim for claim in built.claims if claim.kind == "false:list"]
    assert lists and all(claim.expected == "not_found" for claim in lists)
    true_lists = {claim.document: claim for claim in built.claims if claim.kind == "true:list"}
    assert true_lists and all(claim.expected == "supported" for claim in true_lists.values())
