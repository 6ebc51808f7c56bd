"""RemoteEngine against real HTTP servers. The default suite runs the test's own (tests/model_server.py): the part of
vLLM's OpenAI-compatible API Clinidoc uses, served in a thread by the real SmolLM2 engine, so what comes back over the
wire is a real model's answer, and faults are made to order. The slow tests run llama-cpp-python's own server on the
bundled SmolLM2 GGUF, as a serving engine an operator would start."""

from __future__ import annotations

import json
import re
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from app.assistant import Answer, AnswerDelta, Assistant, EvidenceFound, Notice, read_upload
from app.cli import main
from app.settings import Settings
from app.waiting import Waiting
from bench.remote import LlamaServer
from bench.remote_parity import answer, first_gap, questions
from engine import (
    ChatMessage,
    EngineError,
    Event,
    GenerationParams,
    LocalEngine,
    PromptTooLong,
    RemoteEngine,
    Stats,
    TextDelta,
    default_model_path,
)
from engine.remote import short_name
from storage import list_messages, open_database
from conftest import CLINICIAN
from model_server import MODEL, ModelServer

MESSAGES = [
    ChatMessage(role="system", content="You are a concise clinical assistant."),
    ChatMessage(role="user", content="Name three common symptoms of allergic rhinitis."),
]


@pytest.fixture
def serve(local_engine: LocalEngine) -> Iterator[Callable[..., ModelServer]]:
    """Starts a ModelServer on a free port; each is shut down when its test ends."""
    servers: list[ModelServer] = []

    def start(**options: object) -> ModelServer:
        server = ModelServer(local_engine, **options)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(serve: Callable[..., ModelServer]) -> ModelServer:
    return serve()


def collect(events: Iterator[Event]) -> tuple[str, Stats]:
    *deltas, stats = events
    assert all(isinstance(delta, TextDelta) for delta in deltas) and isinstance(stats, Stats)
    return "".join(delta.text for delta in deltas), stats


def test_the_server_answers_as_the_engine_it_serves_with_its_token_counts(
    local_engine: LocalEngine, server: ModelServer
) -> None:
    params = GenerationParams(max_new_tokens=24)
    engine = RemoteEngine(server.url)

    text, stats = collect(engine.generate(MESSAGES, params))

    expected, local = collect(local_engine.generate(MESSAGES, params))
    assert text == expected and text
    assert (stats.prompt_tokens, stats.generated_tokens) == (local.prompt_tokens, local.generated_tokens)
    assert stats.finish_reason == local.finish_reason
    assert stats.ttft_s > 0
    [request] = server.requests
    assert request["model"] == MODEL and request["max_tokens"] == 24 and request["temperature"] == 0.0
    assert request["stream"] and request["stream_options"] == {"include_usage": True}
    # Every sampling setting pinned, in each server's name for it, so no server default changes the answer.
    assert (request["top_k"], request["min_p"], request["repetition_penalty"], request["repeat_penalty"]) == (-1, 0, 1, 1)
    assert request["frequency_penalty"] == request["presence_penalty"] == 0


def test_it_describes_the_served_model(local_engine: LocalEngine, server: ModelServer) -> None:
    engine = RemoteEngine(server.url)

    assert engine.info.model_name == MODEL
    assert [short_name(name) for name in ("/srv/models/SmolLM2-135M-Instruct.Q4_1.gguf", "MedAIBase/AntAngelMed")] == [
        "SmolLM2-135M-Instruct.Q4_1", "MedAIBase/AntAngelMed"
    ]
    assert engine.info.device == server.url.removeprefix("http://").removesuffix("/v1")
    assert engine.context_window == engine.info.context_window == local_engine.context_window
    assert RemoteEngine(server.url, context_window=4096).context_window == 4096


def test_a_llama_server_reports_its_window_in_props_counts_text_and_names_the_file_that_counts_chats(
    local_engine: LocalEngine, serve: Callable[..., ModelServer]
) -> None:
    server = serve(max_model_len=2048, props=True)
    engine = RemoteEngine(server.url)

    assert engine.context_window == 2048 and engine.info.model_name == "SmolLM2-135M-Instruct.Q4_1"
    text = "Loratadine 10 mg daily."
    assert engine.count_tokens(text) == len(local_engine.tokenizer.encode(text))  # by the server's /tokenize
    assert engine.count_prompt_tokens(MESSAGES) == local_engine.count_prompt_tokens(MESSAGES)  # by its GGUF file


