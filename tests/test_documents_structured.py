"""documents: FHIR R4 JSON and C-CDA XML, read into dated, sourced lines, and bad files refused in plain words."""

import base64
import json
import random
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import CCDA_FILES, FHIR_FILES

from documents import CcdaSource, Document, DocumentError, FhirSource, load

ASA = "synthea_fhir_asa_hermiston.json"
CCD = "ccda_ccd_eve_betterhalf.xml"
DISCHARGE = "ccda_discharge_summary_isabella_jones.xml"
V3 = 'xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
NOT_JSON = "the file is not valid JSON; it may be damaged or incomplete"
NOT_XML = "the file is not valid XML; it may be damaged or incomplete"
NOT_CCDA = "the XML file is not a C-CDA clinical document"


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def bundle(*resources: dict) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]})


def lines(document: Document) -> list[str]:
    return document.pages[0].text.splitlines()


def sourced_lines(document: Document) -> list[tuple[str, object]]:
    page = document.pages[0]
    return [(page.text[s.start : s.end], s.source) for s in page.sources]


def expect_error(path: Path, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        load(path)
    assert caught.value.reason == reason
    assert str(caught.value) == f"{path.name}: {reason}"


def normalised(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.parametrize("file_name", FHIR_FILES + CCDA_FILES)
def test_corpus_answers_are_in_the_text(corpus: Path, file_name: str) -> None:
    # One accepted answer to every question but yes/no ones is in the file;
    # it must still be there once the file is read as text.
    text = normalised(load(corpus / file_name).pages[0].text)
    qas = json.loads((corpus / "truth" / f"{Path(file_name).stem}.json").read_text())["qa"]
    unanswered = [
        qa["q"]
        for qa in qas
        if qa["answers"] not in (["yes"], ["no"]) and not any(normalised(a) in text for a in qa["answers"])
    ]
    assert unanswered == []


# --- FHIR ----------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", FHIR_FILES)
def test_every_fhir_resource_is_a_line_or_accounted_for(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    assert (document.kind, len(document.pages)) == ("fhir", 1)
    resources = [entry["resource"] for entry in json.loads((corpus / file_name).read_text())["entry"]]
    written = {(s.source.resource_type, s.source.id) for s in document.pages[0].sources}
    skipped = Counter({s.what: s.count for s in document.coverage.skipped})
    for resource in resources:
        key = (resource["resourceType"], resource["id"])
        assert key in written or skipped[resource["resourceType"]] > 0, key
    assert sum(skipped.values()) + len(written) == len(resources)
    assert {s.what for s in document.coverage.skipped} >= {"Claim", "ExplanationOfBenefit"}


@pytest.mark.parametrize("file_name", FHIR_FILES)
def test_fhir_lines_are_dated_and_in_date_order_under_headings(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    titles = [section.title for section in document.sections]
    assert titles[:4] == [
        "Patient",
        "Allergies and intolerances (by date recorded)",
        "Conditions (by date of onset)",
        "Medications (by date prescribed)",
    ]
    text = document.pages[0].text
    for section in document.sections[1:]:
        [span] = section.spans
        body = text[span.start : span.end].splitlines()[1:]
        dates = [line[:10] for line in body if line[:4].isdigit()]
        assert dates == sorted(dates), section.title
        leading = [m.date for m in section.dates if m.span.start == 0 or text[m.span.start - 1] == "\n"]
        assert leading == dates
    for line, source in sourced_lines(document):
        assert isinstance(source, FhirSource) and source.id and "\n" not in line


def test_fhir_lines_read_as_a_chart(corpus: Path) -> None:
    text = lines(load(corpus / ASA))
    assert "Mr. Asa Hermiston; male; born 1971-03-03; marital status: married; language: English; " in text[1]
    assert "2016-05-23 Viral sinusitis (disorder) (resolved); resolved 2016-06-06" in text
    assert "2017-02-19 Naproxen sodium 220 MG Oral Tablet (active); for Osteoarthritis of hip" in text
    assert "2018-06-06 Triglycerides: 134.63 mg/dL" in text  # stored as 134.6303398426167
    assert "1971-05-29 Allergy to nut (food; criticality low; active)" in text
    assert (
        "2012-09-19 Blood Pressure: Diastolic Blood Pressure 85.12 mm[Hg]; Systolic Blood Pressure 122.16 mm[Hg]"
        in text
    )
    assert (
        "2012-09-19 Encounter for check up (procedure) (ambulatory); at NORTH SHORE MEDICAL CENTER -;"
        " with Dr. Sharyl Hilpert" in text
    )


def test_fhir_line_source_names_its_resource(corpus: Path) -> None:
    document = load(corpus / ASA)
    resources = {e["resource"]["id"]: e["resource"] for e in json.loads((corpus / ASA).read_text())["entry"]}
    for line, source in sourced_lines(document):
        resource = resources[source.id]
        assert resource["resourceType"] == source.resource_type
        if source.resource_type == "Condition":
            assert resource["code"]["text"] in line


def test_single_fhir_resource_without_a_bundle(tmp_path: Path) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"display": "Type 2 diabetes mellitus"}]},
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": "provisional"}]},
        "onsetDateTime": "2019-04-02T08:00:00Z",
    }
    document = load(write(tmp_path / "condition.json", json.dumps(condition)))
    assert lines(document) == [
        "Conditions (by date of onset)",
        "2019-04-02 Type 2 diabetes mellitus (active; provisional)",
    ]
    assert document.pages[0].sources[0].source == FhirSource(resource_type="Condition", id="c1")


