"""Unit tests of the Maildir store (mailtrace.store): real files in a temporary directory."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailtrace.store.maildir import (INBOX, InvalidMailboxName, MailboxExists, MailboxNotFound,
                                     MaildirStore)

USERS = {"alice": "alice pw", "bob": "b:o\"b"}
MSG = b"From: a@lab.test\r\nSubject: hi\r\n\r\nhello\r\n.dot line\r\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def store(root: Path) -> MaildirStore:
    s = MaildirStore(root, dict(USERS))
    yield s
    s.close()


def files_in(path: Path) -> list[str]:
    return sorted(os.listdir(path))


# -- delivery -----------------------------------------------------------------------------

def test_layout_created_for_every_user(store, root):
    for user in USERS:
        for sub in ("cur", "new", "tmp"):
            assert (root / user / sub).is_dir()


def test_deliver_stores_bytes_exactly_and_reads_back(store, root):
    info = store.deliver("alice", MSG)
    assert info.uid == 1 and info.recent and info.flags == frozenset()
    assert info.size == len(MSG)
    (name,) = files_in(root / "alice" / "new")
    # on disk with LF line ends, as Dovecot and mutt expect; ",S=" disk size, ",W=" wire size
    on_disk = (root / "alice" / "new" / name).read_bytes()
    assert on_disk == MSG.replace(b"\r\n", b"\n") and b"\r" not in on_disk
    assert name.endswith(f",S={len(on_disk)},W={len(MSG)}")
    assert name == info.key
    assert files_in(root / "alice" / "tmp") == []
    box = store.mailbox("alice")
    assert [m.uid for m in box.messages()] == [1]
    assert box.read(1) == MSG
    assert box.get(1) == info


def test_lf_message_is_read_in_wire_form_and_size_matches(store):
    raw = b"Subject: lf\n\nline one\nline two\r\nbare cr \r stays\n"
    info = store.deliver("alice", raw)
    box = store.mailbox("alice")
    wire = box.read(info.uid)
    assert wire == b"Subject: lf\r\n\r\nline one\r\nline two\r\nbare cr \r stays\r\n"
    assert info.size == len(wire) == box.get(info.uid).size


def test_size_of_foreign_file_without_w_field(store, root):
    # A message dropped by another MDA (procmail, mutt) has no ",W=" in its name.
    raw = b"Subject: x\n\nbody\n"
    (root / "alice" / "new" / "123.foreign.host").write_bytes(raw)
    box = store.mailbox("alice")
    (info,) = box.messages()
    assert info.size == len(box.read(info.uid)) == len(raw) + 3


@pytest.mark.parametrize("line_end", [b"\r\n", b"\n"])
def test_every_read_gives_the_whole_file_in_wire_form_whatever_its_name_says(root, monkeypatch, line_end):
    # No message is kept in memory (a budget of 0, as when 100 users' mailboxes exceed it):
    # every read is a file read, the second one with the line ends already known.
    from mailtrace.store import cache
    monkeypatch.setattr(cache, "_shared", cache.WireCache(budget=0))
    store = MaildirStore(root, dict(USERS))
    body = b"".join(b"line %d of a message longer than its name says\n" % n for n in range(5000))  # ~250 KB
    raw = b"Subject: big\n\n" + body
    (root / "alice" / "cur" / f"1.lies.host,S=10,W=12:2,S").write_bytes(raw.replace(b"\n", line_end))
    box = store.mailbox("alice")
    (info,) = box.messages()
    wire = raw.replace(b"\n", b"\r\n")
    assert box.read(info.uid) == wire
    assert box.read(info.uid) == wire
    store.close()


def test_delivery_to_unknown_user_or_mailbox(store):
    with pytest.raises(MailboxNotFound):
        store.deliver("mallory", MSG)
    with pytest.raises(MailboxNotFound):
        store.deliver("alice", MSG, mailbox="Nope")
    with pytest.raises(InvalidMailboxName):
        store.deliver("../alice", MSG)


def test_failed_delivery_leaves_nothing_visible(root):
    # A real failure in the middle of the write: the file-size limit (RLIMIT_FSIZE) makes
    # write() fail after 1000 octets, as a full disk would.
    code = f"""