def test_tokens_are_counted_by_the_servers_tokenizer(local_engine: LocalEngine, server: ModelServer) -> None:
    engine = RemoteEngine(server.url)
    text = "Loratadine 10 mg daily; Flonase 2 sprays each nostril (50 µg/spray)."

    assert engine.count_tokens(text) == local_engine.count_tokens(text)
    assert engine.count_prompt_tokens(MESSAGES) == local_engine.count_prompt_tokens(MESSAGES)


def test_a_server_without_tokenize_is_counted_with_a_local_copy_of_its_tokenizer(
    local_engine: LocalEngine, serve: Callable[..., ModelServer], tmp_path: Path
) -> None:
    server = serve(tokenize=False)
    local_engine.tokenizer.hf.save_pretrained(tmp_path / "tokenizer")

    engine = RemoteEngine(server.url, tokenizer=tmp_path / "tokenizer")

    text = "Loratadine 10 mg daily."
    assert engine.count_tokens(text) == local_engine.count_tokens(text)
    assert engine.count_prompt_tokens(MESSAGES) == local_engine.count_prompt_tokens(MESSAGES)


def test_an_ollama_server_states_its_window_as_num_ctx_and_its_model_file_gives_the_tokenizer(
    local_engine: LocalEngine, serve: Callable[..., ModelServer], tmp_path: Path
) -> None:
    blob = tmp_path / "sha256-5f2c"  # Ollama names its GGUF blobs by their hash, without a suffix
    blob.symlink_to(default_model_path())
    engine = RemoteEngine(serve(ollama=blob, tokenize=False, max_model_len=4096).url)

    assert engine.context_window == 4096  # its num_ctx, not the 8192 the model was trained with
    assert engine.count_prompt_tokens(MESSAGES) == local_engine.count_prompt_tokens(MESSAGES)
    text = "Loratadine 10 mg daily."
    assert engine.count_tokens(text) == len(local_engine.tokenizer.encode(text))


def test_a_server_without_tokenize_and_no_local_tokenizer_is_refused_at_once(serve: Callable[..., ModelServer]) -> None:
    with pytest.raises(EngineError, match="CLINIDOC_REMOTE_TOKENIZER"):
        RemoteEngine(serve(tokenize=False).url)


def test_json_schema_answers_are_constrained_on_the_server(server: ModelServer) -> None:
    schema = {
        "type": "object",
        "properties": {"symptoms": {"type": "array", "items": {"type": "string"}, "maxItems": 3}},
        "required": ["symptoms"],
        "additionalProperties": False,
    }
    engine = RemoteEngine(server.url)

    text, _ = collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=64, json_schema=schema)))

    answer = json.loads(text)
    assert list(answer) == ["symptoms"] and all(isinstance(item, str) for item in answer["symptoms"])
    # A one-token request found once how this server takes a schema (vLLM's way), then the answer used it.
    probe, request = server.requests
    assert probe["max_tokens"] == 1 and request["response_format"]["json_schema"]["schema"] == schema


def test_a_prompt_too_long_for_the_served_window_is_refused_before_sending(serve: Callable[..., ModelServer]) -> None:
    server = serve(max_model_len=64)
    engine = RemoteEngine(server.url)
    long = [ChatMessage(role="user", content="The patient reports sneezing. " * 20)]

    with pytest.raises(PromptTooLong) as refused:
        next(engine.generate(long, GenerationParams(max_new_tokens=16)))

    assert refused.value.context_window == 64
    assert server.requests == []


def test_a_prompt_the_server_finds_too_long_is_refused_in_its_words(serve: Callable[..., ModelServer]) -> None:
    # The app's own count lets the prompt through, as it would with a tokenizer unlike the server's.
    engine = RemoteEngine(serve(max_model_len=64).url, context_window=8192)

    with pytest.raises(PromptTooLong, match="maximum context length is 64 tokens") as refused:
        next(engine.generate(MESSAGES, GenerationParams(max_new_tokens=48)))

    assert refused.value.context_window == 64  # the window the server states, not the one set here


def test_token_ids_are_refused_with_a_reason(server: ModelServer) -> None:
    with pytest.raises(EngineError, match="not token ids"):
        next(RemoteEngine(server.url).generate([1, 2, 3], GenerationParams()))


