"""The `clinidoc` command: `serve` the browser UI, `ask` one question about one file in the terminal, `check` a text
written elsewhere against a record, `extract` a file to see what the model will read of it; and for the people who
run it, `users` (accounts), `audit` (verify and export the audit log) and `db encrypt`."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from app.accounts import AccountError, Accounts, User
from app.assistant import Answer, AnswerDelta, Assistant, EvidenceFound, Notice, read_upload
from app.claims import ClaimCheck, check_claims
from app.omissions import Omission, omissions
from app.display import check_lines, memory_line, model_line, omission_lines, record_line, report_lines, stats_line
from app.evaluation import evaluate
from app.render import evidence_block, layout, markdown
from app.audit_log import AuditFilters, audit_csv, read_events
from app.settings import Settings, SettingsError
from app.store import open_store
from documents import DocumentError, assemble, load, with_tokens
from documents.lexicons import load_dictionaries
from engine import EngineError, connect_engine, load_engine
from engine.checkpoint import Checkpoint, default_model_path
from storage import Database, DatabaseLocked, UserExists, verify_events
from storage.database import encrypt_file


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    keys = ("model", "device", "quantize", "context", "host", "port")
    overrides = {key: value for key in keys if (value := getattr(args, key, None)) is not None}
    settings = Settings(**overrides)
    try:
        return args.command(args, settings)
    except (EngineError, SettingsError, DatabaseLocked, AccountError, UserExists) as err:
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

    commands.add_parser(
        "setup", help="create the first administrator and clinician accounts, asking in the terminal"
    ).set_defaults(command=_setup)

    users = commands.add_parser("users", help="manage the accounts that sign in (administrators)")
    user_commands = users.add_subparsers(required=True, metavar="ACTION")
    add = user_commands.add_parser("add", help="add an account; asks for its password twice")
    add.add_argument("name")
    add.add_argument("--role", choices=["clinician", "administrator", "auditor"], default="clinician")
    add.add_argument("--directory", action="store_true", help="no password here: signs in through the directory (LDAP)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input, for scripts")
    add.set_defaults(command=_users_add)
    for action, helptext in (("disable", "stop an account from signing in"), ("enable", "let it sign in again"),
                             ("unlock", "lift a lock after failed sign-ins")):
        sub = user_commands.add_parser(action, help=helptext)
        sub.add_argument("name")
        sub.set_defaults(command=_users_change, action=action)
    reset = user_commands.add_parser("reset-password", help="set a new password; asks for it twice")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true")
    reset.set_defaults(command=_users_reset)
    user_commands.add_parser("list", help="list the accounts").set_defaults(command=_users_list)

    audit = commands.add_parser("audit", help="verify or export the audit log (auditors)")
    audit_commands = audit.add_subparsers(required=True, metavar="ACTION")
    audit_commands.add_parser(
        "verify", help="check that no audit event was changed or removed"
    ).set_defaults(command=_audit_verify)
    export = audit_commands.add_parser("export", help="write the audit log, or part of it, as CSV")
    export.add_argument("--csv", type=Path, required=True, metavar="FILE", help="where to write; - for standard output")
    _audit_filters(export)
    export.set_defaults(command=_audit_export)

    database = commands.add_parser("db", help="the database file")
    database_commands = database.add_subparsers(required=True, metavar="ACTION")
    database_commands.add_parser(
        "encrypt", help="encrypt a plain database with the key set in CLINIDOC_DB_KEY or CLINIDOC_DB_KEY_FILE"
    ).set_defaults(command=_db_encrypt)
    return parser


def _audit_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="only this user's events")
    parser.add_argument("--session", type=int, help="only this session's events")
    parser.add_argument("--action", help="only events of this kind: signin, upload, question, export, ...")
    parser.add_argument("--since", help="from this day on (YYYY-MM-DD, UTC)")
    parser.add_argument("--until", help="up to and including this day (YYYY-MM-DD, UTC)")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="GGUF file or model directory (default: the bundled SmolLM2-135M-Instruct)")
    parser.add_argument("--device", help="cpu (default) or cuda")
    parser.add_argument(
        "--quantize", choices=["auto", "none", "bf16", "fp8", "int8", "int4"],
        help="how to hold the model's projections (default: auto, int4 for a GGUF Q4 checkpoint on a CPU, else none)",
    )
    parser.add_argument("--context", type=int, help="context window in tokens; beyond the model's own, YaRN")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    # The server's log is the operator's: what failed and why, in detail a clinician's screen leaves out.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Gradio fixes some of its folders when it is imported; patient files belong under the data dir.
    os.environ["GRADIO_TEMP_DIR"] = str(settings.uploads_dir)
    from app.ui import serve
    from app.ui.serve import check_transport

    # Refusals come before the model loads: they should not take a minute.
    check_transport(settings)
    db = open_store(settings)
    accounts = Accounts(db, settings)
    if not accounts.can_sign_in():
        print("clinidoc: no account can sign in yet. Create one first, for example:\n"
              "  clinidoc users add ADMIN_NAME --role administrator\n"
              "  clinidoc users add YOUR_NAME --role clinician\n"
              "or run `clinidoc setup`, which asks for both.", file=sys.stderr)
        return 2
    # The drug and disease dictionaries take seconds to load: while the model loads, not on the first upload.
    threading.Thread(target=load_dictionaries, name="dictionaries", daemon=True).start()
    serve(_assistant(settings, db), accounts, settings)
    return 0


def _setup(args: argparse.Namespace, settings: Settings) -> int:
    """The first accounts of a new installation, asked for in the terminal: an administrator, and a clinician to
    work with. Nothing is asked once an administrator exists."""
    accounts = Accounts(open_store(settings), settings)
    if accounts.has_administrator():
        print("Accounts exist already; manage them with `clinidoc users`.")
        return 0
    if not sys.stdin.isatty():
        print("clinidoc setup asks for passwords in a terminal. In a script, use "
              "`clinidoc users add NAME --role administrator --password-stdin`.", file=sys.stderr)
        return 2
    print("Clinidoc has no accounts yet. First, an administrator (manages accounts, sees no patient records).")
    _ask_account(accounts, "administrator")
    print("Next, a clinician account to work with records (leave the name empty to skip).")
    _ask_account(accounts, "clinician", optional=True)
    return 0


def _ask_account(accounts: Accounts, role: str, optional: bool = False) -> None:
    while True:
        name = input(f"{role.capitalize()} user name: ").strip()
        if not name and optional:
            return
        try:
            first = getpass.getpass("Password (at least 12 characters): ")
            if getpass.getpass("Again: ") != first:
                raise AccountError("The two passwords differ.")
            accounts.add(_operator(), name, role, first)
            print(f"Added {name} ({role}).")
            return
        except (AccountError, UserExists) as error:
            print(error)


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    # The terminal is for the answer. Parser warnings about a damaged file would only repeat, less
    # clearly, the one-line reason printed below.
    logging.basicConfig(level=logging.ERROR)
    # Read the file before loading the model, so a bad file fails in a moment, not after the load.
    upload = read_upload([(args.file, args.file.name)], settings.max_upload_bytes,
                         max_tokens=settings.max_record_tokens)
    if upload.failures:
        print(upload.failures[0], file=sys.stderr)
        return 2
    assistant = _assistant(settings)
    user = User(name=settings.user)  # the command line's user: whoever can run it on this machine
    view = assistant.start_session(user, upload)
    assert view is not None, "a readable file always starts a session"
    print(record_line(view.record), file=sys.stderr)
    # The model's words stream to a terminal as it writes them; what is printed to keep is the checked answer.
    streaming = sys.stderr.isatty()
    for event in assistant.ask(user, view.session.id, args.question):
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
    upload = read_upload([(path, path.name) for path in args.files], settings.max_upload_bytes,
                         max_tokens=settings.max_record_tokens)
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
    omitted = omissions("\n".join(claims), upload.documents)
    if args.json:
        print(json.dumps(
            {"claims": [_check_json(check) for check in checks], "omissions": [_omission_json(o) for o in omitted]},
            indent=2,
        ))
    else:
        print("\n".join(check_lines(checks) + omission_lines(omitted)))
    return 0


def _check_json(check: ClaimCheck) -> dict[str, object]:
    citations = [
        citation.model_dump(include={"document", "page", "start", "end", "quote"}) for citation in check.citations
    ]
    return {"text": check.text, "label": check.label, "citations": citations, "note": check.note}


def _omission_json(omission: Omission) -> dict[str, object]:
    citation = omission.citation.model_dump(include={"document", "page", "start", "end", "quote"})
    return {"fact": omission.fact, "category": omission.category, "citation": citation}


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


def _operator() -> User:
    """Who runs an administrative command: the operating system's user, as the audit log records them."""
    return User(name=f"os:{getpass.getuser()}", role="administrator")


