"""A headless Thunderbird with a throwaway profile for bob (IMAP or POP3) reading from the lab.

Thunderbird keeps no password in its preferences: it asks the login manager, which keeps
``logins.json`` (the user name and password encrypted with NSS's ``PK11SDR_Encrypt`` under the
key in the profile's ``key4.db``).  ``make_profile`` writes ``user.js`` (the account, as the
account wizard would: ``download_on_biff`` for POP3, mail checked at startup), creates
``key4.db`` with an empty primary password and stores bob's password for the origin Thunderbird
looks up (``imap://127.0.0.1`` or ``mailbox://127.0.0.1``, the scheme of a POP3 server).

The NSS calls run in a child Python (``python -c``) so that the test process never loads NSS.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

THUNDERBIRD_LIB = Path("/usr/lib/thunderbird")  # Debian's package: its own NSS lives here too

_ENCRYPT = r"""
import base64, ctypes, json, sys
profile, texts = sys.argv[1], json.loads(sys.argv[2])
nss = ctypes.CDLL(sys.argv[3])
class SECItem(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint), ("data", ctypes.c_void_p), ("len", ctypes.c_uint)]
nss.NSS_InitReadWrite.argtypes = [ctypes.c_char_p]
nss.PK11_GetInternalKeySlot.restype = ctypes.c_void_p
nss.PK11_NeedUserInit.argtypes = [ctypes.c_void_p]
nss.PK11_InitPin.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
nss.PK11_Authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
nss.PK11SDR_Encrypt.argtypes = [ctypes.POINTER(SECItem)] * 3 + [ctypes.c_void_p]
nss.PK11_FreeSlot.argtypes = [ctypes.c_void_p]
if nss.NSS_InitReadWrite(("sql:" + profile).encode()) != 0:
    sys.exit("NSS_InitReadWrite failed")
slot = nss.PK11_GetInternalKeySlot()
if nss.PK11_NeedUserInit(slot) and nss.PK11_InitPin(slot, None, b"") != 0:  # empty primary password
    sys.exit("PK11_InitPin failed")
if nss.PK11_Authenticate(slot, 1, None) != 0:
    sys.exit("PK11_Authenticate failed")
out = []
for text in texts:
    raw = text.encode()
    buf = ctypes.create_string_buffer(raw, len(raw))
    data = SECItem(0, ctypes.cast(buf, ctypes.c_void_p), len(raw))
    result, keyid = SECItem(), SECItem()
    if nss.PK11SDR_Encrypt(ctypes.byref(keyid), ctypes.byref(data), ctypes.byref(result), None) != 0:
        sys.exit("PK11SDR_Encrypt failed")
    out.append(base64.b64encode(ctypes.string_at(result.data, result.len)).decode())
