"""Results over time and a timeline: what a clinician would rather look at than read, taken from the facts the
readers found (documents/), each point tied to its source like any summary item.

A series is one test's dated numeric values; a blood pressure written "132/88" is one point with two values. A
timeline event is an encounter, a problem's onset (and resolution), a procedure or a medication's start (and stop).
Documents about different patients never share a series or a timeline: each patient group (app/safety) gets its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel

from app.citations import Citation, CitationNumbers
from app.safety import patient_groups
from app.summary import by_concept, span_located
from documents import Document, Fact, identify

# A value a series can plot: a number as written, or two ("132/88"). A comparator ("<0.5") or words are not.
_NUMBER = r"-?\d+(?:\.\d+)?"
_VALUE = re.compile(rf"\s*({_NUMBER})\s*(?:/\s*({_NUMBER}))?\s*")

Lane = Literal["Encounters", "Problems", "Procedures", "Medications"]
LANES: tuple[Lane, ...] = ("Encounters", "Problems", "Procedures", "Medications")
_LANE_OF: dict[str, Lane] = {
    "encounter": "Encounters", "condition": "Problems", "procedure": "Procedures", "medication": "Medications",
}
_STOPPED = ("stopped", "completed", "discontinued", "inactive", "resolved", "entered-in-error", "cancelled")


class Point(BaseModel):
    date: str  # ISO, as the source gives it: YYYY-MM-DD, YYYY-MM or YYYY
    value: float
    second: float | None = None  # the diastolic of a blood pressure
    written: str  # the value as the record writes it, with its unit
    citation: int


class Series(BaseModel):
    name: str
    unit: str | None
    points: list[Point]  # in date order, two or more
    reference_low: float | None = None
    reference_high: float | None = None
    patient: str | None = None  # the patient's documents, when the record holds more than one patient


class Event(BaseModel):
    lane: Lane
    name: str
    start: str  # ISO date
    end: str | None = None
    what: str  # "onset", "started", "performed", ...: what happened on `start`
    citation: int
    patient: str | None = None


class Trends(BaseModel):
    series: list[Series]
    events: list[Event]  # by patient, then in date order
    citations: list[Citation]  # numbered in order of first use, as the points and events cite them


def trends(documents: Sequence[Document]) -> Trends:
    numbers = CitationNumbers()
    groups = patient_groups([(document.name, identify(document)) for document in documents])
    series: list[Series] = []
    events: list[Event] = []
    for group in groups:
        patient = ", ".join(group) if len(groups) > 1 else None
        read = [(d, f) for d in documents if d.name in group for f in d.facts if f.listable and f.date]
        results = [(d, f) for d, f in read if f.category in ("lab", "vital")]
        series += _series(results, numbers, patient)
        # Each patient's timeline on its own, in date order.
        found = _events([(d, f) for d, f in read if f.category in _LANE_OF], numbers, patient)
        events += sorted(found, key=lambda event: (event.start, LANES.index(event.lane)))
    # Most recently measured first, as the summary lists results.
    series.sort(key=lambda one: one.points[-1].date, reverse=True)
    return Trends(series=series, events=events, citations=numbers.citations)


def _series(read: list[tuple[Document, Fact]], numbers: CitationNumbers, patient: str | None) -> list[Series]:
    found: list[Series] = []
    for group in by_concept(read):
        points: dict[tuple[str, float, float | None], Point] = {}
        for document, fact in group:
            parsed = _VALUE.fullmatch(fact.value or "")
            if parsed is None or fact.date is None:
                continue
            value, second = float(parsed[1]), float(parsed[2]) if parsed[2] else None
            # The same value of the same day, in two documents of the record, is one measurement.
            key = (fact.date, value, second)
            if key not in points:
                written = f"{fact.value} {fact.unit}".strip() if fact.unit else fact.value or ""
                citation = numbers.add(span_located(document, fact.span))
                points[key] = Point(date=fact.date, value=value, second=second, written=written, citation=citation)
        if len(points) < 2:
            continue
        _, latest = group[-1]
        ranged = [fact for _, fact in group if fact.reference_low is not None or fact.reference_high is not None]
        reference = ranged[-1] if ranged else None
        found.append(Series(
            name=latest.name, unit=latest.unit, points=sorted(points.values(), key=lambda point: point.date),
            reference_low=reference.reference_low if reference else None,
            reference_high=reference.reference_high if reference else None, patient=patient,
        ))
    return found


def _events(read: list[tuple[Document, Fact]], numbers: CitationNumbers, patient: str | None) -> list[Event]:
    events: dict[tuple[str, str, str], Event] = {}
    for document, fact in read:
        lane = _LANE_OF[fact.category]
        key = (lane, fact.name.casefold(), fact.date or "")
        if key in events or fact.date is None:
            continue
        citation = numbers.add(span_located(document, fact.span))
        events[key] = Event(
            lane=lane, name=fact.name, start=fact.date, end=fact.end_date, what=_what(fact), citation=citation,
            patient=patient,
        )
    return list(events.values())


def _what(fact: Fact) -> str:
    stopped = (fact.status or "").casefold() in _STOPPED
    if fact.category == "condition":
        return "onset, since resolved" if stopped or fact.end_date else "onset"
    if fact.category == "medication":
        return "started, since stopped" if stopped or fact.end_date else "started"
    if fact.category == "procedure":
        return "performed"
    return "visit"