def _new_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("The two passwords differ.")
    return first


def _users_add(args: argparse.Namespace, settings: Settings) -> int:
    accounts = Accounts(open_store(settings), settings)
    account = accounts.add(_operator(), args.name, args.role, None if args.directory else _new_password(args))
    print(f"Added {account.name} ({account.role}{', directory sign-in' if args.directory else ''}).")
    return 0


def _users_change(args: argparse.Namespace, settings: Settings) -> int:
    accounts = Accounts(open_store(settings), settings)
    if args.action == "unlock":
        accounts.unlock(_operator(), args.name)
    else:
        accounts.set_disabled(_operator(), args.name, disabled=args.action == "disable")
    print(f"{args.name}: {args.action}d." if args.action != "unlock" else f"{args.name}: unlocked.")
    return 0


def _users_reset(args: argparse.Namespace, settings: Settings) -> int:
    Accounts(open_store(settings), settings).reset_password(_operator(), args.name, _new_password(args))
    print(f"{args.name}: password changed.")
    return 0


def _users_list(args: argparse.Namespace, settings: Settings) -> int:
    for account in Accounts(open_store(settings), settings).accounts():
        state = "disabled" if account.disabled else "locked" if account.locked_until and account.locked_until > datetime.now(UTC) else "active"
        print(f"{account.name}\t{account.role}\t{account.source}\t{state}")
    return 0