import resource, signal, sys
from pathlib import Path
from mailtrace.store.maildir import MaildirStore
store = MaildirStore(Path({str(root)!r}), {{"alice": "x"}})
store.mailbox("alice")  # uidlist created before the limit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    store.deliver("alice", b"Subject: big\\r\\n\\r\\n" + b"x" * 100_000)
except OSError as exc:
    print("failed:", exc.errno)
else:
    print("delivered?!")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "failed:" in out.stdout, out.stderr
    for sub in ("new", "cur", "tmp"):
        assert files_in(root / "alice" / sub) == []
    store = MaildirStore(root, {"alice": "x"})
    assert store.mailbox("alice").messages() == []


def test_no_partial_file_is_ever_visible(store, root):
    big = b"Subject: big\r\n\r\n" + b"y" * 2_000_000
    seen_bad: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            for name in os.listdir(root / "alice" / "new"):
                try:
                    size = (root / "alice" / "new" / name).stat().st_size
                except FileNotFoundError:
                    continue
                if size != len(big) - 2:  # stored with LF line ends: two CRs fewer
                    seen_bad.append(name)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(10):
            store.deliver("alice", big)
    finally:
        done.set()
        t.join()
    assert seen_bad == []
    assert len(store.mailbox("alice").messages()) == 10


# -- UIDs -----------------------------------------------------------------------------------

def test_uids_and_uidvalidity_survive_reopen(root):
    s1 = MaildirStore(root, dict(USERS))
    infos = [s1.deliver("alice", MSG + b"%d\r\n" % i) for i in range(5)]
    box1 = s1.mailbox("alice")
    box1.expunge([infos[4].uid])  # UID 5 is gone and must never come back
    validity, uidnext = box1.uidvalidity, box1.uidnext
    s1.close()
    s2 = MaildirStore(root, dict(USERS))
    box2 = s2.mailbox("alice")
    assert box2.uidvalidity == validity
    assert [(m.uid, m.key) for m in box2.messages()] == [(i.uid, i.key) for i in infos[:4]]
    assert box2.uidnext == uidnext == 6
    assert s2.deliver("alice", MSG).uid == 6
    s2.close()


def test_uids_strictly_ascending_and_never_reused(store):
    box = store.mailbox("alice")
    uids = [store.deliver("alice", MSG).uid for _ in range(3)]
    box.refresh()
    box.expunge(uids)
    assert store.deliver("alice", MSG).uid == 4


def test_lost_uidlist_changes_uidvalidity(store, root):
    store.deliver("alice", MSG)
    old = store.mailbox("alice").uidvalidity
    (root / "alice" / "dovecot-uidlist").unlink()
    s2 = MaildirStore(root, dict(USERS))
    box = s2.mailbox("alice")
    assert box.uidvalidity > old
    assert [m.uid for m in box.messages()] == [1]


def test_concurrent_deliveries_get_unique_uids(store):
    results, errors = [], []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                results.append(store.deliver("bob", MSG + b"%d-%d\r\n" % (n, i)).uid)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == list(range(1, 201))
    box = store.mailbox("bob")
    assert [m.uid for m in box.messages()] == list(range(1, 201))
    s2 = MaildirStore(store.root, dict(USERS))  # and the file agrees
    assert [m.uid for m in s2.mailbox("bob").messages()] == list(range(1, 201))


def test_two_processes_delivering_agree_on_uids(root):
    MaildirStore(root, {"alice": "x"}).mailbox("alice")
    code = f"""
from pathlib import Path
from mailtrace.store.maildir import MaildirStore
s = MaildirStore(Path({str(root)!r}), {{"alice": "x"}}, fsync=False)
print(" ".join(str(s.deliver("alice", b"Subject: p\\r\\n\\r\\nx\\r\\n").uid) for _ in range(50)))
"""
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    uids = []
    for p in procs:
        out, _ = p.communicate(timeout=60)
        uids += [int(u) for u in out.split()]
    assert sorted(uids) == list(range(1, 151))
    box = MaildirStore(root, {"alice": "x"}).mailbox("alice")
    assert [m.uid for m in box.messages()] == list(range(1, 151))


