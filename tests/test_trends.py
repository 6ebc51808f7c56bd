"""Results over time and the timeline: values of one test in date order with their reference range, encounters,
problems, procedures and medications on one axis, each point cited, patients kept apart, and drawn as SVG whose
points are links a keyboard reaches."""

import json
import re
from pathlib import Path

from documents import Document, load

from app.plots import series_svg, timeline_svg
from app.trends import trends
from app.ui.trends_panel import trends_html

SODIUM = {"coding": [{"system": "http://loinc.org", "code": "2951-2", "display": "Sodium"}], "text": "Sodium"}
LABORATORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                           "code": "laboratory"}]}]
VITALS = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                       "code": "vital-signs"}]}]


def patient(family: str, birth: str) -> dict:
    return {"resourceType": "Patient", "id": family, "name": [{"family": family, "given": ["Ann"]}],
            "birthDate": birth, "gender": "female"}


def sodium(day: str, value: float, low: float | None = 135, high: float | None = 145) -> dict:
    reference = {}
    if low is not None:
        reference["low"] = {"value": low, "unit": "mmol/L"}
    if high is not None:
        reference["high"] = {"value": high, "unit": "mmol/L"}
    return {"resourceType": "Observation", "status": "final", "category": LABORATORY, "code": SODIUM,
            "effectiveDateTime": day, "valueQuantity": {"value": value, "unit": "mmol/L"},
            "referenceRange": [reference] if reference else []}


def blood_pressure(day: str, systolic: int, diastolic: int) -> dict:
    def part(code: str, value: int) -> dict:
        return {"code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "valueQuantity": {"value": value, "unit": "mm[Hg]"}}

    return {"resourceType": "Observation", "status": "final", "category": VITALS,
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}], "text": "Blood pressure"},
            "effectiveDateTime": day, "component": [part("8480-6", systolic), part("8462-4", diastolic)]}


def record(tmp_path: Path, name: str, *resources: dict) -> Document:
    path = tmp_path / name
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                "entry": [{"resource": resource} for resource in resources]}))
    return load(path)


def history(tmp_path: Path) -> Document:
    return record(
        tmp_path, "chart.json", patient("Rivera", "1950-02-03"),
        sodium("2020-01-05", 131), sodium("2021-03-07", 138), sodium("2021-03-07", 138), sodium("2022-09-01", 141),
        blood_pressure("2021-03-07", 150, 95), blood_pressure("2022-09-01", 132, 84),
        {"resourceType": "Encounter", "status": "finished", "type": [{"text": "Admission for pneumonia"}],
         "period": {"start": "2021-03-07", "end": "2021-03-12"}},
        {"resourceType": "Condition", "code": {"text": "Pneumonia"}, "onsetDateTime": "2021-03-07",
         "abatementDateTime": "2021-04-01",
         "clinicalStatus": {"coding": [{"code": "resolved"}]}},
        {"resourceType": "Procedure", "status": "completed", "code": {"text": "Chest X-ray"},
         "performedDateTime": "2021-03-07"},
        {"resourceType": "MedicationRequest", "status": "stopped", "authoredOn": "2021-03-07",
         "medicationCodeableConcept": {"text": "Amoxicillin 500 MG Oral Capsule"}},
    )


def test_a_test_over_time_is_its_dated_values_with_reference_range_and_sources(tmp_path: Path) -> None:
    document = history(tmp_path)
    found = trends([document])
    sodium_series = next(series for series in found.series if series.name == "Sodium")
    # The same value of the same day, written twice, is one measurement.
    assert [(point.date, point.value) for point in sodium_series.points] == [
        ("2020-01-05", 131.0), ("2021-03-07", 138.0), ("2022-09-01", 141.0)
    ]
    assert (sodium_series.reference_low, sodium_series.reference_high) == (135.0, 145.0)
    assert sodium_series.unit == "mmol/L"
    cited = {citation.number: citation for citation in found.citations}
    for point in sodium_series.points:
        quote = cited[point.citation].quote
        assert point.date in quote and f"{point.value:g}" in quote


def test_a_blood_pressure_is_one_point_with_two_values(tmp_path: Path) -> None:
    found = trends([history(tmp_path)])
    pressure = next(series for series in found.series if "pressure" in series.name.casefold())
    assert [(point.value, point.second) for point in pressure.points] == [(150.0, 95.0), (132.0, 84.0)]


