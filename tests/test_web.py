"""The web server as a client reaches it: a real uvicorn server in a thread, a real SQLite file and the real model,
driven over HTTP and through `gradio_client`, as an untrusted client would."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from gradio_client import Client, handle_file

from app.accounts import Accounts, SignInRefused, User
from app.assistant import Assistant, read_upload
from app.settings import Settings, SettingsError
from app.store import open_store
from app.ui.serve import check_transport
from app.ui.signins import COOKIE
from app.ui.web import Web
from conftest import CLINICIAN
from engine import LocalEngine
from storage import list_events, verify_events

ADMIN = User(name="admin", role="administrator")
PASSWORDS = {CLINICIAN.name: "a long enough passphrase", "dr.other": "another long passphrase",
             "audrey": "auditing passphrase 1", "admin": "managing accounts passphrase"}
ROLES = {CLINICIAN.name: "clinician", "dr.other": "clinician", "audrey": "auditor", "admin": "administrator"}
CCDA = "ccda_ccd_eve_betterhalf.xml"


class Clock:
    """The sign-ins' clock, moved by the test: idle time without waiting for it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Served:
    def __init__(self, url: str, web: Web, clock: Clock, settings: Settings) -> None:
        self.url, self.web, self.clock, self.settings = url, web, clock, settings

    def client(self, name: str | None = None) -> httpx.Client:
        """An HTTP client, signed in as `name` when given."""
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)
        if name is not None:
            response = client.post("/login", data={"name": name, "password": PASSWORDS[name]})
            assert response.status_code == 303, response.text
        return client