# -- views, refresh, cache ------------------------------------------------------------------

def test_view_is_a_snapshot_until_refresh(store):
    box = store.mailbox("alice")
    store.deliver("alice", MSG)
    assert box.messages() == []
    box.refresh()
    assert len(box.messages()) == 1


def test_refresh_sees_files_added_by_other_programs(store, root):
    box = store.mailbox("alice")
    (root / "alice" / "cur" / "1.other.host:2,S").write_bytes(MSG)
    box.refresh()
    (info,) = box.messages()
    assert info.flags == {"\\Seen"} and not info.recent and info.uid == 1


def test_unchanged_mailbox_is_not_rescanned(store, root):
    for _ in range(3):
        store.deliver("alice", MSG)
    box = store.mailbox("alice")
    old = time.time() - 3600  # directories last changed an hour ago: the listing is trusted
    for sub in ("new", "cur"):
        os.utime(root / "alice" / sub, (old, old))
    box.refresh()
    folder = box._folder
    scans = folder.scans
    for _ in range(20):
        box.refresh()
    assert folder.scans == scans
    (root / "alice" / "new" / "2.other.host").write_bytes(MSG)  # touches new/'s mtime
    box.refresh()
    assert folder.scans == scans + 1 and len(box.messages()) == 4


def test_a_message_in_memory_does_not_outlive_its_file(store, root):
    """The process's copy of a message (store/cache.py) is not served once another process
    (another lab worker, mutt, Dovecot) removed the file; a rename (new flags) keeps it readable."""
    for _ in range(2):
        store.deliver("alice", MSG)
    box = store.mailbox("alice")
    first, second = box.messages()
    assert box.read(first.uid) == box.read(second.uid) == MSG  # both now in memory
    assert box.cached(first.uid) == box.cached(second.uid) == MSG
    os.rename(root / "alice" / "new" / second.key, root / "alice" / "cur" / (second.key + ":2,S"))
    assert box.read(second.uid) == MSG  # found under its new name
    os.unlink(root / "alice" / "new" / first.key)  # removed behind the store's back
    assert box.cached(first.uid) is None
    with pytest.raises(KeyError):
        box.read(first.uid)
    assert box.cached(second.uid) == box.read(second.uid) == MSG


# -- flags ----------------------------------------------------------------------------------

def test_flags_round_trip_in_file_name(store, root):
    info = store.deliver("alice", MSG)
    box = store.mailbox("alice")
    new = box.set_flags(info.uid, ["\\seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted",
                                   "$Label1", "Work", "\\Recent"])
    assert new.flags == {"\\Seen", "\\Flagged", "\\Answered", "\\Draft", "\\Deleted",
                         "$Label1", "Work"}
    (name,) = files_in(root / "alice" / "cur")
    assert name == info.key + ":2,DFRSTab"
    assert (root / "alice" / "dovecot-keywords").read_text() == "0 $Label1\n1 Work\n"
    fresh = MaildirStore(root, dict(USERS)).mailbox("alice")
    assert fresh.get(info.uid).flags == new.flags
    assert fresh.read(info.uid) == MSG
    box.set_flags(info.uid, ["work"])  # keywords match case-insensitively
    assert files_in(root / "alice" / "cur") == [info.key + ":2,b"]
    box.set_flags(info.uid, [])
    assert files_in(root / "alice" / "cur") == [info.key + ":2,"]


def test_unknown_info_letters_are_kept(store, root):
    (root / "alice" / "cur" / "7.x.host:2,PS").write_bytes(MSG)
    box = store.mailbox("alice")
    (info,) = box.messages()
    assert info.flags == {"\\Seen"}
    box.set_flags(info.uid, ["\\Flagged"])
    assert files_in(root / "alice" / "cur") == ["7.x.host:2,FP"]


