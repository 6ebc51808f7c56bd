"""`clinidoc eval`: the scoring rules on known summaries, and the command end to end on a small corpus."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.evaluation import answer_is_correct, compare_facts, fact_matches, same_name
from app.summary import ChartSummary, PatientSummary, SummaryItem, SummarySection

CLINIDOC = Path(sys.executable).with_name("clinidoc")
RHINITIS = "mtsamples_allergic_rhinitis.txt"


def section(key: str, *items: tuple[str, int | None]) -> SummarySection:
    return SummarySection(
        key=key, title=key,
        items=[SummaryItem(text=text, origin="model", citations=[] if cited is None else [cited]) for text, cited in items],
    )


def test_facts_count_as_found_only_when_shown_as_facts_and_items_as_correct_only_when_true() -> None:
    part = PatientSummary(
        label="Eve Betterhalf",
        documents=["eve.xml"],
        identity=[],
        sections=[
            section(
                "medications",
                ("Atenolol 25 MG Oral Tablet; 1 every 12 hours; active", 1),
                ("Warfarin 5 mg", 2),  # shown as a fact, but not in the truth
                ("Proventil 0.09 MG/ACTUAT inhalant solution", None),  # not found in the record: not shown as fact
            ),
            section("labs", ("Hemoglobin: 13.2 g/dL; 2008-03-19", 3), ("Platelets: 150 10*9/L; 2008-03-19", 4)),
        ],
    )
    summary = ChartSummary(patients=[part], narrative=[], citations=[], warnings=[])
    truth = {
        "medications": ["Proventil 0.09 MG/ACTUAT inhalant solution (albuterol)", "Atenolol 25 MG Oral Tablet"],
        "allergies": [],
        "labs": [
            {"name": "Hemoglobin", "value": 13.2, "unit": "g/dL", "date": "2008-03-19"},
            {"name": "Platelets", "value": 123, "unit": "10*9/L", "date": "2008-03-19"},  # the value differs
        ],
    }

    counts = compare_facts(summary, truth)

    medications, labs, allergies = counts["medications"], counts["labs"], counts["allergies"]
    assert (medications.found, medications.truth, medications.correct, medications.shown) == (1, 2, 1, 2)
    assert (labs.found, labs.truth, labs.correct, labs.shown) == (1, 2, 1, 2)
    assert (allergies.recall, allergies.precision) == (None, None)
    assert "conditions" not in counts  # not in this truth


@pytest.mark.parametrize(
    ("truth", "shown", "same"),
    [
        ("Proventil 0.09 MG/ACTUAT inhalant solution (albuterol)", "Proventil 0.09 MG/ACTUAT inhalant solution", True),
        ("Eggs", "Egg", True),
        ("Hypertension", "Hypertension (active)", True),
        ("Atenolol 25 MG Oral Tablet", "Albuterol 25 MG Oral Tablet", False),
        ("Naproxen sodium 220 MG Oral Tablet", "Naproxen 500 MG", False),
    ],
)
def test_names_match_as_the_same_thing_written_differently(truth: str, shown: str, same: bool) -> None:
    assert same_name(truth, shown) is same


def test_an_answer_is_correct_when_it_contains_an_accepted_answer() -> None:
    assert answer_is_correct("Her INR was 1.92  when Lovenox stopped.", ["1.92"])
    assert answer_is_correct("Wheezing.", ["wheezing"])
    assert not answer_is_correct("The record does not say.", ["1.92"])


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_the_eval_command_scores_a_corpus_and_prints_one_json_object(tmp_path: Path, corpus: Path) -> None:
    small = tmp_path / "corpus"
    (small / "truth").mkdir(parents=True)
    shutil.copy(corpus / RHINITIS, small / RHINITIS)
    truth = json.loads((corpus / "truth" / "mtsamples_allergic_rhinitis.json").read_text())
    truth["qa"] = truth["qa"][:2]
    (small / "truth" / "mtsamples_allergic_rhinitis.json").write_text(json.dumps(truth))
    data_dir = tmp_path / "data"
    env = {
        **os.environ, "CLINIDOC_DATA_DIR": str(data_dir), "CLINIDOC_SUMMARY_TOKENS": "64",
        "CLINIDOC_MAX_NEW_TOKENS": "16",
    }

    done = subprocess.run(
        [str(CLINIDOC), "eval", str(small), "--json"], env=env, capture_output=True, text=True, timeout=600
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["model"].startswith("SmolLM2")
    assert report["citation_validity"] in (None, 1.0)  # every citation shown resolves to its span
    assert set(report["fact_recall"]) == {"medications", "allergies", "conditions", "labs", "vitals"}
    assert set(report["by_format"]) == {"txt"}
    assert 0 <= report["qa_accuracy"] <= 1 and report["qa_total"] == 2
    [row] = report["documents"]
    assert (row["document"], row["format"], row["qa_total"]) == (RHINITIS, "txt", 2)
    assert row["summary_s"] > 0 and row["problems"] == []
    # Scored sessions go to a scratch database, never into the user's.
    assert not (data_dir / "clinidoc.sqlite3").exists()


def test_the_eval_command_refuses_a_folder_without_truth(tmp_path: Path) -> None:
    done = subprocess.run([str(CLINIDOC), "eval", str(tmp_path)], capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    assert "has no truth/ folder" in done.stderr


@pytest.mark.parametrize(
    ("truth", "shown", "same"),
    [
        ("Diabetes", "diabetic", True),
        ("High cholesterol", "hypercholesterolemia", True),
        ("Diprosone cream 0.05% b.i.d.", "betamethasone; cream; b.i.d.", True),
        ("Morbid obesity (BMI 51)", "overweight", False),
        ("Celebrex", "Colace", False),
    ],
)
def test_items_match_a_truth_fact_naming_the_same_concept(truth: str, shown: str, same: bool) -> None:
    assert fact_matches(truth, shown) is same