nss.PK11_FreeSlot(slot)
nss.NSS_Shutdown()
print(json.dumps(out))
"""


def thunderbird() -> str | None:
    return shutil.which("thunderbird")


def _nss_library() -> str:
    bundled = THUNDERBIRD_LIB / "libnss3.so"
    return str(bundled) if bundled.exists() else "libnss3.so"


def encrypt(profile: Path, *texts: str) -> list[str]:
    """PK11SDR_Encrypt each text with the key of ``profile/key4.db`` (created if missing)."""
    env = dict(os.environ)
    if (THUNDERBIRD_LIB / "libnss3.so").exists():
        env["LD_LIBRARY_PATH"] = str(THUNDERBIRD_LIB) + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    result = subprocess.run([sys.executable, "-c", _ENCRYPT, str(profile), json.dumps(texts), _nss_library()],
                            capture_output=True, text=True, env=env, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"NSS encryption failed: {result.stderr or result.stdout}")
    return json.loads(result.stdout)


def make_profile(profile: Path, *, protocol: str, port: int, user: str, password: str,
                 socket_type: int = 0) -> None:
    """A profile with one account for ``user`` on 127.0.0.1:``port`` (protocol "imap" or "pop3").

    ``socket_type``: 0 plain, 2 STARTTLS, 3 implicit TLS (Thunderbird's mail.server.*.socketType)."""
    profile.mkdir(parents=True, exist_ok=True)
    kind = "imap" if protocol == "imap" else "pop3"
    prefs = {
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.identities": "id1",
        "mail.account.account1.server": "server1",
        "mail.account.account2.server": "server2",
        "mail.identity.id1.useremail": f"{user}@lab.test",
        "mail.identity.id1.fullName": user,
        "mail.identity.id1.valid": True,
        "mail.server.server1.type": kind,
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": port,
        "mail.server.server1.userName": user,
        "mail.server.server1.name": f"{user}@lab.test",
        "mail.server.server1.socketType": socket_type,
        "mail.server.server1.authMethod": 3,  # normal (cleartext) password, as the lab offers on loopback
        "mail.server.server1.login_at_startup": True,
        "mail.server.server1.check_new_mail": True,
        "mail.server.server1.check_time": 1,
        "mail.server.server1.download_on_biff": True,  # POP3: what the account wizard sets
        "mail.server.server1.leave_on_server": True,
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.name": "Local Folders",
        # no first-run pages, updates, telemetry or default-client questions
        "mail.shell.checkDefaultClient": False,
        "mail.provider.enabled": False,
        "mailnews.start_page.enabled": False,
        "mail.rights.override": True,
        "app.update.enabled": False,
        "app.update.auto": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.healthreport.uploadEnabled": False,
        "toolkit.telemetry.enabled": False,
        "mail.biff.play_sound": False,
        "mail.biff.show_alert": False,
        "mail.biff.show_tray_icon": False,
        "mail.startup.enabledMailCheckOnce": True,
        "extensions.autoDisableScopes": 15,
        "network.dns.disableIPv6": True,
    }
    lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in prefs.items()]
    (profile / "user.js").write_text("\n".join(lines) + "\n")
    origin = f"{'imap' if kind == 'imap' else 'mailbox'}://127.0.0.1"
    enc_user, enc_password = encrypt(profile, user, password)
    now = int(time.time() * 1000)
    logins = {
        "nextId": 2,
        "logins": [{
            "id": 1, "hostname": origin, "httpRealm": origin, "formSubmitURL": None,
            "usernameField": "", "passwordField": "",
            "encryptedUsername": enc_user, "encryptedPassword": enc_password,
            "guid": "{" + str(uuid.uuid4()) + "}", "encType": 1,
            "timeCreated": now, "timeLastUsed": now, "timePasswordChanged": now, "timesUsed": 1,
        }],
        "potentiallyVulnerablePasswords": [],
        "dismissedBreachAlertsByLoginGUID": {},
        "version": 3,
    }
    (profile / "logins.json").write_text(json.dumps(logins))


def trust_ca(profile: Path, ca_file: Path) -> None:
    """Add the lab CA to the profile's certificate store (cert9.db) as a trusted server CA, as
    a user would in Thunderbird's certificate manager (``certutil``, Debian's libnss3-tools)."""
    certutil = shutil.which("certutil")
    if certutil is None:
        raise RuntimeError("certutil is not installed (apt-get install libnss3-tools)")
    result = subprocess.run([certutil, "-A", "-d", f"sql:{profile}", "-n", "mailtrace lab CA", "-t", "C,,",
                             "-i", str(ca_file)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"certutil failed: {result.stderr or result.stdout}")


def start(profile: Path, home: Path, log: Path) -> subprocess.Popen:
    """Thunderbird headless on ``profile``; stop it with :func:`stop` (by its PID)."""
    env = dict(os.environ)
    env.update({"HOME": str(home), "MOZ_HEADLESS": "1", "MOZ_DISABLE_CONTENT_SANDBOX": "1",
                "MOZ_CRASHREPORTER_DISABLE": "1", "XDG_RUNTIME_DIR": str(home)})
    env.pop("DISPLAY", None)
    if os.environ.get("MAILTRACE_TB_LOG"):
        env["MOZ_LOG"] = os.environ["MAILTRACE_TB_LOG"]
        env["MOZ_LOG_FILE"] = str(log) + ".moz"
    return subprocess.Popen([thunderbird(), "--headless", "--no-remote", "--profile", str(profile)],
                            env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """Terminate Thunderbird by its PID (and its child processes, in its own session)."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)