def test_flag_change_by_another_session_is_followed(store):
    info = store.deliver("alice", MSG)
    a, b = store.mailbox("alice"), store.mailbox("alice")
    a.set_flags(info.uid, ["\\Seen"])
    assert b.read(info.uid) == MSG  # b still knows the old name: it looks again
    b.set_flags(info.uid, ["\\Seen", "\\Answered"])
    a.refresh()
    assert a.get(info.uid).flags == {"\\Seen", "\\Answered"}


def test_mark_seen_by_client_moves_new_to_cur(store, root):
    infos = [store.deliver("alice", MSG) for _ in range(2)]
    box = store.mailbox("alice")
    box.mark_seen_by_client()
    assert files_in(root / "alice" / "new") == []
    assert files_in(root / "alice" / "cur") == sorted(i.key + ":2," for i in infos)
    box.refresh()
    assert not any(m.recent for m in box.messages())


def test_mark_seen_by_client_only_the_given_uids(store, root):
    first = store.deliver("alice", MSG)
    box = store.mailbox("alice")
    late = store.deliver("alice", MSG)  # delivered after this session looked
    box.mark_seen_by_client([first.uid, late.uid])  # late is not in the view: untouched
    assert files_in(root / "alice" / "new") == [late.key]
    assert store.mailbox("alice").get(late.uid).recent


# -- append, expunge, copy ------------------------------------------------------------------

def test_append_with_flags_and_internaldate(store):
    box = store.mailbox("alice")
    when = 1_000_000_000.0
    info = box.append(MSG, flags=["\\Seen"], internaldate=when)
    # RFC 3501 §6.3.11: "In either case, the Recent flag is also set." (flags or not)
    assert info.flags == {"\\Seen"} and info.internaldate == when and info.recent
    box.refresh()
    assert box.get(info.uid).internaldate == when
    assert box.read(info.uid) == MSG


def test_expunge_removes_files_and_reports(store, root):
    infos = [store.deliver("alice", MSG) for _ in range(3)]
    box = store.mailbox("alice")
    assert box.expunge([infos[0].uid, infos[2].uid, 99]) == [infos[0].uid, infos[2].uid]
    assert [m.uid for m in box.messages()] == [infos[1].uid]
    assert files_in(root / "alice" / "new") == [infos[1].key]
    other = store.mailbox("alice")
    assert [m.uid for m in other.messages()] == [infos[1].uid]
    with pytest.raises(KeyError):
        box.read(infos[0].uid)


def test_copy_keeps_content_flags_and_date(store):
    store.create_mailbox("alice", "Archive")
    info = store.deliver("alice", MSG)
    src = store.mailbox("alice")
    src.set_flags(info.uid, ["\\Seen", "Important"])
    dest = store.mailbox("alice", "Archive")
    assert src.copy([info.uid, 42], dest) == [(info.uid, 1)]
    dest.refresh()
    (copied,) = dest.messages()
    assert copied.flags == {"\\Seen", "Important"}
    assert copied.internaldate == info.internaldate and copied.size == info.size
    assert dest.read(copied.uid) == MSG
    src.expunge([info.uid])  # the copy is independent of the original
    assert dest.read(copied.uid) == MSG


# -- folders, names, subscriptions ----------------------------------------------------------