def test_fhir_numbers_keep_their_written_precision_unless_simulated(tmp_path: Path) -> None:
    def observation(id_: str, value: str) -> str:
        return (
            f'{{"resourceType": "Observation", "id": "{id_}", "code": {{"text": "Test {id_}"}}, '
            f'"valueQuantity": {{"value": {value}, "unit": "mg/dL"}}}}'
        )

    values = {"a": "13.20", "b": "1.0234", "c": "168.66964866418232", "d": "0.0383678177999", "e": "7300"}
    text = '{"resourceType": "Bundle", "entry": [' + ", ".join(
        f'{{"resource": {observation(id_, value)}}}' for id_, value in values.items()
    ) + "]}"
    written = lines(load(write(tmp_path / "labs.json", text)))[1:]
    assert written == [
        "Test a: 13.20 mg/dL",
        "Test b: 1.0234 mg/dL",
        "Test c: 168.67 mg/dL",
        "Test d: 0.0384 mg/dL",
        "Test e: 7300 mg/dL",
    ]


def test_fhir_references_name_reasons_places_and_people(tmp_path: Path) -> None:
    text = bundle(
        {"resourceType": "Organization", "id": "o1", "name": "Hope Clinic"},
        {"resourceType": "Practitioner", "id": "p1", "name": [{"given": ["Ann"], "family": "Lee", "prefix": ["Dr."]}]},
        {"resourceType": "Condition", "id": "c1", "code": {"text": "Gout"}},
        {
            "resourceType": "Encounter",
            "id": "e1",
            "class": {"code": "EMER"},
            "type": [{"text": "Emergency visit"}],
            "period": {"start": "2020-01-02T10:00:00Z", "end": "2020-01-03T09:00:00Z"},
            "reasonReference": [{"reference": "Condition/c1"}],
            "serviceProvider": {"reference": "Organization/o1"},
            "participant": [{"individual": {"reference": "Practitioner/p1"}}],
        },
        {
            "resourceType": "MedicationStatement",
            "id": "m1",
            "status": "active",
            "medicationReference": {"reference": "#med"},
            "contained": [{"resourceType": "Medication", "id": "med", "code": {"text": "Colchicine 0.6 MG"}}],
            "dosage": [{"text": "one tablet twice daily"}],
            "effectivePeriod": {"start": "2020-01-03"},
        },
    )
    written = lines(load(write(tmp_path / "visit.json", text)))
    assert (
        "2020-01-02 Emergency visit (emergency); until 2020-01-03; for Gout; at Hope Clinic; with Dr. Ann Lee"
        in written
    )
    assert "2020-01-03 Colchicine 0.6 MG (active); one tablet twice daily" in written


