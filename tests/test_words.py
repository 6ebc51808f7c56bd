"""app.words: sentences, keys, negation and the abbreviations that make two phrasings of one fact read alike."""

import pytest

from app.words import answer_sentences, page_markers, read, without_markers
from documents.sentences import sentence_spans


def keys(text: str) -> list[str]:
    return [word.key for word in read(text)]


def denied(text: str, statement: bool = False) -> set[str]:
    return {word.key for word in read(text, statement) if word.negated}


def test_sentences_split_at_their_ends_only() -> None:
    answer = (
        "Dr. Smith saw her for allergies. Her INR was 1.92 on Aug. 30, 2007. She takes Allegra 25 mg. daily.\n"
        "* She has asthma.\n"
        "2. Her weight was 130 pounds."
    )
    assert [answer[start:end] for start, end in answer_sentences(answer)] == [
        "Dr. Smith saw her for allergies.",
        "Her INR was 1.92 on Aug. 30, 2007.",
        "She takes Allegra 25 mg. daily.",
        "She has asthma.",
        "Her weight was 130 pounds.",
    ]


def test_a_list_items_number_ends_no_sentence() -> None:
    text = "DISCHARGE DIAGNOSES: 1. Status post knee replacement. 2. Anxiety disorder. Creatinine was 0.8, BUN was 8. Done."
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "DISCHARGE DIAGNOSES: 1. Status post knee replacement.", "2. Anxiety disorder.",
        "Creatinine was 0.8, BUN was 8.", "Done.",
    ]


def test_a_sentence_wrapped_over_lines_is_one_sentence() -> None:
    text = "The DVT prophylaxis was maintained with Lovenox until the INR was\ngreater than 1.7. Then it stopped."
    assert [text[s:e] for s, e in sentence_spans(text)][0].endswith("greater than 1.7.")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Colace 100 mg b.i.d.", "Colace 100 milligrams twice daily"),
        ("Percocet p.r.n.", "Percocet as needed"),
        ("Synthroid 137 mcg q.d.", "Synthroid 137 micrograms once a day"),
        ("BP 127/72", "blood pressure 127/72"),
        ("HR 70, SpO2 95%", "pulse 70, oxygen saturation 95%"),
        ("Hgb 12.1 g/dL", "hemoglobin 12.1 g/dl"),
        ("on 08/21/2007", "on August 21, 2007"),
        ("on 2007-08-21", "on 21 Aug 2007"),
        ("s/p TKA", "status post total knee arthroplasty"),
        ("HTN and DM", "hypertension and diabetes mellitus"),
        ("Oxycodone q.12h.", "oxycodone every 12 hours"),
        ("BP118/66. HR83.", "BP 118/66. HR 83."),
    ],
)
def test_abbreviations_and_paraphrases_have_the_same_keys(one: str, other: str) -> None:
    assert keys(one) == keys(other)


def test_numbers_read_as_one_value_however_written() -> None:
    assert keys("platelets 278,000") == keys("platelets 278000")
    assert keys("INR 1.90") == keys("INR 1.9")
    assert "#80/55" in keys("Blood Pressure | 80 / 55mm[Hg]")
    assert "#2" in keys("two sprays")


def test_negation_reaches_forward_and_back_but_not_past_a_sentence_or_a_but() -> None:
    assert denied("She denies chest pain but has fever.") == set(keys("chest pain"))
    assert denied("Allergies: none. Medications: aspirin.") == set(keys("allergies"))
    assert denied("No calf tenderness bilaterally. Pedal pulses are palpable.") >= set(keys("calf tenderness"))
    assert not denied("No calf tenderness bilaterally. Pedal pulses are palpable.") & set(keys("pedal pulses"))
    assert denied("ALLERGIES: NKDA.") == set(keys("medication allergy"))


def test_an_empty_table_cell_or_a_result_word_denies_nothing() -> None:
    assert not denied("Atenolol 25 MG Oral Tablet | Active | Hypertension | -none-")
    assert not denied("A UA on 08/28/2007, which was negative.") & set(keys("UA"))


def test_a_statement_denies_its_own_subject() -> None:
    assert denied("Pneumonia is not among her diagnoses.", statement=True) >= set(keys("pneumonia"))
    assert denied("No, the patient's latex allergy is not documented.", statement=True) >= set(keys("latex allergy"))
    # A line of the record is read by NegEx alone: "not" denies what follows it.
    assert not denied("Pneumonia is not among her diagnoses.") & set(keys("pneumonia"))


def test_rare_words_say_more_than_common_ones() -> None:
    weights = {word.key: word.weight for word in read("She takes Nasonex for rhinitis daily")}
    assert weights[keys("Nasonex")[0]] > weights[keys("rhinitis")[0]] > weights[keys("takes daily")[-1]]
    assert keys("the patient takes it") == []


def test_page_markers_are_found_and_blanked_without_moving_the_rest() -> None:
    text = "Celebrex 200 mg daily [Document: a.pdf | page 2]. Also (page 3) and [p. 4]"
    markers = page_markers(text)
    assert [(m.document, m.page) for m in markers] == [("a.pdf", 2), (None, 3), (None, 4)]
    blanked = without_markers(text, markers)
    assert len(blanked) == len(text) and "page" not in blanked and blanked.startswith("Celebrex 200 mg daily ")