def test_folders_create_list_rename_delete(store, root):
    store.create_mailbox("alice", "Work")
    store.create_mailbox("alice", "Work.Projects")
    assert (root / "alice" / ".Work.Projects" / "maildirfolder").exists()
    with pytest.raises(MailboxExists):
        store.create_mailbox("alice", "Work")
    with pytest.raises(MailboxExists):
        store.create_mailbox("alice", "inbox")
    assert store.list_mailboxes("alice") == ["INBOX", "Work", "Work.Projects"]
    store.deliver("alice", MSG, mailbox="Work.Projects")
    store.rename_mailbox("alice", "Work", "Job")
    assert store.list_mailboxes("alice") == ["INBOX", "Job", "Job.Projects"]
    assert len(store.mailbox("alice", "Job.Projects").messages()) == 1
    with pytest.raises(MailboxNotFound):
        store.mailbox("alice", "Work")
    store.delete_mailbox("alice", "Job.Projects")
    assert store.list_mailboxes("alice") == ["INBOX", "Job"]
    with pytest.raises(MailboxNotFound):
        store.delete_mailbox("alice", "Job.Projects")
    with pytest.raises(InvalidMailboxName):
        store.delete_mailbox("alice", "INBOX")
    assert files_in(root / "alice" / "tmp") == []


def test_rename_inbox_moves_its_messages(store):
    store.deliver("alice", MSG)
    store.rename_mailbox("alice", "INBOX", "Old")
    assert store.mailbox("alice").messages() == []
    (info,) = store.mailbox("alice", "Old").messages()
    assert store.mailbox("alice", "Old").read(info.uid) == MSG


def test_recreated_mailbox_gets_new_uidvalidity(store):
    store.create_mailbox("alice", "Box")
    first = store.mailbox("alice", "Box").uidvalidity
    store.delete_mailbox("alice", "Box")
    store.create_mailbox("alice", "Box")
    assert store.mailbox("alice", "Box").uidvalidity > first


def test_inbox_is_case_insensitive(store):
    store.deliver("alice", MSG, mailbox="inbox")
    for name in ("INBOX", "Inbox", "iNbOx"):
        box = store.mailbox("alice", name)
        assert box.name == INBOX and len(box.messages()) == 1


