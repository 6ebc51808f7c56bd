"""Directory sign-in against a real OpenLDAP server (Debian's slapd) that the test starts and fills."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ldap3 import Connection, Server

from app.accounts import Accounts, SignInRefused
from app.settings import Settings
from app.store import open_store
from storage import list_events

pytestmark = pytest.mark.slow

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SUFFIX = "dc=example,dc=org"
ROOT_DN, ROOT_PASSWORD = f"cn=admin,{SUFFIX}", "rootsecret"
PASSWORD = "a directory passphrase"


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(SLAPD).exists():
        pytest.skip("slapd is not installed (Debian: apt-get install slapd)")
    folder = tmp_path_factory.mktemp("slapd")
    (folder / "db").mkdir()
    config = folder / "slapd.conf"
    config.write_text("\n".join([
        *(f"include /etc/ldap/schema/{schema}.schema" for schema in ("core", "cosine", "inetorgperson", "nis")),
        "modulepath /usr/lib/ldap", "moduleload back_mdb", f"pidfile {folder}/slapd.pid",
        "database mdb", f'suffix "{SUFFIX}"', f'rootdn "{ROOT_DN}"', f"rootpw {ROOT_PASSWORD}",
        f"directory {folder}/db", "",
    ]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"ldap://127.0.0.1:{port}"
    process = subprocess.Popen([SLAPD, "-f", str(config), "-h", f"{url}/", "-d", "none"],  # in the foreground
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        root = _bind_when_up(url, process)
        root.add(SUFFIX, ["dcObject", "organization"], {"dc": "example", "o": "Example Hospital"})
        root.add(f"ou=people,{SUFFIX}", ["organizationalUnit"], {"ou": "people"})
        root.add(f"uid=dr.ldap,ou=people,{SUFFIX}", ["inetOrgPerson"],
                 {"uid": "dr.ldap", "cn": "Dr Ldap", "sn": "Ldap", "userPassword": PASSWORD})
        root.unbind()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _bind_when_up(url: str, process: subprocess.Popen[bytes]) -> Connection:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"slapd exited with {process.returncode}")
        connection = Connection(Server(url), user=ROOT_DN, password=ROOT_PASSWORD)
        try:
            if connection.bind():
                return connection
        except Exception:  # not listening yet
            time.sleep(0.2)
    pytest.fail("slapd did not start within 30 s")


def test_a_directory_user_signs_in_and_a_wrong_password_or_name_does_not(directory: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, ldap_url=directory, ldap_user_dn=f"uid={{name}},ou=people,{SUFFIX}")
    accounts = Accounts(open_store(settings), settings)
    assert accounts.can_sign_in()

    user = accounts.sign_in("dr.ldap", PASSWORD, "10.0.0.9")
    assert (user.name, user.role) == ("dr.ldap", "clinician")
    [account] = accounts.accounts()
    assert (account.source, account.has_password) == ("directory", False)  # no password is kept here
    for name, password in (("dr.ldap", "not the password"), ("dr.ldap", ""), ("nobody", PASSWORD),
                           ("dr.ldap,ou=people", PASSWORD)):
        with pytest.raises(SignInRefused):
            accounts.sign_in(name, password, "10.0.0.9")
    actions = [(event.user, event.action) for event in list_events(accounts.db)]
    assert ("dr.ldap", "signin") in actions and ("dr.ldap", "signin_failed") in actions
