"""documents: mutated corpus files either load or are refused with a DocumentError, never anything else, in time."""

import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from documents import Document, DocumentError, load

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
FILES = [
    "mtsamples_tka_discharge_summary.pdf",
    "synthea_summary_stevie_cormier.pdf",
    "synthea_summary_dusty_stracke.docx",
    "mtsamples_gastric_bypass_consult.docx",
    "ccda_ccd_eve_betterhalf.xml",
    "synthea_fhir_marcos_delagarza.json",
    "mtsamples_ed_back_pain.txt",
]
SECONDS_PER_FILE = 20


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A corpus file with bytes or text written over it, a run of it deleted or repeated, or its end cut off."""
    name = draw(st.sampled_from(FILES))
    data = bytearray((CORPUS / name).read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["bytes", "text", "delete", "repeat", "truncate"]))
        length = draw(st.integers(1, 256))
        if kind == "bytes":
            data[at : at + length] = draw(st.binary(min_size=length, max_size=length))
        elif kind == "text":
            # Text keeps a text format text, so its parser, not the binary check, meets the damage.
            data[at : at + length] = draw(st.text(min_size=1, max_size=length)).encode()
        elif kind == "delete":
            del data[at : at + length]
        elif kind == "repeat":
            data[at:at] = data[at : at + length] * draw(st.integers(1, 64))
        else:
            del data[max(at, 1) :]
        if len(data) < 2:
            break
    return name, bytes(data)


@pytest.mark.slow
@settings(
    max_examples=1_000,
    deadline=timedelta(seconds=SECONDS_PER_FILE),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)
@given(mutated())
def test_mutated_files_load_or_are_refused(case: tuple[str, bytes]) -> None:
    name, data = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        started = time.perf_counter()
        try:
            assert isinstance(load(path), Document)
            event(f"{Path(name).suffix} read")
        except DocumentError as err:
            assert err.reason and "\n" not in err.reason
            event(f"{Path(name).suffix} refused: {err.reason}")
        assert time.perf_counter() - started < SECONDS_PER_FILE