BAD_NAMES = ["../../etc", "/etc", "a/../../b", "a\x00b", "~root", "~", "", ".", "..", "a..b",
             ".hidden", "trailing.", "a\\b", "*", "a%", "tab\there", "nl\nx", "x" * 201,
             "del\x7f"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_mailbox_names_never_escape(store, root, name):
    for op in (lambda: store.create_mailbox("alice", name),
               lambda: store.mailbox("alice", name),
               lambda: store.deliver("alice", MSG, mailbox=name),
               lambda: store.delete_mailbox("alice", name),
               lambda: store.rename_mailbox("alice", name, "X"),
               lambda: store.rename_mailbox("alice", INBOX, name),
               lambda: store.subscribe("alice", name),
               lambda: store.watch("alice", name, lambda: None)):
        with pytest.raises(InvalidMailboxName):
            op()
    assert sorted(os.listdir(root)) == ["alice", "bob"]


@pytest.mark.parametrize("user", ["../alice", "/etc", "a/b", ".", "..", "", "a\x00", "~x",
                                  "x" * 65, "-rf", "al ice"])
def test_bad_user_names(store, user):
    assert not store.has_user(user)
    assert not store.check_password(user, "x")
    with pytest.raises(InvalidMailboxName):
        store.mailbox(user)
    with pytest.raises(InvalidMailboxName):
        store.deliver(user, MSG)
    with pytest.raises(InvalidMailboxName):
        store.lock_maildrop(user)


def test_users_and_passwords(store):
    assert store.has_user("alice") and not store.has_user("mallory")
    assert store.check_password("bob", 'b:o"b')
    assert not store.check_password("bob", "b")
    assert not store.check_password("mallory", "")
    assert store.password("alice") == "alice pw" and store.password("mallory") is None
    store.users["carol"] = "c"  # users added to the shared dict later are served
    assert store.deliver("carol", MSG).uid == 1


def test_non_ascii_and_space_names_are_allowed(store):
    for name in ("Sent Items", "&AMk-t&AOk-", "Ñu"):
        store.create_mailbox("alice", name)
    assert store.list_mailboxes("alice") == ["INBOX", "&AMk-t&AOk-", "Sent Items", "Ñu"]


def test_subscriptions(store, root):
    assert store.subscriptions("alice") == []
    store.subscribe("alice", "Work.Sub")
    store.subscribe("alice", "inbox")
    store.subscribe("alice", "Work.Sub")
    assert store.subscriptions("alice") == ["Work.Sub", "INBOX"]
    assert (root / "alice" / "subscriptions").read_text() == "V\t2\n\nWork\tSub\nINBOX\n"
    store.unsubscribe("alice", "Work.Sub")
    assert store.subscriptions("alice") == ["INBOX"]
    with pytest.raises(MailboxNotFound):
        store.unsubscribe("alice", "Work.Sub")


# -- POP3 maildrop lock ---------------------------------------------------------------------

def test_maildrop_lock_is_exclusive(store):
    lock = store.lock_maildrop("alice")
    assert lock is not None
    assert store.lock_maildrop("alice") is None
    other = store.lock_maildrop("bob")
    assert other is not None
    lock.release()
    lock.release()  # idempotent
    with store.lock_maildrop("alice") as again:
        assert again is not None and store.lock_maildrop("alice") is None
    assert store.lock_maildrop("alice") is not None


def test_maildrop_lock_across_processes(store, root):
    code = f"""
import sys
from pathlib import Path
from mailtrace.store.maildir import MaildirStore
lock = MaildirStore(Path({str(root)!r}), {{"alice": "x"}}).lock_maildrop("alice")
print("locked" if lock else "busy", flush=True)
sys.stdin.readline()
"""
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "locked"
        assert store.lock_maildrop("alice") is None
    finally:
        p.communicate("\n", timeout=30)
    lock = store.lock_maildrop("alice")
    assert lock is not None
    lock.release()


# -- watch ----------------------------------------------------------------------------------

def test_watch_callbacks(store, root):
    calls: list[str] = []
    unwatch = store.watch("alice", "inbox", lambda: calls.append("inbox"))
    store.watch("bob", "INBOX", lambda: calls.append("bob"))
    info = store.deliver("alice", MSG)
    assert calls == ["inbox"]
    box = store.mailbox("alice")
    box.set_flags(info.uid, ["\\Seen"])
    box.append(MSG)
    box.expunge([info.uid])
    assert calls == ["inbox"] * 4
    store.create_mailbox("alice", "Other")
    store.watch("alice", "Other", lambda: calls.append("other"))
    box.refresh()
    box.copy([m.uid for m in box.messages()], store.mailbox("alice", "Other"))
    assert calls[-1] == "other"
    unwatch()
    unwatch()
    store.deliver("alice", MSG)
    assert calls.count("inbox") == 4


def test_watch_callback_errors_do_not_break_delivery(store):
    def boom() -> None:
        raise RuntimeError("watcher bug")

    store.watch("alice", "INBOX", boom)
    assert store.deliver("alice", MSG).uid == 1


def test_watch_notices_other_programs(store, root):
    fired = threading.Event()
    store.watch("alice", "INBOX", fired.set)
    # Another program drops messages until the poller has noticed one (its first pass
    # only records the state it finds).
    for n in range(100):
        (root / "alice" / "new" / f"{n}.other.host").write_bytes(MSG)
        if fired.wait(0.2):
            break
    assert fired.is_set()


# -- Dovecot's dot-lock -------------------------------------------------------------------

def test_waits_for_a_live_dovecot_dotlock(store, root):
    store.mailbox("alice")
    lock = root / "alice" / "dovecot-uidlist.lock"
    lock.write_text(f"{os.getpid()}:{os.uname().nodename}")  # a live holder
    released = threading.Event()

    def release() -> None:
        time.sleep(0.3)
        released.set()
        lock.unlink()

    t = threading.Thread(target=release)
    t.start()
    store.deliver("alice", MSG)
    assert released.is_set()  # the delivery waited for Dovecot's lock
    t.join()
    assert not lock.exists()


def test_breaks_a_stale_dovecot_dotlock(store, root):
    store.mailbox("alice")
    lock = root / "alice" / "dovecot-uidlist.lock"
    lock.write_text(f"999999999:{os.uname().nodename}")  # its process is gone
    assert store.deliver("alice", MSG).uid == 1
    assert not lock.exists()


# -- robustness ----------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from mailtrace.store.names import canonical_mailbox, folder_dirname, validate_user  # noqa: E402

NAME_ALPHABET = st.sampled_from(list("aZ.~/\\\x00\n\t *%&-é") + [".."])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), st.lists(NAME_ALPHABET, max_size=12).map("".join)))
def test_any_mailbox_name_maps_inside_the_user_directory(name):
    user_dir = Path("/store/alice")
    try:
        canon = canonical_mailbox(name)
    except InvalidMailboxName:
        return
    path = user_dir / folder_dirname(canon)
    # One plain directory entry under the user's directory, never a path trick.
    assert path == user_dir or (path.parent == user_dir and path.name not in (".", ".."))
    assert "/" not in folder_dirname(canon) and "\x00" not in canon


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_user_name_is_one_safe_directory(user):
    try:
        validate_user(user)
    except InvalidMailboxName:
        return
    assert "/" not in user and user not in (".", "..") and not user.startswith((".", "-"))


