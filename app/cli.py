"""The `clinidoc` command: `serve` the browser UI, `ask` one question about one file in the terminal, `check` a text
written elsewhere against a record, or `extract` a file to see what the model will read of it."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

from app.assistant import Answer, AnswerDelta, Assistant, EvidenceFound, Notice, read_upload
from app.claims import ClaimCheck, check_claims
from app.display import check_lines, model_line, record_line, report_lines, stats_line
from app.evaluation import evaluate
from app.render import evidence_block, layout, markdown
from app.settings import Settings
from documents import DocumentError, assemble, load, with_tokens
from documents.lexicons import load_dictionaries
from engine import EngineError, connect_engine, load_engine
from engine.checkpoint import Checkpoint, default_model_path
from storage import open_database


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keys = ("model", "device", "quantize", "context", "host", "port")
    overrides = {key: value for key in keys if (value := getattr(args, key, None)) is not None}
    settings = Settings(**overrides)
    try:
        return args.command(args, settings)
    except EngineError as err:
        print(f"clinidoc: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader left early (`clinidoc extract FILE | head`): nothing more to say, and nothing to say it to.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinidoc", description="On-prem clinical document assistant.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the browser UI on this machine")
    _model_arguments(serve)
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, help="port to listen on (default: 7860)")
    serve.set_defaults(command=_serve)

    ask = commands.add_parser("ask", help="answer one question about one file, in the terminal")
    ask.add_argument("file", type=Path, help="the patient record: PDF, DOCX, TXT, MD, FHIR JSON or C-CDA XML")
    ask.add_argument("question")
    _model_arguments(ask)
    ask.set_defaults(command=_ask)

    check = commands.add_parser(
        "check", help="label each line of a text (a draft, another system's summary) against a record, without a model"
    )
    check.add_argument("files", type=Path, nargs="+", metavar="FILE", help="the record: PDF, DOCX, TXT, MD, FHIR, C-CDA")
    check.add_argument(
        "--claims", type=Path, required=True, help="a text file with one statement per line to check against the record"
    )
    check.add_argument(
        "--json", action="store_true", help="print a JSON list: text, label and citations of each statement"
    )
    check.set_defaults(command=_check)

    extract = commands.add_parser("extract", help="print the text the model will see of one file, page by page")
    extract.add_argument("file", type=Path, help="PDF, DOCX, TXT, MD, FHIR JSON or C-CDA XML")
    extract.add_argument(
        "--json", action="store_true", help="print the document as JSON: pages, sections, spans and its coverage"
    )
    extract.add_argument("--password", help="the password of an encrypted PDF")
    extract.add_argument("--model", help="whose tokenizer counts the tokens of --json (default: the bundled model)")
    extract.set_defaults(command=_extract)

    evaluate = commands.add_parser(
        "eval", help="summarise and question every document of a corpus with ground truth, and score the results"
    )
    evaluate.add_argument("corpus", type=Path, help="a folder of documents with truth/<document stem>.json beside them")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    _model_arguments(evaluate)
    evaluate.set_defaults(command=_eval)
    return parser


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="GGUF file or model directory (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--device", help="cpu (default) or cuda")
    parser.add_argument(
        "--quantize", choices=["auto", "none", "bf16", "fp8", "int8", "int4"],
        help="how to hold the model's projections (default: auto, int4 for a GGUF Q4 checkpoint on a CPU, else none)",
    )
    parser.add_argument("--context", type=int, help="context window in tokens; beyond the model's own, YaRN")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # Gradio fixes its upload folder when it is imported; patient files belong under the data dir.
    os.environ["GRADIO_TEMP_DIR"] = str(settings.uploads_dir)
    from app.ui import serve

    # The drug and disease dictionaries take seconds to load: while the model loads, not on the first upload.
    threading.Thread(target=load_dictionaries, name="dictionaries", daemon=True).start()
    serve(_assistant(settings), settings)
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    # The terminal is for the answer. Parser warnings about a damaged file would only repeat, less
    # clearly, the one-line reason printed below.
    logging.basicConfig(level=logging.ERROR)
    # Read the file before loading the model, so a bad file fails in a moment, not after the load.
    upload = read_upload([(args.file, args.file.name)], settings.max_upload_bytes)
    if upload.failures:
        print(upload.failures[0], file=sys.stderr)
        return 2
    assistant = _assistant(settings)
    view = assistant.start_session(upload)
    assert view is not None, "a readable file always starts a session"
    print(record_line(view.record), file=sys.stderr)
    # The model's words stream to a terminal as it writes them; what is printed to keep is the checked answer.
    streaming = sys.stderr.isatty()
    for event in assistant.ask(view.session.id, args.question):
        if isinstance(event, EvidenceFound):
            print(markdown([evidence_block(event.turn)]) + "\n", flush=True)
        elif isinstance(event, AnswerDelta) and streaming:
            print(event.text, end="", file=sys.stderr, flush=True)
        elif isinstance(event, Answer):
            if streaming:
                print("\n", file=sys.stderr)
            # The evidence, printed already, opens the whole answer's Markdown.
            whole, evidence = markdown(layout(event.turn)), markdown([evidence_block(event.turn)])
            print(whole.removeprefix(evidence).lstrip("\n"))
            turn = event.turn
            if turn.stats is not None:
                print(stats_line(turn.stats))
        elif isinstance(event, Notice):
            print(event.text, file=sys.stderr)
            return 1
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.ERROR)
    upload = read_upload([(path, path.name) for path in args.files], settings.max_upload_bytes)
    for failure in upload.failures:
        print(failure, file=sys.stderr)
    if upload.failures:
        return 2
    try:
        text = args.claims.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        print(f"{args.claims}: cannot be read as UTF-8 text ({err.__class__.__name__})", file=sys.stderr)
        return 2
    claims = [line.strip() for line in text.splitlines() if line.strip()]
    checks: list[ClaimCheck] = check_claims(claims, upload.documents)
    if args.json:
        print(json.dumps([_check_json(check) for check in checks], indent=2))
    else:
        print("\n".join(check_lines(checks)))
    return 0


def _check_json(check: ClaimCheck) -> dict[str, object]:
    citations = [
        citation.model_dump(include={"document", "page", "start", "end", "quote"}) for citation in check.citations
    ]
    return {"text": check.text, "label": check.label, "citations": citations, "note": check.note}


def _extract(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.ERROR)  # as for ask: the one-line reason says it all
    try:
        document = load(args.file, max_bytes=settings.max_upload_bytes, password=args.password)
    except DocumentError as err:
        print(err, file=sys.stderr)
        return 2
    if args.json:
        # The tokenizer loads from the checkpoint without the model's weights: seconds, not the model's load.
        path = Path(settings.model) if settings.model else default_model_path()
        tokenizer = Checkpoint(path).tokenizer()
        document = with_tokens(document, lambda text: len(tokenizer.encode(text)))
        print(document.model_dump_json(indent=2))
    else:
        # Without a question nothing is cut, so the budget and the token count play no part here.
        print(assemble([document], budget=0, count_tokens=len).text)
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    logging.basicConfig(level=logging.ERROR)
    if not (args.corpus / "truth").is_dir():
        print(f"{args.corpus} has no truth/ folder of ground-truth files", file=sys.stderr)
        return 2
    # Scored sessions are not the user's: they go to a database of their own, gone when the run ends.
    with tempfile.TemporaryDirectory(prefix="clinidoc-eval-") as scratch:
        settings = settings.model_copy(update={"db_path": Path(scratch) / "eval.sqlite3"})
        assistant = _assistant(settings)
        progress = lambda name: print(f"Evaluating {name}…", file=sys.stderr, flush=True)  # noqa: E731
        report = evaluate(assistant, args.corpus, settings.max_upload_bytes, progress).report()
    print(json.dumps(report, indent=2) if args.json else "\n".join(report_lines(report)))
    return 0


def _assistant(settings: Settings) -> Assistant:
    if settings.backend == "remote":
        if not settings.remote_url:
            raise EngineError(
                "The remote backend needs the model server's address: set CLINIDOC_REMOTE_URL, "
                "such as http://gpu-node:8000/v1."
            )
        print(f"Connecting to the model server at {settings.remote_url}…", file=sys.stderr, flush=True)
        # --context / CLINIDOC_CONTEXT, when given, stands for the window the server reports.
        engine = connect_engine(
            settings.remote_url, settings.remote_model,
            settings.remote_api_key.get_secret_value() if settings.remote_api_key else None, settings.remote_tokenizer,
            settings.context, settings.remote_timeout_s,
        )
    else:
        print("Loading the model…", file=sys.stderr, flush=True)
        engine = load_engine(
            settings.model, settings.device, settings.quantize, settings.context, settings.prefix_cache_mb * 2**20,
            drafter=settings.drafter, draft_model=settings.draft_model, max_batch=settings.max_batch,
            kv_cache=settings.kv_cache,
        )
    print(model_line(engine.info), file=sys.stderr)
    return Assistant(engine, open_database(settings.db_path), settings)