@pytest.fixture(scope="module")
def served(local_engine: LocalEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("web")
    # Encrypted at rest, as a hospital's server runs: the key in a file only this user reads.
    key_file = data_dir / "db.key"
    key_file.write_text("a key for the tests only")
    key_file.chmod(0o600)
    settings = Settings(data_dir=data_dir, max_new_tokens=24, summary_tokens=24, signin_attempts=3,
                        db_key_file=key_file)
    db = open_store(settings)
    accounts = Accounts(db, settings)
    for name, password in PASSWORDS.items():
        accounts.add(ADMIN, name, ROLES[name], password)
    clock = Clock()
    web = Web(Assistant(local_engine, db, settings), accounts, settings, clock)
    with _serving(web) as port:
        yield Served(f"http://127.0.0.1:{port}", web, clock, settings)


@contextmanager
def _serving(web: Web, **tls: str) -> Iterator[int]:
    """The web application served by uvicorn in a thread on a free port, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(web.app(), host="127.0.0.1", port=port, log_level="warning", **tls))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def session_id(served: Served, corpus: Path) -> int:
    """A session of the clinician's, with one record in it."""
    view = served.web.assistant.start_session(CLINICIAN, read_upload([(corpus / CCDA, CCDA)], 1 << 26))
    return view.session.id


def test_a_page_asks_for_sign_in_and_each_role_lands_on_its_own_page(served: Served) -> None:
    anonymous = served.client()
    for path in ("/", "/admin/", "/audit/"):
        response = anonymous.get(path)
        assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert anonymous.get("/config").status_code == 401  # Gradio's own routes are closed too
    for name, home in ((CLINICIAN.name, "/"), ("audrey", "/audit/"), ("admin", "/admin/")):
        client = served.client(name)
        assert client.get(home).status_code == 200
        for elsewhere in {"/", "/admin/", "/audit/"} - {home}:
            assert client.get(elsewhere).headers["location"] == home


def test_failed_sign_ins_lock_the_account_and_every_attempt_is_audited(served: Served) -> None:
    client = served.client()
    for _ in range(served.settings.signin_attempts):
        response = client.post("/login", data={"name": "dr.other", "password": "not the password"})
        assert response.status_code == 401 and "not right" in response.text
    # Locked: even the right password is refused, until an administrator unlocks it.
    response = client.post("/login", data={"name": "dr.other", "password": PASSWORDS["dr.other"]})
    assert response.status_code == 401 and "locked" in response.text
    served.web.accounts.unlock(ADMIN, "dr.other")
    assert served.client("dr.other").get("/").status_code == 200
    attempts = [(event.action, event.detail) for event in list_events(served.web.assistant.db, user="dr.other")
                if event.action.startswith("signin")]
    assert attempts[-5:] == [("signin_failed", "wrong password"), ("signin_failed", "wrong password"),
                             ("signin_failed", "wrong password, account locked"),
                             ("signin_failed", "account locked"), ("signin", "clinician")]
    assert all(event.address == "127.0.0.1" for event in list_events(served.web.assistant.db, user="dr.other"))
    with pytest.raises(SignInRefused):
        served.web.accounts.sign_in("nobody", "whatever it is", None)


def test_an_export_and_the_data_directory_reach_only_the_sessions_owner(served: Served, session_id: int) -> None:
    owner, other, auditor = served.client(CLINICIAN.name), served.client("dr.other"), served.client("audrey")
    export = owner.get(f"/export/{session_id}")
    assert export.status_code == 200 and CCDA in export.text
    assert export.headers["cache-control"] == "no-store"
    for client in (other, auditor, served.client()):
        assert client.get(f"/export/{session_id}").status_code == 404
    data_dir = served.settings.data_dir
    for path in (f"/gradio_api/file={data_dir}/clinidoc.sqlite3", f"/gradio_api/file={data_dir}/uploads/../audit.key",
                 f"/gradio_api/file={data_dir}/uploads/..%2Fclinidoc.sqlite3", f"/file={data_dir}/clinidoc.sqlite3"):
        for client in (owner, other):
            response = client.get(path)
            assert response.status_code in (403, 404), path
            assert b"SQLite format" not in response.content
    # Nothing was written for the export: it was made for the request.
    assert not list(data_dir.rglob("*.md"))


def test_an_upload_through_the_page_leaves_no_plain_text_in_the_data_directory(served: Served, corpus: Path) -> None:
    owner = served.client(CLINICIAN.name)
    api = Client(served.url + "/", headers={"Cookie": f"{COOKIE}={owner.cookies[COOKIE]}"}, verbose=False,
                 download_files=False)
    assert "records encrypted at rest" in api.predict(api_name="/_signed_in")
    name = "mtsamples_moyamoya.txt"
    api.predict([handle_file(corpus / name)], api_name="/_start")
    [session] = [s for s in served.web.assistant.sessions(CLINICIAN) if s.title == name]
    assert served.web.assistant.view(CLINICIAN, session.id).documents[0].name == name
    assert served.settings.uploads_dir.is_dir()  # where Gradio received the file, and deleted it once read
    # A phrase of the note, and its file name, which often names the patient, are nowhere in the files at rest.
    phrase = b"Moya Moya"
    for path in served.settings.data_dir.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert phrase not in content and name.encode() not in content, path


def test_the_gradio_api_refuses_another_clinicians_session(served: Served, session_id: int) -> None:
    other = served.client("dr.other")
    api = Client(served.url + "/", headers={"Cookie": f"{COOKIE}={other.cookies[COOKIE]}"}, verbose=False,
                 download_files=False)
    for endpoint in ("/_open",):
        with pytest.raises(Exception) as refused:
            api.predict(session_id, api_name=endpoint)
        assert CCDA not in str(refused.value)
    # A page load naming the session as the one this browser had open gets only their own list of sessions.
    for stored in ({"user": "dr.other", "session": session_id}, {"user": "dr.other", "session": str(session_id)}, [1]):
        assert CCDA not in str(api.predict(stored, api_name="/_reopen"))
    # Nothing of the session was read for them.
    assert not [event for event in list_events(served.web.assistant.db, session_id=session_id)
                if event.user == "dr.other"]


def test_an_idle_browser_is_signed_out_and_an_active_one_is_not(served: Served) -> None:
    idle, active = served.client(CLINICIAN.name), served.client(CLINICIAN.name)
    limit = served.settings.idle_logoff_minutes * 60
    served.clock.now += limit * 0.6
    assert active.get("/").status_code == 200  # an action: the clock starts again for this browser only
    assert idle.get("/signin/state").json() == {"signed_in": True}  # asking does not count as acting
    served.clock.now += limit * 0.6
    assert idle.get("/signin/state").json() == {"signed_in": False}
    assert idle.get("/").headers["location"] == "/login?ended=lapsed"  # told why at the sign-in page
    assert active.get("/").status_code == 200
    served.web.end_idle()
    assert any(event.action == "signout" and event.detail == "idle"
               for event in list_events(served.web.assistant.db, user=CLINICIAN.name))


def test_signing_out_ends_the_sign_in(served: Served) -> None:
    client = served.client(CLINICIAN.name)
    assert client.get("/logout").headers["location"] == "/login?ended=out"
    assert client.get("/").headers["location"] == "/login"


def test_an_auditor_reads_the_log_as_csv_and_nobody_else_does(served: Served, session_id: int) -> None:
    auditor = served.client("audrey")
    response = auditor.get("/audit.csv", params={"session": session_id})
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == "id,time (UTC),user,action,session,address,detail"
    assert {line.split(",")[3] for line in lines[1:]} >= {"upload"}
    for name in (CLINICIAN.name, "admin"):
        assert served.client(name).get("/audit.csv").status_code == 404
    assert list_events(served.web.assistant.db, action="audit_export")[-1].user == "audrey"
    assert verify_events(served.web.assistant.db).ok


def test_administrators_manage_accounts_and_others_cannot(served: Served) -> None:
    accounts = served.web.accounts
    with pytest.raises(PermissionError):
        accounts.add(User(name=CLINICIAN.name), "mallory", "administrator", "a long enough passphrase")
    account = accounts.add(ADMIN, "dr.new", "clinician", "a fresh long passphrase")
    assert account.has_password and not account.disabled
    accounts.set_disabled(ADMIN, "dr.new", disabled=True)
    with pytest.raises(SignInRefused, match="disabled"):
        accounts.sign_in("dr.new", "a fresh long passphrase", None)
    assert [event.action for event in list_events(accounts.db, user="admin")][-2:] == ["account_add",
                                                                                       "account_disable"]


def test_serving_beyond_this_machine_needs_tls(tmp_path: Path) -> None:
    assert check_transport(Settings(data_dir=tmp_path)) is False
    with pytest.raises(SettingsError, match="TLS"):
        check_transport(Settings(data_dir=tmp_path, host="0.0.0.0"))
    assert check_transport(Settings(data_dir=tmp_path, host="0.0.0.0", behind_tls_proxy=True)) is False
    assert check_transport(Settings(data_dir=tmp_path, host="0.0.0.0", tls_cert=tmp_path / "c.pem",
                                    tls_key=tmp_path / "k.pem")) is True


@pytest.mark.slow  # left out of the default suite for time; run with -m slow
def test_the_server_speaks_tls_with_the_certificate_it_is_given(served: Served, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    cert, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    settings = served.settings.model_copy(update={"tls_cert": cert, "tls_key": key_file})
    assert check_transport(settings)
    web = Web(served.web.assistant, served.web.accounts, settings, served.clock)
    with _serving(web, ssl_certfile=str(cert), ssl_keyfile=str(key_file)) as port:
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False) as client:
            response = client.post("/login", data={"name": CLINICIAN.name, "password": PASSWORDS[CLINICIAN.name]})
            assert response.status_code == 303
            # Under TLS the sign-in cookie is never sent in the clear, and browsers are told to keep to HTTPS.
            assert "secure" in response.headers["set-cookie"].lower()
            assert response.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
