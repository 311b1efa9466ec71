"""Haven's Python bindings against the real library and a real haven-server.

Run by scripts/test-bindings, which puts the generated haven_ffi.py next to the built library on
PYTHONPATH and sets HAVEN_SERVER_BIN. Standard library only (unittest).
"""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import haven_ffi as hf

PASSWORD = "correct horse battery staple"
# A port nothing listens on: "offline".
OFFLINE_URL = "http://127.0.0.1:9"


def run(coro):
    return asyncio.run(coro)


def native_thread_name():
    """The OS thread's name: library threads are not Python threads (Python calls them Dummy-N)."""
    try:
        with open("/proc/self/task/%d/comm" % threading.get_native_id()) as comm:
            return comm.read().strip()
    except OSError:
        return threading.current_thread().name


class TestKeyStore(hf.KeyStore):
    """A stand-in for Android Keystore / iOS Keychain: XOR with a per-store pad. Real apps wrap
    with a hardware-backed AES key; the library only needs wrap/unwrap/delete to be inverse."""

    def __init__(self):
        self.pad = os.urandom(32)
        self.deleted = False
        self.calls = []

    def wrap(self, data_key):
        self.calls.append(("wrap", native_thread_name()))
        if self.deleted:
            self.pad, self.deleted = os.urandom(32), False
        return b"ts1" + bytes(a ^ b for a, b in zip(data_key, self.pad))

    def unwrap(self, wrapped):
        self.calls.append(("unwrap", native_thread_name()))
        if self.deleted or not wrapped.startswith(b"ts1"):
            raise hf.PlatformKeyError.KeyLost("the test key was deleted")
        return bytes(a ^ b for a, b in zip(wrapped[3:], self.pad))

    def delete(self):
        self.calls.append(("delete", native_thread_name()))
        self.deleted = True


class ThrowingKeyStore(hf.KeyStore):
    """A key store whose platform calls blow up with an exception the bindings do not know."""

    def wrap(self, data_key):
        raise RuntimeError("the platform key store exploded")

    def unwrap(self, wrapped):
        raise RuntimeError("the platform key store exploded")

    def delete(self):
        raise RuntimeError("the platform key store exploded")


class RecordingListener(hf.ChangeListener):
    def __init__(self, explode=False):
        self.changes = []
        self.statuses = []
        self.threads = set()
        self.explode = explode
        self.event = threading.Event()

    def on_change(self, changes):
        self.threads.add(native_thread_name())
        self.changes.append(changes)
        self.event.set()
        if self.explode:
            raise ValueError("a listener bug")

    def on_sync_status(self, status):
        self.statuses.append(status)
        if self.explode:
            raise hf.HavenFfiError.Internal("a listener bug")


class RecordingLogger(hf.Logger):
    def __init__(self):
        self.lines = []

    def log(self, level, message):
        self.lines.append((level, message))


class Server:
    """The real haven-server binary on a loopback port, stopped by PID."""

    def __init__(self):
        binary = os.environ.get("HAVEN_SERVER_BIN")
        if not binary:
            raise RuntimeError("HAVEN_SERVER_BIN is not set (run scripts/test-bindings)")
        self.data = tempfile.mkdtemp(prefix="haven-py-server-")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--data", self.data],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("haven-server listening on "):
                self.url = line.split(" on ", 1)[1].strip()
                break
        if self.url is None:
            self.stop()
            raise RuntimeError("haven-server did not start")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        try:
            for _ in self.proc.stdout:
                pass
        except (OSError, ValueError):
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        shutil.rmtree(self.data, ignore_errors=True)


SERVER = None


def setUpModule():
    global SERVER
    SERVER = Server()


def tearDownModule():
    if SERVER is not None:
        SERVER.stop()


_counter = [0]


def unique(name):
    _counter[0] += 1
    return "%s-%d-%d" % (name, os.getpid(), _counter[0])


def utf16_len(text):
    return len(text.encode("utf-16-le")) // 2


class HavenTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="haven-py-")
        self.clients = []

    def tearDown(self):
        for client in self.clients:
            if not client.is_closed():
                try:
                    run(client.shutdown())
                except hf.HavenFfiError.Closed:
                    pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def open(self, name, key_store=None, url=None, **config):
        key_store = key_store or TestKeyStore()
        client = run(hf.HavenClient.open(
            hf.ClientConfig(data_dir=os.path.join(self.tmp, name),
                            server_url=url or SERVER.url, **config),
            key_store))
        self.clients.append(client)
        return client

    def test_bundled_content_offline_without_an_account(self):
        client = self.open("offline", url=OFFLINE_URL)
        articles = run(client.articles())
        self.assertTrue(any(a.slug == "him-though" for a in articles))
        article = run(client.article("him-though"))
        self.assertEqual(article.id, next(a.id for a in articles if a.slug == "him-though"))
        self.assertTrue(article.body)
        lists = run(client.resources("us"))
        self.assertEqual([l.region for l in lists], ["US"])
        rainn = [r for r in lists[0].resources if "RAINN" in r.name][0]
        self.assertEqual(rainn.phone, "+18006564673")
        self.assertTrue(rainn.is_24_7)
        self.assertEqual(client.status().state, hf.SyncState.LOGGED_OUT)
        # Offline: a sync fails with a typed error, and nothing else breaks.
        with self.assertRaises(hf.HavenFfiError.Network):
            run(client.sync_once(timeout_ms=10_000))
        self.assertEqual(client.status().state, hf.SyncState.LOGGED_OUT)

    def test_journal_create_edit_emoji_splice_list_history(self):
        client = self.open("journal")
        registration = run(client.register(unique("py-journal"), PASSWORD, "python"))
        self.assertEqual(len(registration.recovery_words), 24)
        self.assertEqual(len(registration.challenge), 3)
        entry = run(client.journal_create("Rain", "I felt 🌧 today"))
        self.assertEqual(len(entry), 32)
        # UTF-16 positions: "I felt " is 7 units, the emoji 2, so " today" starts at 9.
        run(client.journal_splice_body(entry, 9, 0, " and 💙"))
        self.assertEqual(run(client.journal_get(entry)).body, "I felt 🌧 and 💙 today")
        # Replace the emoji itself (2 units).
        run(client.journal_splice_body(entry, 7, 2, "☀"))
        self.assertEqual(run(client.journal_get(entry)).body, "I felt ☀ and 💙 today")
        # A position inside a surrogate pair is refused, typed.
        body = run(client.journal_get(entry)).body
        inside = body.index("💙")
        inside_units = utf16_len(body[:inside]) + 1
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(client.journal_splice_body(entry, inside_units, 0, "x"))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(client.journal_splice_body(entry, utf16_len(body) + 1, 0, "x"))
        run(client.journal_append_body(entry, " 🌈"))
        run(client.journal_set_title(entry, "Rain, then sun"))
        run(client.journal_set_mood(entry, "hopeful"))
        run(client.journal_set_tags(entry, ["weather", "good-day"]))
        second = run(client.journal_create("Second", "short"))
        listed = run(client.journal_list())
        self.assertEqual({e.id for e in listed}, {entry, second})
        got = run(client.journal_get(entry))
        self.assertEqual(got.title, "Rain, then sun")
        self.assertEqual(got.body, "I felt ☀ and 💙 today 🌈")
        self.assertEqual(got.mood, "hopeful")
        self.assertEqual(got.tags, ["weather", "good-day"])
        history = run(client.journal_history(entry))
        self.assertGreaterEqual(len(history), 6)
        self.assertTrue(all(len(change.hash) == 64 for change in history))
        run(client.journal_delete(second))
        self.assertEqual([e.id for e in run(client.journal_list())], [entry])
        self.assertEqual(client.status().state, hf.SyncState.PENDING)
        report = run(client.sync_once(timeout_ms=30_000))
        self.assertGreater(report.pushed, 0)
        self.assertEqual(client.status().state, hf.SyncState.SYNCED)
        # Export (plain text) writes the journal out.
        out = os.path.join(self.tmp, "export")
        exported = run(client.export_journal(hf.ExportFormat.JSON, out))
        self.assertEqual(exported.entries, 1)
        with open(exported.files[0], encoding="utf-8") as exported_file:
            self.assertIn("🌈", exported_file.read())
        self.assertIn("plain text", hf.plaintext_export_warning())

    def test_two_clients_sync_through_the_server_and_the_listener_hears(self):
        username = unique("py-sync")
        a = self.open("a")
        run(a.register(username, PASSWORD, "phone"))
        first = run(a.journal_create("From A", "written on A 🌧"))
        run(a.sync_once(timeout_ms=30_000))

        b = self.open("b")
        listener = RecordingListener()
        b.set_change_listener(listener)
        run(b.login(username, PASSWORD, "tablet"))
        report = run(b.sync_once(timeout_ms=30_000))
        self.assertIn(first, report.changed)
        self.assertEqual(run(b.journal_get(first)).body, "written on A 🌧")
        # The listener was called before sync_once returned, on a library thread.
        self.assertTrue(listener.changes)
        self.assertTrue(any(first in c.changed and c.journal_changed for c in listener.changes))
        self.assertTrue(all(t.startswith("haven-worker") for t in listener.threads),
                        listener.threads)
        self.assertEqual(listener.statuses[-1].state, hf.SyncState.SYNCED)

        # A sees B join, under the name B gave itself (the server never sees names).
        devices = run(a.devices())
        self.assertEqual([(d.name, d.current) for d in devices], [("phone", True), ("tablet", False)])
        self.assertTrue(all(d.in_bundle and not d.revoked for d in devices))

        # Concurrent edits merge; a deletion reaches the other device.
        run(a.journal_splice_body(first, 0, 0, "Monday: "))
        run(b.journal_append_body(first, " and on B"))
        second = run(b.journal_create("From B", "B's entry"))
        run(a.sync_once(timeout_ms=30_000))
        run(b.sync_once(timeout_ms=30_000))
        run(a.sync_once(timeout_ms=30_000))
        self.assertEqual(run(a.journal_get(first)).body, "Monday: written on A 🌧 and on B")
        self.assertEqual(run(a.journal_get(first)), run(b.journal_get(first)))
        listener.changes.clear()
        run(a.journal_delete(second))
        run(a.sync_once(timeout_ms=30_000))
        run(b.sync_once(timeout_ms=30_000))
        self.assertTrue(any(second in c.deleted for c in listener.changes))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(b.journal_get(second))

    def test_revoke_password_change_recovery_and_linking(self):
        new, newer, newest = ("second long passphrase", "third long passphrase",
                              "fourth long passphrase")
        username = unique("py-safety")
        phone = self.open("phone")
        registration = run(phone.register(username, PASSWORD, "phone"))
        run(phone.journal_create("kept", "kept through it all"))
        run(phone.sync_once(timeout_ms=30_000))
        taken = self.open("taken")
        run(taken.login(username, PASSWORD, "old phone"))
        run(taken.sync_once(timeout_ms=30_000))

        # Revoke the taken phone: a wrong password changes nothing; the right one cuts it off.
        target = [d for d in run(phone.devices()) if d.name == "old phone"][0]
        with self.assertRaises(hf.HavenFfiError.WrongCredentials):
            run(phone.revoke_device(target.device_id, "not the password at all", new))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(phone.revoke_device("not-an-id", PASSWORD, new))
        run(phone.revoke_device(target.device_id, PASSWORD, new))
        after = run(phone.journal_create("after", "written after"))
        run(phone.sync_once(timeout_ms=30_000))
        with self.assertRaises(hf.HavenFfiError.Revoked):
            run(taken.sync_once(timeout_ms=30_000))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(taken.journal_get(after))
        self.assertTrue([d for d in run(phone.devices()) if d.name == "old phone"][0].revoked)

        # Change the password; then recover on a fresh profile with the phrase.
        with self.assertRaises(hf.HavenFfiError.WrongCredentials):
            run(phone.change_password(PASSWORD, newer))
        run(phone.change_password(new, newer))
        fresh = self.open("fresh")
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(fresh.recover(username, ["zoo"] * 24, newest, "new phone"))
        run(fresh.recover(username, registration.recovery_words, newest, "new phone"))
        run(fresh.sync_once(timeout_ms=30_000))
        self.assertEqual(sorted(e.title for e in run(fresh.journal_list())), ["after", "kept"])

        # Link a tablet from the recovered profile: same verification code on both sides.
        tablet = self.open("tablet")
        offer = run(tablet.link_start())
        self.assertEqual(fresh.link_verification_code(offer.code), offer.verification_code)

        async def wait_and_approve():
            return await asyncio.gather(tablet.link_wait(offer.code, 30_000),
                                        fresh.link_approve(offer.code, "tablet"))

        joined, _ = run(wait_and_approve())
        self.assertEqual(joined, username)
        run(tablet.sync_once(timeout_ms=30_000))
        self.assertEqual(len(run(tablet.journal_list())), 2)

    def test_live_sync_pause_resume_and_a_listener_that_throws(self):
        username = unique("py-live")
        a = self.open("a")
        run(a.register(username, PASSWORD, "phone"))
        run(a.sync_once(timeout_ms=30_000))
        b = self.open("b")
        run(b.login(username, PASSWORD, "tablet"))
        logger = RecordingLogger()
        hf.set_logger(logger)
        try:
            listener = RecordingListener(explode=True)
            b.set_change_listener(listener)
            b.start_live()
            b.start_live()  # a no-op
            self.assertTrue(b.is_live())
            entry = run(a.journal_create("Live", "pushed while B listens"))
            # A pushes until B's live sync delivers it. More than one push is needed only when the
            # first lands while B's socket is being set up: haven-server reads the head before it
            # subscribes the new socket, so an append in between is not announced to it (a server
            # race, reported); the next append is.
            for attempt in range(6):
                if attempt:
                    run(a.journal_append_body(entry, "."))
                run(a.sync_once(timeout_ms=30_000))
                deadline = time.time() + 5
                while time.time() < deadline and not any(
                        entry in c.changed and c.live for c in listener.changes):
                    listener.event.wait(0.1)
                    listener.event.clear()
                if any(entry in c.changed and c.live for c in listener.changes):
                    break
            self.assertTrue(any(entry in c.changed and c.live for c in listener.changes))
            # The listener threw every time; B is fine and says so in the log.
            self.assertEqual(run(b.journal_get(entry)).title, "Live")
            # Logged right after the call that threw, on a library thread: wait for it (bounded).
            logged = time.time() + 5
            while time.time() < logged and not any("ChangeListener" in line for _, line in logger.lines):
                time.sleep(0.05)
            self.assertTrue(any("ChangeListener" in line for _, line in logger.lines),
                            logger.lines)
            self.assertFalse(any("pushed while" in line for _, line in logger.lines))
            b.pause_live()
            self.assertFalse(b.is_live())
            b.resume_live()
            self.assertTrue(b.is_live())
            b.stop_live()
            self.assertFalse(b.is_live())
            b.resume_live()  # stopped, not paused: stays off
            self.assertFalse(b.is_live())
        finally:
            hf.set_logger(None)

    def test_backup_wipe_restore_on_a_new_profile_and_purge_history(self):
        passphrase = "seven quiet lanterns over the bay"
        a = self.open("backup-a")
        run(a.register(unique("py-backup"), PASSWORD, "phone"))
        entry = run(a.journal_create("Kept", "written before the wipe 🌧"))
        run(a.journal_append_body(entry, " and after"))
        run(a.journal_set_tags(entry, ["kept"]))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(a.backup_journal("short"))
        backup = run(a.backup_journal(passphrase))
        self.assertEqual(backup.entries, 1)
        self.assertTrue(backup.data.startswith(b"HAVENBAK"))
        self.assertNotIn(b"written before", backup.data)
        self.assertIn("encrypted", hf.backup_notice())
        expected = run(a.journal_get(entry))
        revisions = len(run(a.journal_history(entry)))
        # Never synced: after the wipe, the backup is the only copy.
        run(a.wipe())

        b = self.open("backup-b")
        run(b.register(unique("py-restored"), PASSWORD, "phone"))
        with self.assertRaises(hf.HavenFfiError.Backup):
            run(b.restore_backup(backup.data, "not the passphrase at all"))
        tampered = bytearray(backup.data)
        tampered[-1] ^= 1
        with self.assertRaises(hf.HavenFfiError.Backup):
            run(b.restore_backup(bytes(tampered), passphrase))
        self.assertEqual(run(b.journal_list()), [])
        report = run(b.restore_backup(backup.data, passphrase))
        self.assertEqual(report, hf.RestoreReport(added=1, merged=0, unchanged=0, deleted=0,
                                                  kept_deleted=0))
        self.assertEqual(run(b.journal_get(entry)), expected)
        self.assertEqual(len(run(b.journal_history(entry))), revisions)
        self.assertEqual(run(b.restore_backup(backup.data, passphrase)).unchanged, 1)

        copy = run(b.journal_purge_history(entry))
        self.assertNotEqual(copy, entry)
        self.assertEqual(len(run(b.journal_history(copy))), 1)
        got = run(b.journal_get(copy))
        self.assertEqual((got.title, got.body, got.mood, got.tags, got.created_at),
                         (expected.title, expected.body, expected.mood, expected.tags,
                          expected.created_at))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(b.journal_get(entry))
        self.assertEqual([e.id for e in run(b.journal_list())], [copy])
        run(b.sync_once(timeout_ms=30_000))

    def test_wrong_password_and_bad_ids_are_typed_errors(self):
        username = unique("py-auth")
        a = self.open("a")
        run(a.register(username, PASSWORD, "phone"))
        b = self.open("b")
        with self.assertRaises(hf.HavenFfiError.WrongCredentials):
            run(b.login(username, "not the password at all", "tablet"))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(a.journal_get("not-an-id"))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(a.journal_get("00" * 16))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(a.journal_set_title("ab" * 16, "x"))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(a.article("no-such-article"))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(a.register(unique("py-again"), PASSWORD, "phone"))

    def test_a_key_store_that_throws_is_a_typed_error(self):
        with self.assertRaises(hf.HavenFfiError.KeyStore) as caught:
            self.open("throwing", key_store=ThrowingKeyStore())
        self.assertIn("exploded", str(caught.exception))
        # A key store that lost its key: KeyLost, the app offers a wipe.
        keys = TestKeyStore()
        client = self.open("lost", key_store=keys)
        run(client.shutdown())
        keys.deleted = True
        with self.assertRaises(hf.HavenFfiError.KeyLost):
            self.open("lost", key_store=keys)
        # Key store calls come on library threads, not the caller's.
        self.assertTrue(all(t.startswith("haven-worker") for _, t in keys.calls), keys.calls)

    def test_an_unwritable_data_directory_is_a_typed_error(self):
        # Under a regular file, so it cannot be created even by root.
        blocker = os.path.join(self.tmp, "a-file")
        open(blocker, "w").close()
        with self.assertRaises(hf.HavenFfiError.Storage):
            run(hf.HavenClient.open(
                hf.ClientConfig(data_dir=os.path.join(blocker, "profile"), server_url=SERVER.url),
                TestKeyStore()))
        if os.geteuid() != 0:
            locked = os.path.join(self.tmp, "read-only")
            os.mkdir(locked, 0o500)
            with self.assertRaises(hf.HavenFfiError.Storage):
                run(hf.HavenClient.open(
                    hf.ClientConfig(data_dir=os.path.join(locked, "p"), server_url=SERVER.url),
                    TestKeyStore()))
        # The same profile open twice.
        self.open("twice")
        with self.assertRaises(hf.HavenFfiError.Storage):
            self.open("twice")
        # A bad server URL is input the app can fix.
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            self.open("bad-url", url="ftp://example.invalid")

    def test_a_closed_client_is_a_typed_error(self):
        keys = TestKeyStore()
        client = self.open("closed", key_store=keys)
        run(client.register(unique("py-closed"), PASSWORD, "phone"))
        entry = run(client.journal_create("t", "b"))
        run(client.shutdown())
        self.assertTrue(client.is_closed())
        with self.assertRaises(hf.HavenFfiError.Closed):
            run(client.journal_get(entry))
        with self.assertRaises(hf.HavenFfiError.Closed):
            client.status()
        with self.assertRaises(hf.HavenFfiError.Closed):
            client.start_live()
        with self.assertRaises(hf.HavenFfiError.Closed):
            run(client.shutdown())
        # Reopening finds the entry (the data key unwraps again).
        again = self.open("closed", key_store=keys)
        self.assertEqual(run(again.journal_get(entry)).body, "b")

    def test_calls_from_several_threads_at_once(self):
        client = self.open("threads")
        run(client.register(unique("py-threads"), PASSWORD, "phone"))
        errors = []

        def worker(n):
            try:
                for i in range(5):
                    entry = run(client.journal_create("t%d-%d" % (n, i), "body 🌧 %d" % i))
                    run(client.journal_append_body(entry, "!"))
                    run(client.journal_list())
                    client.status()
            except Exception as error:  # noqa: BLE001 - report any failure
                errors.append(error)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.assertEqual(errors, [])
        self.assertEqual(len(run(client.journal_list())), 40)

        # Many coroutines on one loop, too.
        async def many():
            return await asyncio.gather(*[client.journal_create("g", str(i)) for i in range(20)])
        self.assertEqual(len(set(run(many()))), 20)

    def test_timeout_and_cancel_against_a_server_that_never_answers(self):
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        try:
            url = "http://127.0.0.1:%d" % silent.getsockname()[1]
            client = self.open("silent", url=url)
            started = time.time()
            with self.assertRaises(hf.HavenFfiError.Timeout):
                run(client.sync_once(timeout_ms=300))
            self.assertLess(time.time() - started, 10)
            self.assertEqual(client.cancel(), 0)
            threading.Timer(0.3, client.cancel).start()
            started = time.time()
            with self.assertRaises(hf.HavenFfiError.Cancelled):
                run(client.sync_once(timeout_ms=60_000))
            self.assertLess(time.time() - started, 10)
            # The client still works after a cancel.
            self.assertTrue(run(client.articles()))
        finally:
            silent.close()

    def test_local_only_journal_device_alerts_and_a_wipe_that_logs_out(self):
        username = unique("py-local")
        a = self.open("local-a")
        with self.assertRaises(hf.HavenFfiError.NotLoggedIn):
            run(a.journal_create("t", "b"))
        run(a.set_local_only(True))
        self.assertTrue(a.is_local_only())
        kept = run(a.journal_create("kept", "written with no account"))
        self.assertEqual(a.status().state, hf.SyncState.LOCAL_ONLY)
        self.assertEqual(a.status().pending, 0)
        # Registering moves the journal into the account.
        run(a.register(username, PASSWORD, "phone"))
        self.assertFalse(a.is_local_only())
        run(a.sync_once(timeout_ms=30_000))
        b = self.open("local-b")
        run(b.login(username, PASSWORD, "tablet"))
        run(b.sync_once(timeout_ms=30_000))
        self.assertEqual(run(b.journal_get(kept)).body, "written with no account")

        # A hears that B joined, and keeps the alert until it is dismissed.
        report = run(a.sync_once(timeout_ms=30_000))
        self.assertEqual([d.name for d in report.devices_joined], ["tablet"])
        self.assertEqual([d.name for d in run(a.device_alerts())], ["tablet"])
        run(a.dismiss_device_alerts())
        self.assertEqual(run(a.device_alerts()), [])

        # B pauses: its new entry stays on B until it resumes.
        run(b.set_local_only(True))
        paused = run(b.journal_create("paused", "only on B for now"))
        run(b.sync_once(timeout_ms=30_000))
        self.assertEqual(b.status().state, hf.SyncState.LOCAL_ONLY)
        run(a.sync_once(timeout_ms=30_000))
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(a.journal_get(paused))
        run(b.set_local_only(False))
        run(b.sync_once(timeout_ms=30_000))
        run(a.sync_once(timeout_ms=30_000))
        self.assertEqual(run(a.journal_get(paused)).title, "paused")

        # Push batching with jitter is a kept setting, bounded.
        self.assertEqual(b.push_jitter_ms(), 0)
        run(b.set_push_jitter_ms(2_000))
        self.assertEqual(b.push_jitter_ms(), 2_000)
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(b.set_push_jitter_ms(600_001))

        # A wipe that logs out first still destroys the key first, then every file.
        report = run(b.wipe(log_out_first=True))
        self.assertTrue(report.keystore_key_deleted and report.dir_removed)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "local-b")))

    def test_an_erasure_wipes_the_other_devices_when_asked(self):
        username = unique("py-erase")
        phone = self.open("erase-phone")
        run(phone.register(username, PASSWORD, "phone"))
        laptop_keys = TestKeyStore()
        laptop = self.open("erase-laptop", key_store=laptop_keys)
        run(laptop.login(username, PASSWORD, "laptop"))
        self.assertFalse(run(phone.wipe_on_erasure()))
        run(phone.set_wipe_on_erasure(True))
        run(phone.sync_once(timeout_ms=30_000))
        run(laptop.sync_once(timeout_ms=30_000))
        self.assertTrue(run(laptop.wipe_on_erasure()))

        run(phone.delete_account(PASSWORD))
        with self.assertRaises(hf.HavenFfiError.Erased):
            run(laptop.sync_once(timeout_ms=30_000))
        # The laptop wipes itself on a task of its own: key first, then every file.
        deadline = time.monotonic() + 10
        while not laptop.is_closed() or os.path.exists(os.path.join(self.tmp, "erase-laptop")):
            self.assertLess(time.monotonic(), deadline, "the laptop was not wiped")
            time.sleep(0.05)
        self.assertTrue(laptop_keys.deleted)
        # The erasing phone keeps its copy.
        self.assertFalse(phone.is_closed())
        run(phone.journal_list())

    def test_wipe_destroys_the_key_first_then_the_files(self):
        keys = TestKeyStore()
        client = self.open("wipe", key_store=keys)
        run(client.register(unique("py-wipe"), PASSWORD, "phone"))
        run(client.journal_create("secret", "CANARY-py-wipe"))
        client.start_live()
        report = run(client.wipe())
        self.assertTrue(report.keystore_key_deleted)
        self.assertTrue(report.data_key_file_removed)
        self.assertTrue(report.dir_removed)
        self.assertTrue(keys.deleted)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "wipe")))
        self.assertTrue(client.is_closed())
        self.assertFalse(client.is_live())
        with self.assertRaises(hf.HavenFfiError.Closed):
            run(client.journal_list())
        # Wiping again is safe and reports nothing left.
        again = run(client.wipe())
        self.assertFalse(again.dir_removed)
        # The free function wipes a profile no client has open.
        other = self.open("other")
        run(other.shutdown())
        self.assertTrue(run(hf.wipe_profile(os.path.join(self.tmp, "other"), TestKeyStore())).dir_removed)

    def test_saved_resources_contacts_and_reading_state(self):
        client = self.open("saved")
        run(client.register(unique("py-saved"), PASSWORD, "phone"))
        rainn = "National Sexual Assault Hotline (RAINN)"
        run(client.save_resource("us-national", rainn))
        contact = run(client.put_contact(None, "Sam", "+15555550100", "neighbour"))
        saved = run(client.saved_resources())
        self.assertEqual([(r.list_slug, r.resource_name) for r in saved.resources],
                         [("us-national", rainn)])
        self.assertEqual([(c.id, c.name, c.note) for c in saved.contacts],
                         [(contact, "Sam", "neighbour")])
        self.assertEqual(run(client.put_contact(contact, "Sam R.", "+15555550100", None)), contact)
        run(client.remove_saved_resource("us-national", rainn))
        saved = run(client.saved_resources())
        self.assertEqual(saved.resources, [])
        self.assertEqual([c.name for c in saved.contacts], ["Sam R."])
        run(client.set_bookmark("him-though", True))
        body = run(client.article("him-though")).body
        # Positions are UTF-16 code units of the body, on a character boundary.
        position = utf16_len(body[: len(body) // 2])
        run(client.set_reading_progress("him-though", 500_000, position))
        state = run(client.reading_state())
        self.assertEqual([b.slug for b in state.bookmarks], ["him-though"])
        self.assertEqual([(p.slug, p.fraction_ppm, p.position) for p in state.progress],
                         [("him-though", 500_000, position)])
        with self.assertRaises(hf.HavenFfiError.NotFound):
            run(client.set_reading_progress("no-such-article", 1, 0))
        with self.assertRaises(hf.HavenFfiError.InvalidInput):
            run(client.set_reading_progress("him-though", 1, utf16_len(body) + 1))

    def test_version_and_device_info(self):
        self.assertRegex(hf.core_version(), r"^\d+\.\d+\.\d+$")
        client = self.open("info")
        info = run(client.device_info())
        self.assertEqual(len(info.device_id), 32)
        self.assertIsNone(info.username)


if __name__ == "__main__":
    unittest.main(verbosity=2)