def test_the_timeline_holds_stays_problems_procedures_and_medications_in_date_order(tmp_path: Path) -> None:
    found = trends([history(tmp_path)])
    seen = {(event.lane, event.name): event for event in found.events}
    assert seen["Encounters", "Admission for pneumonia"].end == "2021-03-12"
    assert seen["Problems", "Pneumonia"].end == "2021-04-01"
    assert seen["Problems", "Pneumonia"].what == "onset, since resolved"
    assert seen["Procedures", "Chest X-ray"].start == "2021-03-07"
    assert seen["Medications", "Amoxicillin 500 MG Oral Capsule"].what == "started, since stopped"
    assert [event.start for event in found.events] == sorted(event.start for event in found.events)


def test_two_patients_never_share_a_series(tmp_path: Path) -> None:
    first = record(tmp_path, "first.json", patient("Rivera", "1950-02-03"), sodium("2020-01-05", 131),
                   sodium("2021-01-05", 133))
    second = record(tmp_path, "second.json", patient("Okafor", "1988-07-09"), sodium("2020-06-05", 144),
                    sodium("2021-06-05", 146))
    found = trends([first, second])
    assert sorted((series.patient, len(series.points)) for series in found.series) == [
        ("first.json", 2), ("second.json", 2)
    ]


def test_a_single_value_and_words_are_not_plotted(tmp_path: Path) -> None:
    once = record(tmp_path, "once.json", patient("Rivera", "1950-02-03"), sodium("2020-01-05", 131))
    assert trends([once]).series == []


def test_ccda_results_carry_their_reference_range_and_problems_their_resolution(
    corpus_documents: dict[str, Document]
) -> None:
    ccd = corpus_documents["ccda_ccd_eve_betterhalf.xml"]
    ranged = [fact for fact in ccd.facts if fact.reference_low is not None and fact.reference_high is not None]
    assert ranged and all(fact.reference_low < fact.reference_high for fact in ranged)
    assert any(fact.end_date for fact in ccd.facts if fact.category in ("condition", "medication", "encounter"))


def test_each_point_of_a_drawing_is_a_named_link_to_its_source(tmp_path: Path) -> None:
    found = trends([history(tmp_path)])
    sodium_series = next(series for series in found.series if series.name == "Sodium")
    svg = series_svg(sodium_series)
    links = re.findall(r'<a class="cite-link" href="#source-(\d+)"[^>]*aria-label="([^"]+)"', svg)
    assert [int(number) for number, _ in links] == [point.citation for point in sodium_series.points]
    assert all(label.startswith("Sodium: ") for _, label in links)
    assert "2022-09-01" in links[-1][1]
    timeline = timeline_svg(found.events)
    assert len(re.findall(r'<a class="cite-link"', timeline)) == len(found.events)
    for drawing in (svg, timeline):
        # Inline in the page: no stylesheet reaching the page, no fixed size, no address outside it.
        assert "<style" not in drawing and 'id="figure_1"' not in drawing
        assert not re.search(r'(?:href|src)="(?!#)', drawing)
        assert drawing.startswith("<svg")


def test_the_panel_lists_the_timeline_and_every_cited_source(tmp_path: Path) -> None:
    document = history(tmp_path)
    found = trends([document])
    pages = {(document.name, page.number): page.text for page in document.pages}
    html = trends_html(found, pages)
    assert html.count("<figure>") == len(found.series)
    assert f"The timeline as a list ({len(found.events)})" in html
    assert f"Sources ({len(found.citations)})" in html
    for citation in found.citations:
        assert f'<li value="{citation.number}">' in html


def test_each_patient_has_one_timeline_in_date_order(tmp_path: Path) -> None:
    visit = {"resourceType": "Encounter", "status": "finished", "type": [{"text": "Check-up"}]}
    first = record(tmp_path, "first.json", patient("Rivera", "1950-02-03"),
                   {**visit, "period": {"start": "2019-01-01"}}, {**visit, "period": {"start": "2021-01-01"}})
    second = record(tmp_path, "second.json", patient("Okafor", "1988-07-09"),
                    {**visit, "period": {"start": "2020-01-01"}})
    found = trends([first, second])
    assert [(event.patient, event.start) for event in found.events] == [
        ("first.json", "2019-01-01"), ("first.json", "2021-01-01"), ("second.json", "2020-01-01")
    ]
    pages = {(document.name, page.number): page.text for document in (first, second) for page in document.pages}
    assert trends_html(found, pages).count('<section class="timeline">') == 2