def test_a_server_that_is_down_is_named_in_the_error() -> None:
    with socket.socket() as probe:  # a port that was just free, and now has nobody listening
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"

    reason = f"The model server at {url} could not be reached: Connection refused"
    with pytest.raises(EngineError, match=re.escape(reason)):
        RemoteEngine(url)


def test_a_server_that_accepts_but_never_answers_times_out_with_a_reason() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts connections; nobody reads them
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"

        with pytest.raises(EngineError, match=re.escape(f"The model server at {url} gave no answer within 0.5 s")):
            RemoteEngine(url, timeout_s=0.5)


def test_a_server_error_is_reported_with_the_servers_reason(serve: Callable[..., ModelServer]) -> None:
    engine = RemoteEngine(serve(fault="error").url)

    with pytest.raises(EngineError, match="answered HTTP 500: CUDA out of memory"):
        collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=8)))


def test_a_stream_cut_mid_answer_is_an_error_not_a_short_answer(serve: Callable[..., ModelServer]) -> None:
    engine = RemoteEngine(serve(fault="cut").url)
    events = engine.generate(MESSAGES, GenerationParams(max_new_tokens=24))

    assert isinstance(next(events), TextDelta)
    with pytest.raises(EngineError, match="broke off the answer"):
        next(events)


def test_a_stream_closed_before_its_first_chunk_says_where_to_look(serve: Callable[..., ModelServer]) -> None:
    engine = RemoteEngine(serve(fault="silent").url)

    with pytest.raises(EngineError, match="closed the answer before it began.*check CLINIDOC_CONTEXT"):
        next(engine.generate(MESSAGES, GenerationParams(max_new_tokens=8)))


def test_the_assistant_answers_through_the_server_and_stores_the_answer(
    server: ModelServer, corpus: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, max_new_tokens=24)
    assistant = Assistant(RemoteEngine(server.url), open_database(tmp_path / "db.sqlite3"), settings)
    path = corpus / "mtsamples_allergic_rhinitis.txt"

    view = assistant.start_session(CLINICIAN, read_upload([(path, path.name)], 1 << 26))
    assert view is not None and view.record.fits and view.record.tokens > 0
    evidence, *deltas, answer = assistant.ask(CLINICIAN, view.session.id, "What medications is she taking?")

    assert isinstance(evidence, EvidenceFound) and evidence.turn.evidence is not None
    deltas = [delta for delta in deltas if not isinstance(delta, Waiting)]  # a slow machine's reading is said
    assert deltas and all(isinstance(delta, AnswerDelta) for delta in deltas)
    assert isinstance(answer, Answer) and answer.turn.model == MODEL
    question, stored = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (question.role, stored.role, stored.text) == ("user", "assistant", answer.turn.text)
    assert stored.stats is not None and 1 <= stored.stats["generated_tokens"] <= 24


def test_a_server_that_breaks_off_mid_answer_gives_the_clinician_a_notice_and_stores_no_answer(
    serve: Callable[..., ModelServer], corpus: Path, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, max_new_tokens=24)
    server_url = serve(fault="cut").url
    assistant = Assistant(RemoteEngine(server_url), open_database(tmp_path / "db.sqlite3"), settings)
    path = corpus / "mtsamples_allergic_rhinitis.txt"
    view = assistant.start_session(CLINICIAN, read_upload([(path, path.name)], 1 << 26))
    assert view is not None

    *_, last = assistant.ask(CLINICIAN, view.session.id, "What medications is she taking?")

    assert isinstance(last, Notice) and "The model server stopped in the middle of its work" in last.text
    assert server_url not in last.text  # the operator's detail is in the log
    [question] = list_messages(assistant.db, CLINICIAN.name, view.session.id)
    assert (question.role, question.state, question.grounding) == ("user", "failed", {"reason": last.text})


def test_a_slow_server_is_waited_for_out_loud_and_one_gone_is_said_plainly(
    serve: Callable[..., ModelServer], corpus: Path, tmp_path: Path
) -> None:
    hold = threading.Event()
    server = serve(hold=hold)
    settings = Settings(data_dir=tmp_path, max_new_tokens=16, waiting_notice_s=0.05)
    assistant = Assistant(RemoteEngine(server.url), open_database(tmp_path / "db.sqlite3"), settings)
    path = corpus / "mtsamples_allergic_rhinitis.txt"
    view = assistant.start_session(CLINICIAN, read_upload([(path, path.name)], 1 << 26))
    assert view is not None

    events = []
    for event in assistant.ask(CLINICIAN, view.session.id, "What medications is she taking?"):
        events.append(event)
        if isinstance(event, Waiting):
            hold.set()  # the server answers only once the clinician has been told it is waited for
    kinds = [type(event).__name__ for event in events]
    assert kinds.index("Waiting") < kinds.index("AnswerDelta") and kinds[-1] == "Answer"
    assert events[kinds.index("Waiting")].text.startswith("waiting for the model server, ")

    server.shutdown()
    server.server_close()
    *_, last = assistant.ask(CLINICIAN, view.session.id, "Does she have allergies?")
    assert isinstance(last, Notice) and last.text.startswith("Clinidoc could not reach its model server")