def test_other_fhir_resources_are_summarised_and_billing_is_counted(tmp_path: Path) -> None:
    text = bundle(
        {"resourceType": "Condition", "id": "c1", "code": {"text": "Asthma"}},
        {
            "resourceType": "CarePlan",
            "id": "cp1",
            "status": "active",
            "period": {"start": "2015-03-01"},
            "category": [{"coding": [{"display": "Asthma self management"}]}],
            "activity": [{"detail": {"code": {"text": "Inhaled steroid therapy"}}}],
        },
        {"resourceType": "Claim", "id": "x1", "total": {"value": 125}},
        {"resourceType": "Claim", "id": "x2", "total": {"value": 90}},
    )
    document = load(write(tmp_path / "plan.json", text))
    assert "Care plan records (by date)" in lines(document)
    assert "2015-03-01 Asthma self management; Inhaled steroid therapy (active)" in lines(document)
    assert [(s.what, s.count, s.reason) for s in document.coverage.skipped] == [
        ("Claim", 2, "billing record, not clinical")
    ]


def test_fhir_text_attachments_are_read_and_others_counted(tmp_path: Path) -> None:
    note = "Discharge note\n\nPatient  improved.\nFollow up in 2 weeks."
    encoded_note = base64.b64encode(note.encode()).decode()
    text = bundle(
        {
            "resourceType": "DocumentReference",
            "id": "d1",
            "date": "2021-05-06T12:00:00Z",
            "type": {"text": "Discharge summary"},
            "content": [
                {"attachment": {"contentType": "text/plain; charset=utf-8", "data": encoded_note}},
                {"attachment": {"contentType": "application/pdf", "data": base64.b64encode(b"%PDF-1.4").decode()}},
            ],
        },
        {
            "resourceType": "DocumentReference",
            "id": "d2",
            "type": {"text": "Scan"},
            "content": [{"attachment": {"contentType": "text/plain", "data": "not base64!"}}],
        },
    )
    document = load(write(tmp_path / "notes.json", text))
    page = document.pages[0]
    assert "2021-05-06 Discharge note\nPatient improved.\nFollow up in 2 weeks." in page.text
    note_span = next(s for s in page.sources if "\n" in page.text[s.start : s.end])
    assert note_span.source == FhirSource(resource_type="DocumentReference", id="d1", narrative=True)
    assert {(s.what, s.reason) for s in document.coverage.skipped} == {
        ("DocumentReference attachment (application/pdf)", "only text attachments are read"),
        ("DocumentReference", "malformed resource"),
    }


def test_fhir_is_recognised_by_content_not_name(corpus: Path, tmp_path: Path) -> None:
    disguised = shutil.copy(corpus / ASA, tmp_path / "export.txt")
    assert load(disguised).kind == "fhir"
    plain = load(write(tmp_path / "note.txt", '{"note": "not FHIR"}\nJust a note.'))
    assert plain.kind == "txt"


# --- C-CDA ---------------------------------------------------------------------------


@pytest.mark.parametrize("file_name", CCDA_FILES)
def test_ccda_sections_become_headings_with_their_narrative(corpus: Path, file_name: str) -> None:
    document = load(corpus / file_name)
    assert (document.kind, len(document.pages)) == ("ccda", 1)
    header, *sections = document.sections
    assert header.kind == "demographics" and header.spans[0].start == 0
    assert all(section.code for section in sections)
    text = document.pages[0].text
    for section in sections:
        [span] = section.spans
        assert text[span.start : span.end].startswith(section.title + "\n")
    for line, source in sourced_lines(document):
        assert isinstance(source, CcdaSource) and "\n" not in line
        if source.section is not None:
            section = next(s for s in sections if s.title == source.section)
            assert section.spans[0].start < text.index(line, section.spans[0].start) < section.spans[0].end