@pytest.mark.parametrize("garbage", [b"", b"\x00\xff garbage", b"3 Vxyz N1\n",
                                     b"3 V0 N1\n", b"not a header\n1 :x\n"])
def test_broken_uidlist_is_replaced_with_a_new_uidvalidity(root, garbage):
    s1 = MaildirStore(root, dict(USERS))
    s1.deliver("alice", MSG)
    old = s1.mailbox("alice").uidvalidity
    (root / "alice" / "dovecot-uidlist").write_bytes(garbage)
    s2 = MaildirStore(root, dict(USERS))
    box = s2.mailbox("alice")
    assert box.uidvalidity > old and [m.uid for m in box.messages()] == [1]
    assert box.read(1) == MSG


def test_torn_last_uidlist_line_is_ignored_and_repaired(store, root):
    store.deliver("alice", MSG)
    path = root / "alice" / "dovecot-uidlist"
    with open(path, "ab") as f:
        f.write(b"2 :torn-write-without-newl")  # a writer that died mid-line
    s2 = MaildirStore(root, dict(USERS))
    assert s2.deliver("alice", MSG).uid == 2
    lines = path.read_bytes().splitlines()
    assert all(line.split()[0].isdigit() for line in lines[1:]) and len(lines) == 3


def test_copy_follows_a_file_renamed_by_another_session(store):
    store.create_mailbox("alice", "Dest")
    info = store.deliver("alice", MSG)
    a, b = store.mailbox("alice"), store.mailbox("alice")
    b.set_flags(info.uid, ["\\Seen"])  # renames the file under a's feet
    dest = store.mailbox("alice", "Dest")
    assert a.copy([info.uid, info.uid], dest) == [(info.uid, 1)]
    dest.refresh()
    assert dest.get(1).flags == {"\\Seen"}


def test_sessions_and_deliveries_in_parallel(store):
    """Sessions reading, flagging, expunging and copying while SMTP-like threads deliver:
    nothing but KeyError for messages another session removed, and a consistent end."""
    store.create_mailbox("bob", "Saved")
    errors: list[BaseException] = []
    stop = threading.Event()

    def deliverer() -> None:
        for i in range(40):
            store.deliver("bob", MSG + b"%d\r\n" % i)

    def session(n: int) -> None:
        box = store.mailbox("bob")
        saved = store.mailbox("bob", "Saved")
        while not stop.is_set():
            box.refresh()
            for info in box.messages()[:5]:
                try:
                    assert box.read(info.uid).startswith(b"From:")
                    box.set_flags(info.uid, ["\\Seen", f"kw{n}"])
                    if info.uid % 3 == n:
                        box.copy([info.uid], saved)
                        box.expunge([info.uid])
                except KeyError:
                    pass
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)
                    return

    sessions = [threading.Thread(target=session, args=(n,)) for n in range(3)]
    deliverers = [threading.Thread(target=deliverer) for _ in range(3)]
    for t in sessions + deliverers:
        t.start()
    for t in deliverers:
        t.join()
    stop.set()
    for t in sessions:
        t.join()
    assert errors == []
    box, saved = store.mailbox("bob"), store.mailbox("bob", "Saved")
    fresh = MaildirStore(store.root, dict(USERS))
    assert [(m.uid, m.flags) for m in fresh.mailbox("bob").messages()] == \
        [(m.uid, m.flags) for m in box.messages()]
    assert len(box.messages()) + len(saved.messages()) >= 120  # expunged only once copied
    uids = [m.uid for m in box.messages()]
    assert uids == sorted(set(uids))