def _audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    check = verify_events(open_store(settings))
    if check.ok:
        print(f"The audit log is whole: {check.rows:,} events, none changed or removed.")
        return 0
    print(f"The audit log was tampered with: {check.problem}.", file=sys.stderr)
    return 1


def _audit_export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        filters = AuditFilters.parse(user=args.user, session=args.session, action=args.action, since=args.since,
                                     until=args.until)
    except ValueError as err:
        print(f"clinidoc: {err}", file=sys.stderr)
        return 2
    # Whoever can read the key and the database on this machine reads the log; the reading is audited as theirs.
    auditor = _operator().model_copy(update={"role": "auditor"})
    text = audit_csv(read_events(open_store(settings), auditor, filters, export=True))
    if str(args.csv) == "-":
        sys.stdout.write(text)
    else:
        args.csv.write_text(text, encoding="utf-8")
    return 0


def _db_encrypt(args: argparse.Namespace, settings: Settings) -> int:
    key = settings.database_key()
    if key is None:
        print("clinidoc: set CLINIDOC_DB_KEY or CLINIDOC_DB_KEY_FILE to the key to encrypt with.", file=sys.stderr)
        return 2
    encrypt_file(settings.db_path, key)
    print(f"{settings.db_path} is encrypted; keep the key safe: without it the database cannot be opened.")
    return 0


def _assistant(settings: Settings, db: Database | None = None) -> Assistant:
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
            settings.model, settings.device, settings.quantize, settings.context,
            None if settings.prefix_cache_mb is None else settings.prefix_cache_mb * 2**20,
            drafter=settings.drafter, draft_model=settings.draft_model, max_batch=settings.max_batch,
            kv_cache=settings.kv_cache,
        )
        print(memory_line(engine.memory, engine.prefix_cache.budget_bytes), file=sys.stderr)
    print(model_line(engine.info), file=sys.stderr)
    return Assistant(engine, db or open_store(settings), settings)