@pytest.mark.parametrize("file_name", CCDA_FILES)
def test_ccda_header_gives_the_patient_and_the_date(corpus: Path, file_name: str) -> None:
    truth = json.loads((corpus / "truth" / f"{Path(file_name).stem}.json").read_text())["facts"]["patient"]
    document = load(corpus / file_name)
    patient = next(line for line in lines(document) if line.startswith("Patient: "))
    assert truth["name"] in patient and f"born {truth['birth_date']}" in patient
    assert truth["gender"] in patient
    header = document.sections[0]
    assert [mention.label for mention in header.dates][:2] == ["note", "birth"]


def test_ccda_tables_become_rows_linked_to_their_entries(corpus: Path) -> None:
    written = sourced_lines(load(corpus / DISCHARGE))
    rows = {line: source for line, source in written}
    assert "Substance | Reaction | Severity | Status" in rows
    eggs = rows["Eggs | Hives | Moderate | Active"]
    assert (eggs.section, eggs.code, eggs.entry, eggs.entry_id) == (
        "ALLERGIES, ADVERSE REACTIONS, ALERTS",
        "48765-2",
        3,
        "0fffb34f-c1e0-47c2-92af-c414a3ff21ec",
    )
    assert rows["Substance | Reaction | Severity | Status"].entry is None


def test_ccda_coded_names_missing_from_the_narrative_follow_it(corpus: Path) -> None:
    written = sourced_lines(load(corpus / CCD))
    coded = [(line, source) for line, source in written if line.startswith("Coded entry: ")]
    albuterol = next(source for line, source in coded if "albuterol 0.09 MG/ACTUAT [Proventil]" in line)
    assert (albuterol.section, albuterol.entry, albuterol.entry_id) == (
        "MEDICATIONS",
        1,
        "cdbd33f0-6cde-11db-9fe1-0800200c9a66",
    )
    # Atenolol is named alike in both, so it is not repeated.
    assert not any("Atenolol" in line for line, _ in coded)


def ccda(body: str, header: str = "") -> str:
    return (
        f'<?xml version="1.0"?><ClinicalDocument {V3}><title>Clinic Note</title>'
        f'<effectiveTime value="20200102"/>{header}<component>{body}</component></ClinicalDocument>'
    )


def test_ccda_nested_and_empty_sections(tmp_path: Path) -> None:
    body = (
        "<structuredBody>"
        '<component><section><code code="29545-1"/><title>Exam</title><text><paragraph>Alert.</paragraph></text>'
        "<component><section><title>Skin</title>"
        "<text><list><item>Warm</item><item>Dry <br/>no rash</item></list></text>"
        "</section></component></section></component>"
        '<component><section><code code="48765-2"/><title>Allergies</title><text/>'
        '<entry><act><id root="1.2" extension="7"/><participant><participantRole><playingEntity>'
        '<code displayName="Latex"/></playingEntity></participantRole></participant></act></entry>'
        "</section></component>"
        '<component><section nullFlavor="NI"><title>Plan</title></section></component>'
        "</structuredBody>"
    )
    document = load(write(tmp_path / "note.xml", ccda(body)))
    assert lines(document) == [
        "Clinic Note", "Date: 2020-01-02", "", "Exam", "Alert.", "", "Skin", "Warm", "Dry", "no rash",
        "", "Allergies", "Coded entry: Latex",
    ]
    assert [(s.title, s.kind) for s in document.sections] == [
        ("Clinic Note", "demographics"),
        ("Exam", "physical_exam"),
        ("Skin", None),
        ("Allergies", "allergies"),
    ]
    assert document.pages[0].sources[-1].source == CcdaSource(
        section="Allergies", code="48765-2", entry=1, entry_id="1.2:7"
    )
    assert [(s.what, s.reason) for s in document.coverage.skipped] == [
        ("section Allergies", "its narrative is empty; only the names in its coded entries are read"),
        ("section Plan", "empty section"),
    ]