def test_inbox_is_remade_when_its_maildir_is_removed(store, root):
    store.deliver("alice", MSG)
    old = store.mailbox("alice").uidvalidity
    import shutil

    shutil.rmtree(root / "alice")
    box = store.mailbox("alice")
    assert box.messages() == [] and box.uidvalidity > old
    shutil.rmtree(root / "alice")
    info = store.deliver("alice", MSG)
    assert store.mailbox("alice").read(info.uid) == MSG


def test_modseqs_appended_lines_read_back_as_written(tmp_path):
    """Deliveries and flag changes append to mailtrace-modseq (no rewrite of the whole file per
    delivery); another reader sees the same mod-sequences and HIGHESTMODSEQ, a line cut short
    by a crash is not read, and the file is rewritten whole once the appended lines outnumber
    the messages."""
    from mailtrace.store import modseq as ms

    writer = ms.ModSeqs(tmp_path)
    writer.load(7)
    writer.bump([1, 2, 3])
    writer.bump([2])  # a flag change: uid 2 gets a later mod-sequence
    writer.bump([4])
    size = (tmp_path / ms.MODSEQ_NAME).stat().st_size

    def reread() -> ms.ModSeqs:
        reader = ms.ModSeqs(tmp_path)
        reader.load(7)
        return reader

    reader = reread()
    assert reader.of == writer.of == {1: 2, 2: 3, 3: 2, 4: 4}
    assert reader.highest == writer.highest == 4
    with open(tmp_path / ms.MODSEQ_NAME, "a") as f:
        f.write("4 9")  # a crash in the middle of an append: no line end
    assert reread().of[4] == 4 and reread().highest == 4
    writer.forget([3])  # an expunge writes the file whole
    text = (tmp_path / ms.MODSEQ_NAME).read_text()
    assert text.startswith("V7 H5 ") and "4 9" not in text and "x3 5\n" in text
    assert reread().vanished == {3: 5} and reread().highest == 5
    for _ in range(ms.MIN_APPENDED):  # uid 1 changed again and again: one appended line each
        writer.bump([1])
    lines = (tmp_path / ms.MODSEQ_NAME).read_text().count("\n")
    assert lines > 1 + len(writer.of) + len(writer.vanished)
    writer.bump([1])  # one more than MIN_APPENDED: the file is written whole again
    assert (tmp_path / ms.MODSEQ_NAME).read_text().count("\n") == 1 + len(writer.of) + len(writer.vanished)
    assert reread().of == writer.of and reread().highest == writer.highest and size > 0


def test_the_message_cache_stays_consistent_under_threads():
    """Lookups take no lock (store/cache.py): with puts evicting and discards under way in other
    threads, a lookup gives the key's own bytes or None, and the budget's accounting holds."""
    from mailtrace.store.cache import WireCache

    cache = WireCache(budget=64 * 100, max_item=1000)
    value = {k: bytes([65 + k % 26]) * (50 + k % 50) for k in range(400)}
    wrong: list = []

    def work(seed: int) -> None:
        for n in range(20000):
            k = (n * 7 + seed * 13) % 400
            if n % 3 == 0:
                cache.put(k, value[k])
            elif n % 11 == 0:
                cache.discard(k)
            else:
                got = cache.get(k)
                if got is not None and got != value[k]:
                    wrong.append(k)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert cache._size == sum(len(v) for v in cache._items.values()) <= 64 * 100