def test_clinidoc_ask_answers_through_the_server_when_the_backend_is_remote(
    server: ModelServer, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CLINIDOC_BACKEND", "remote")
    monkeypatch.setenv("CLINIDOC_REMOTE_URL", server.url)
    monkeypatch.setenv("CLINIDOC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLINIDOC_MAX_NEW_TOKENS", "16")

    assert main(["ask", str(corpus / "mtsamples_allergic_rhinitis.txt"), "What is the assessment?"]) == 0

    assert MODEL in capsys.readouterr().err
    assert len(server.requests) == 1


def test_clinidoc_with_the_remote_backend_and_no_url_says_what_to_set(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLINIDOC_BACKEND", "remote")
    monkeypatch.delenv("CLINIDOC_REMOTE_URL", raising=False)
    monkeypatch.setenv("CLINIDOC_DATA_DIR", str(tmp_path))

    assert main(["ask", str(corpus / "mtsamples_allergic_rhinitis.txt"), "What is the assessment?"]) == 1

    assert "set CLINIDOC_REMOTE_URL" in capsys.readouterr().err


# llama-cpp-python's own server on the bundled GGUF. It reports no context window and counts the tokens of text, not
# of chats (/extras/tokenize/count), so the engine is given the window, as an operator sets CLINIDOC_CONTEXT, and
# counts chats with the GGUF file the server names. Its answers are greedy, so each request has one answer to compare with.
N_CTX = 2048
# An answer of hundreds of tokens, to leave while it is being written.
ESSAY = [ChatMessage(role="user", content="Write a detailed essay on the history of vaccination.")]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    pytest.importorskip("llama_cpp.server")
    with LlamaServer(default_model_path(), N_CTX, tmp_path_factory.mktemp("llama") / "server.log") as server:
        yield server


def llama_engine(server: LlamaServer, context_window: int = N_CTX, timeout_s: float = 300) -> RemoteEngine:
    return RemoteEngine(server.url, tokenizer=default_model_path(), context_window=context_window, timeout_s=timeout_s)


def served(server: LlamaServer, path: str, body: dict) -> dict:
    """The server's own answer to a request made without Clinidoc."""
    response = httpx.post(server.url.removesuffix("/v1") + path, json=body, timeout=300)
    response.raise_for_status()
    return response.json()


@pytest.mark.slow
def test_llama_cpp_server_streams_the_answer_piece_by_piece_with_its_own_token_counts(
    llama_server: LlamaServer,
) -> None:
    engine = llama_engine(llama_server)

    *deltas, stats = engine.generate(MESSAGES, GenerationParams(max_new_tokens=24))

    # Not streamed, the same request comes back whole with the server's token counts (a stream carries none).
    answer = served(llama_server, "/v1/chat/completions", {
        "messages": [m.model_dump() for m in MESSAGES], "max_tokens": 24, "temperature": 0.0, "repeat_penalty": 1.0,
    })
    [choice] = answer["choices"]
    assert len(deltas) > 1 and all(isinstance(delta, TextDelta) for delta in deltas) and isinstance(stats, Stats)
    assert "".join(delta.text for delta in deltas) == choice["message"]["content"]
    assert stats.finish_reason == choice["finish_reason"]
    assert (stats.prompt_tokens, stats.generated_tokens) == (
        answer["usage"]["prompt_tokens"], answer["usage"]["completion_tokens"]
    )
    text = "Loratadine 10 mg daily; Flonase 2 sprays each nostril (50 µg/spray)."
    assert engine.count_tokens(text) == len(served(llama_server, "/extras/tokenize", {"input": text})["tokens"])


@pytest.mark.slow
def test_llama_cpp_server_stops_at_the_limit_at_a_stop_string_and_when_the_reader_stops(
    llama_server: LlamaServer,
) -> None:
    engine = llama_engine(llama_server)

    opening, stats = collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=6)))
    assert stats.finish_reason == "length" and stats.generated_tokens == 6

    stop = opening.split()[2]
    text, stats = collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=6, stop=[stop])))
    assert text == opening[: opening.index(stop)] and stats.finish_reason == "stop"

    events = engine.generate(ESSAY, GenerationParams(max_new_tokens=512))
    assert isinstance(next(events), TextDelta) and isinstance(next(events), TextDelta)
    events.close()  # the reader goes: the connection closes, and the server stops writing the essay
    assert collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=6)))[0] == opening
    assert "Disconnected from client" in llama_server.log_text()