def test_ccda_plain_text_body(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"Seen today.\nStable.").decode()
    body = f'<nonXMLBody><text mediaType="text/plain" representation="B64">{encoded}</text></nonXMLBody>'
    assert lines(load(write(tmp_path / "note.xml", ccda(body)))) == [
        "Clinic Note", "Date: 2020-01-02", "", "Document text", "Seen today.", "Stable."
    ]


def test_ccda_with_only_an_attached_pdf(tmp_path: Path) -> None:
    body = '<nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0=</text></nonXMLBody>'
    expect_error(
        write(tmp_path / "scan.xml", ccda(body)),
        "the C-CDA document holds only an attached file (application/pdf), which cannot be read here",
    )


def test_ccda_is_recognised_by_content_not_name(corpus: Path, tmp_path: Path) -> None:
    assert load(shutil.copy(corpus / CCD, tmp_path / "summary.txt")).kind == "ccda"
    assert load(write(tmp_path / "page.txt", "<p>Seen today.</p>")).kind == "txt"


# --- Files that cannot be read -------------------------------------------------------


def test_invalid_json(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "record.json", '{"patient": "Jane",'), NOT_JSON)


def test_truncated_fhir(corpus: Path, tmp_path: Path) -> None:
    data = (corpus / ASA).read_bytes()
    expect_error(write(tmp_path / "cut.json", data[: len(data) // 2]), "the FHIR record is damaged or incomplete")


@pytest.mark.parametrize("content", ['{"name": "Jane"}', "[1, 2]", '{"resourceType": 7}'])
def test_json_that_is_not_fhir(tmp_path: Path, content: str) -> None:
    expect_error(write(tmp_path / "data.json", content), "the JSON file is not a FHIR health record")


def test_fhir_with_nothing_clinical(tmp_path: Path) -> None:
    expect_error(
        write(tmp_path / "claims.json", bundle({"resourceType": "Claim", "id": "x"})),
        "the FHIR record holds no clinical information",
    )


UNSAFE = "the XML file declares its own entities or document type, which is refused for safety"


def test_xml_with_an_external_entity(tmp_path: Path) -> None:
    secret = write(tmp_path / "secret.txt", "TOP SECRET")
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        f"<ClinicalDocument {V3}><title>&xxe;</title></ClinicalDocument>"
    )
    expect_error(write(tmp_path / "note.xml", xml), UNSAFE)


def test_xml_billion_laughs(tmp_path: Path) -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    )
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [{entities}]>'
        f"<ClinicalDocument {V3}><title>&lol9;</title></ClinicalDocument>"
    )
    expect_error(write(tmp_path / "lol.xml", xml), UNSAFE)


def test_truncated_ccda(corpus: Path, tmp_path: Path) -> None:
    data = (corpus / CCD).read_bytes()
    expect_error(write(tmp_path / "cut.xml", data[: len(data) // 3]), "the C-CDA document is damaged or incomplete")


def test_xml_that_is_not_ccda(tmp_path: Path) -> None:
    expect_error(write(tmp_path / "order.xml", "<order><item>gauze</item></order>"), NOT_CCDA)
    expect_error(write(tmp_path / "cut.xml", "<order><item>gauze</item>"), NOT_XML)


def test_ccda_without_text(tmp_path: Path) -> None:
    bare = f'<?xml version="1.0"?><ClinicalDocument {V3}><component><structuredBody/></component></ClinicalDocument>'
    expect_error(write(tmp_path / "empty.xml", bare), "the C-CDA document contains no text")


@pytest.mark.parametrize("file_name", [ASA, CCD])
def test_damaged_structured_files_never_escape_as_raw_errors(corpus: Path, tmp_path: Path, file_name: str) -> None:
    original = (corpus / file_name).read_bytes()
    rng = random.Random(file_name)
    for attempt in range(15):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice(b'{}[]<>"&:,;0aZ\x00\xff')
        path = write(tmp_path / f"{attempt}{Path(file_name).suffix}", bytes(data))
        try:
            load(path)
        except DocumentError:
            continue  # the one allowed way to refuse; any other exception fails the test
