"""app.loop_guard: an answer that repeats itself is stopped where the repetition began, and nothing else is."""

from app.loop_guard import LoopGuard


def stream(text: str, piece: int = 4) -> tuple[int | None, str]:
    guard = LoopGuard()
    for start in range(0, len(text), piece):
        if (repeated := guard.add(text[start : start + piece])) is not None:
            return repeated, guard.text[:repeated]
    return None, guard.text


def test_a_repeated_sentence_stops_the_answer_before_it() -> None:
    looping = (
        "They are taking a combination of Zyrtec and Allegra. They are taking a combination of Zyrtec and Zyrtec. "
        "They are taking a combination of Zyrtec and Zyrtec. They are taking"
    )
    at, kept = stream(looping)
    assert at is not None
    assert kept.strip() == (
        "They are taking a combination of Zyrtec and Allegra. They are taking a combination of Zyrtec and Zyrtec."
    )


def test_a_long_repeated_run_without_a_full_stop_stops_the_answer() -> None:
    run = "the patient is taking celebrex and colace and protonix and synthroid and "
    at, kept = stream(run * 4)
    assert at is not None and kept.count("synthroid") == 1


def test_a_list_that_repeats_its_pattern_is_not_a_loop() -> None:
    answer = "\n".join(
        f"- {drug} {dose} mg by mouth twice daily for one month."
        for drug, dose in [("Celebrex", 200), ("Colace", 100), ("Protonix", 40), ("Synthroid", 137), ("Ativan", 1)]
    )
    assert stream(answer) == (None, answer)
    assert stream("Yes. Yes. Yes.") == (None, "Yes. Yes. Yes.")