@pytest.mark.slow
def test_llama_cpp_server_window_is_set_here_and_a_prompt_beyond_it_is_refused(llama_server: LlamaServer) -> None:
    with pytest.raises(EngineError, match="does not report .* context window: set CLINIDOC_CONTEXT"):
        RemoteEngine(llama_server.url, tokenizer=default_model_path())
    # It names its model by the path of the file it loaded, whose tokenizer counts chats on this machine.
    found = RemoteEngine(llama_server.url, context_window=N_CTX)
    assert found.count_prompt_tokens(MESSAGES) == llama_engine(llama_server).count_prompt_tokens(MESSAGES)
    long = [ChatMessage(role="user", content="The patient reports sneezing. " * 600)]  # about 3,000 tokens

    with pytest.raises(PromptTooLong) as refused:
        next(llama_engine(llama_server).generate(long, GenerationParams(max_new_tokens=8)))
    assert refused.value.context_window == N_CTX

    # Set larger than the server's, the window lets the prompt through; the server closes the stream unanswered.
    with pytest.raises(EngineError, match="closed the answer before it began"):
        next(llama_engine(llama_server, context_window=8192).generate(long, GenerationParams(max_new_tokens=8)))
    text, _ = collect(llama_engine(llama_server).generate(MESSAGES, GenerationParams(max_new_tokens=4)))
    assert text  # and it goes on serving


@pytest.mark.slow
def test_llama_cpp_server_that_goes_away_mid_answer_is_an_error_not_a_hang(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp.server")
    with LlamaServer(default_model_path(), N_CTX, tmp_path / "server.log") as server:
        engine = llama_engine(server, timeout_s=60)  # were the engine to wait for a dead server, it would end here
        events = engine.generate(ESSAY, GenerationParams(max_new_tokens=512))
        assert isinstance(next(events), TextDelta)

        server.kill()

        with pytest.raises(EngineError, match="broke off the answer"):
            list(events)
        with pytest.raises(EngineError, match="could not be reached: Connection refused"):
            engine.count_tokens("Hello")


@pytest.mark.slow
def test_llama_cpp_server_holds_an_answer_to_a_schema_through_its_own_form(llama_server: LlamaServer) -> None:
    """llama-cpp-python refuses OpenAI's json_schema; a one-token probe finds that it takes a json_object with a
    schema instead, and the answer follows the schema."""
    engine = llama_engine(llama_server)
    schema = {"type": "object", "properties": {"symptoms": {"type": "array", "items": {"type": "string"}}},
              "required": ["symptoms"]}
    text, _ = collect(engine.generate(MESSAGES, GenerationParams(max_new_tokens=48, json_schema=schema)))
    assert isinstance(json.loads(text)["symptoms"], list)
    assert engine._schema_format == "json_object"


@pytest.mark.slow
def test_llama_cpp_server_and_the_embedded_engine_part_only_at_near_ties(
    local_engine: LocalEngine, llama_server: LlamaServer
) -> None:
    """The same greedy request, every setting pinned, to the server and to the embedded engine on the same file: the
    answers are the same, or part where the model's top two tokens are a near-tie that each engine's rounding
    decides. Left to the server's own defaults (temperature, top-k, repetition penalty), the first eight answers
    part at gaps of up to 0.44."""
    remote = llama_engine(llama_server)
    params = GenerationParams(max_new_tokens=32)
    gaps = []
    for messages in questions(remote)[:8]:
        ours, theirs = answer(local_engine.generate(messages, params)), answer(remote.generate(messages, params))
        gaps.append(0.0 if ours == theirs else first_gap(local_engine, messages, ours, theirs))

    assert all(abs(gap) < 0.15 for gap in gaps), gaps
