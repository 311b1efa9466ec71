// Haven's Kotlin bindings on a plain JVM, against the real library (JNA) and a real haven-server.
//
// Run by scripts/test-bindings: kotlinc compiles the generated bindings with this file; `java`
// runs `HavenTestKt` with -Djna.library.path pointing at the built library and HAVEN_SERVER_BIN
// set. Prints one line per test and `N passed, M failed`; exits non-zero on any failure.

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.net.InetAddress
import java.net.ServerSocket
import java.nio.file.Files
import java.security.SecureRandom
import java.util.Collections
import java.util.concurrent.CountDownLatch
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import kotlin.system.exitProcess
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.haven.core.*

const val PASSWORD = "correct horse battery staple"
const val OFFLINE_URL = "http://127.0.0.1:9"

// ---- a minimal test harness (no JUnit on this machine) --------------------------------------

val failures = mutableListOf<String>()
var passed = 0

fun test(name: String, body: suspend () -> Unit) {
    val started = System.nanoTime()
    try {
        runBlocking { withTimeout(120_000) { body() } }
        passed++
        println("PASS $name (${(System.nanoTime() - started) / 1_000_000} ms)")
    } catch (error: Throwable) {
        failures.add(name)
        println("FAIL $name: $error")
        error.printStackTrace(System.out)
    }
}

fun check(condition: Boolean, message: () -> String = { "check failed" }) {
    if (!condition) throw AssertionError(message())
}

fun <T> checkEq(expected: T, actual: T) {
    if (expected != actual) throw AssertionError("expected <$expected>, got <$actual>")
}

suspend inline fun <reified E : Throwable> assertThrows(crossinline block: suspend () -> Unit): E {
    try {
        block()
    } catch (error: Throwable) {
        if (error is E) return error
        throw AssertionError("expected ${E::class.simpleName}, got $error", error)
    }
    throw AssertionError("expected ${E::class.simpleName}, nothing was thrown")
}

/** The OS thread's name (JNA-attached callback threads keep the native name). */
fun nativeThreadName(): String =
    try { File("/proc/thread-self/comm").readText().trim() } catch (e: Exception) { Thread.currentThread().name }

fun utf16(text: String): UInt = text.length.toUInt()

// ---- the real server --------------------------------------------------------------------------

class Server {
    val data: File = Files.createTempDirectory("haven-kt-server-").toFile()
    val process: Process
    val url: String

    init {
        val binary = System.getenv("HAVEN_SERVER_BIN") ?: error("HAVEN_SERVER_BIN is not set (run scripts/test-bindings)")
        process = ProcessBuilder(binary, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data", data.path)
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start()
        val reader = BufferedReader(InputStreamReader(process.inputStream))
        var found: String? = null
        while (found == null) {
            val line = reader.readLine() ?: break
            if (line.startsWith("haven-server listening on ")) found = line.substringAfter(" on ").trim()
        }
        if (found == null) { stop(); error("haven-server did not start") }
        url = found
        // Keep draining stdout so the server never blocks on a full pipe.
        Thread { try { reader.forEachLine { } } catch (e: Exception) { } }.apply { isDaemon = true }.start()
    }

    fun stop() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly()
            process.waitFor()
        }
        data.deleteRecursively()
    }
}

lateinit var server: Server

// ---- test doubles ------------------------------------------------------------------------------

/** A stand-in for Android Keystore: XOR with a random pad. Real apps wrap with a hardware AES key. */
class TestKeyStore : KeyStore {
    var pad = ByteArray(32).also { SecureRandom().nextBytes(it) }
    @Volatile var deleted = false
    val threads: MutableList<String> = Collections.synchronizedList(mutableListOf())

    override fun wrap(dataKey: ByteArray): ByteArray {
        threads.add(nativeThreadName())
        if (deleted) { pad = ByteArray(32).also { SecureRandom().nextBytes(it) }; deleted = false }
        return byteArrayOf(7) + ByteArray(dataKey.size) { (dataKey[it].toInt() xor pad[it].toInt()).toByte() }
    }

    override fun unwrap(wrapped: ByteArray): ByteArray {
        threads.add(nativeThreadName())
        if (deleted || wrapped.isEmpty() || wrapped[0] != 7.toByte()) throw PlatformKeyException.KeyLost("the test key was deleted")
        return ByteArray(wrapped.size - 1) { (wrapped[it + 1].toInt() xor pad[it].toInt()).toByte() }
    }

    override fun delete() {
        threads.add(nativeThreadName())
        deleted = true
    }
}

/** A key store that fails with an exception the bindings know nothing about. */
class ThrowingKeyStore : KeyStore {
    override fun wrap(dataKey: ByteArray): ByteArray = throw IllegalStateException("the platform key store exploded")
    override fun unwrap(wrapped: ByteArray): ByteArray = throw IllegalStateException("the platform key store exploded")
    override fun delete() = throw IllegalStateException("the platform key store exploded")
}

class RecordingListener(private val explode: Boolean = false) : ChangeListener {
    val changes: MutableList<ChangeSet> = Collections.synchronizedList(mutableListOf())
    val statuses: MutableList<SyncStatus> = Collections.synchronizedList(mutableListOf())
    val threads: MutableSet<String> = Collections.synchronizedSet(mutableSetOf())

    override fun onChange(changes: ChangeSet) {
        threads.add(nativeThreadName())
        this.changes.add(changes)
        if (explode) throw RuntimeException("a listener bug")
    }

    override fun onSyncStatus(status: SyncStatus) {
        statuses.add(status)
        if (explode) throw HavenFfiException.Internal("a listener bug")
    }
}

class RecordingLogger : Logger {
    val lines: MutableList<String> = Collections.synchronizedList(mutableListOf())
    override fun log(level: LogLevel, message: String) { lines.add("$level $message") }
}

// ---- helpers -----------------------------------------------------------------------------------

var counter = 0
fun unique(name: String) = "$name-${ProcessHandle.current().pid()}-${++counter}"

val scratch: File = Files.createTempDirectory("haven-kt-").toFile()
val opened = mutableListOf<HavenClient>()

suspend fun open(name: String, keyStore: KeyStore = TestKeyStore(), url: String = server.url): HavenClient =
    HavenClient.open(ClientConfig(dataDir = File(scratch, name).path, serverUrl = url), keyStore).also { opened.add(it) }

// ---- the tests ---------------------------------------------------------------------------------

fun main() {
    server = Server()
    Runtime.getRuntime().addShutdownHook(Thread { if (server.process.isAlive) server.process.destroyForcibly() })
    try {
        runTests()
    } finally {
        runBlocking { for (client in opened) if (!client.isClosed()) try { client.shutdown() } catch (e: HavenFfiException) { } }
        server.stop()
        scratch.deleteRecursively()
    }
    println("${passed} passed, ${failures.size} failed")
    if (failures.isNotEmpty()) {
        println("failed: ${failures.joinToString()}")
        exitProcess(1)
    }
    exitProcess(0)
}

fun runTests() {
    test("bundled articles and hotlines offline, without an account") {
        val client = open("offline", url = OFFLINE_URL)
        val articles = client.articles()
        check(articles.any { it.slug == "him-though" }) { "no bundled article" }
        val article = client.article("him-though")
        checkEq(articles.first { it.slug == "him-though" }.id, article.id)
        check(article.body.isNotEmpty())
        val lists = client.resources("us")
        checkEq(listOf("US"), lists.map { it.region })
        val rainn = lists[0].resources.first { "RAINN" in it.name }
        checkEq("+18006564673", rainn.phone)
        check(rainn.is247)
        checkEq(SyncState.LOGGED_OUT, client.status().state)
        assertThrows<HavenFfiException.Network> { client.syncOnce(10_000uL) }
    }

    test("journal: create, edit, emoji splice in UTF-16, list, history, export") {
        val client = open("journal")
        val registration = client.register(unique("kt-journal"), PASSWORD, "jvm")
        checkEq(24, registration.recoveryWords.size)
        checkEq(3, registration.challenge.size)
        val entry = client.journalCreate("Rain", "I felt 🌧 today")
        checkEq(32, entry.length)
        // Kotlin indexes in UTF-16, exactly what the API takes.
        val body0 = "I felt 🌧 today"
        client.journalSpliceBody(entry, utf16(body0.substring(0, body0.indexOf(" today"))), 0u, " and 💙")
        checkEq("I felt 🌧 and 💙 today", client.journalGet(entry).body)
        val body1 = client.journalGet(entry).body
        client.journalSpliceBody(entry, body1.indexOf("🌧").toUInt(), "🌧".length.toUInt(), "☀")
        checkEq("I felt ☀ and 💙 today", client.journalGet(entry).body)
        val body2 = client.journalGet(entry).body
        // Between the two UTF-16 halves of 💙: refused, typed.
        assertThrows<HavenFfiException.InvalidInput> { client.journalSpliceBody(entry, (body2.indexOf("💙") + 1).toUInt(), 0u, "x") }
        assertThrows<HavenFfiException.InvalidInput> { client.journalSpliceBody(entry, (body2.length + 1).toUInt(), 0u, "x") }
        client.journalAppendBody(entry, " 🌈")
        client.journalSetTitle(entry, "Rain, then sun")
        client.journalSetMood(entry, "hopeful")
        client.journalSetTags(entry, listOf("weather", "good-day"))
        val second = client.journalCreate("Second", "short")
        checkEq(setOf(entry, second), client.journalList().map { it.id }.toSet())
        val got = client.journalGet(entry)
        checkEq("Rain, then sun", got.title)
        checkEq("I felt ☀ and 💙 today 🌈", got.body)
        checkEq("hopeful", got.mood)
        checkEq(listOf("weather", "good-day"), got.tags)
        check(client.journalHistory(entry).size >= 6)
        client.journalDelete(second)
        checkEq(listOf(entry), client.journalList().map { it.id })
        checkEq(SyncState.PENDING, client.status().state)
        val report = client.syncOnce(30_000uL)
        check(report.pushed > 0uL)
        checkEq(SyncState.SYNCED, client.status().state)
        val exported = client.exportJournal(ExportFormat.JSON, File(scratch, "export").path)
        checkEq(1uL, exported.entries)
        check("🌈" in File(exported.files[0]).readText())
    }

    test("two clients sync through the server; the ChangeListener hears it on a library thread") {
        val username = unique("kt-sync")
        val a = open("sync-a")
        a.register(username, PASSWORD, "phone")
        val first = a.journalCreate("From A", "written on A 🌧")
        a.syncOnce(30_000uL)

        val b = open("sync-b")
        val listener = RecordingListener()
        b.setChangeListener(listener)
        b.login(username, PASSWORD, "tablet")
        val report = b.syncOnce(30_000uL)
        check(first in report.changed)
        checkEq("written on A 🌧", b.journalGet(first).body)
        check(listener.changes.any { first in it.changed && it.journalChanged && !it.live }) { "${listener.changes}" }
        check(listener.threads.all { it.startsWith("haven-worker") }) { "${listener.threads}" }
        checkEq(SyncState.SYNCED, listener.statuses.last().state)

        // A sees B join, under the name B gave itself (the server never sees names).
        val devices = a.devices()
        checkEq(listOf("phone" to true, "tablet" to false), devices.map { it.name to it.current })
        check(devices.all { it.inBundle && !it.revoked }) { "$devices" }

        a.journalSpliceBody(first, 0u, 0u, "Monday: ")
        b.journalAppendBody(first, " and on B")
        val second = b.journalCreate("From B", "B's entry")
        a.syncOnce(30_000uL); b.syncOnce(30_000uL); a.syncOnce(30_000uL)
        checkEq("Monday: written on A 🌧 and on B", a.journalGet(first).body)
        checkEq(a.journalGet(first), b.journalGet(first))
        listener.changes.clear()
        a.journalDelete(second)
        a.syncOnce(30_000uL); b.syncOnce(30_000uL)
        check(listener.changes.any { second in it.deleted && it.journalChanged })
        assertThrows<HavenFfiException.NotFound> { b.journalGet(second) }
    }

    test("live sync: start, a listener that throws, pause, resume, stop") {
        val username = unique("kt-live")
        val a = open("live-a")
        a.register(username, PASSWORD, "phone")
        a.syncOnce(30_000uL)
        val b = open("live-b")
        b.login(username, PASSWORD, "tablet")
        val logger = RecordingLogger()
        setLogger(logger)
        try {
            val listener = RecordingListener(explode = true)
            b.setChangeListener(listener)
            b.startLive()
            b.startLive() // a no-op
            check(b.isLive())
            val entry = a.journalCreate("Live", "pushed while B listens")
            // A pushes until B's live sync delivers it. More than one push is needed only when the
            // first lands while B's socket is being set up: haven-server reads the head before it
            // subscribes the new socket, so an append in between is not announced to it (a server
            // race, reported); the next append is.
            for (attempt in 0 until 6) {
                if (attempt > 0) a.journalAppendBody(entry, ".")
                a.syncOnce(30_000uL)
                val deadline = System.currentTimeMillis() + 5_000
                while (System.currentTimeMillis() < deadline && listener.changes.none { entry in it.changed && it.live }) delay(100)
                if (listener.changes.any { entry in it.changed && it.live }) break
            }
            check(listener.changes.any { entry in it.changed && it.live }) { "no live change: ${listener.changes}" }
            checkEq("Live", b.journalGet(entry).title)
            // The library logs the listener's exception right after the call that threw it, on
            // its own thread: wait for the line (bounded) rather than race it.
            val logged = System.currentTimeMillis() + 5_000
            while (System.currentTimeMillis() < logged && logger.lines.none { "ChangeListener" in it }) delay(50)
            check(logger.lines.any { "ChangeListener" in it }) { "${logger.lines}" }
            check(logger.lines.none { "pushed while" in it })
            b.pauseLive(); check(!b.isLive())
            b.resumeLive(); check(b.isLive())
            b.stopLive(); check(!b.isLive())
            b.resumeLive(); check(!b.isLive())
        } finally {
            setLogger(null)
        }
    }

    test("saved resources, trusted contacts and reading progress") {
        val client = open("saved")
        client.register(unique("kt-saved"), PASSWORD, "phone")
        val rainn = "National Sexual Assault Hotline (RAINN)"
        client.saveResource("us-national", rainn)
        val contact = client.putContact(null, "Sam", "+15555550100", "neighbour")
        var saved = client.savedResources()
        checkEq(listOf("us-national" to rainn), saved.resources.map { it.listSlug to it.resourceName })
        checkEq(listOf(Triple(contact, "Sam", "neighbour")), saved.contacts.map { Triple(it.id, it.name, it.note) })
        checkEq(contact, client.putContact(contact, "Sam R.", "+15555550100", null))
        client.removeSavedResource("us-national", rainn)
        saved = client.savedResources()
        checkEq(0, saved.resources.size)
        checkEq(listOf("Sam R."), saved.contacts.map { it.name })
        client.setBookmark("him-though", true)
        val body = client.article("him-though").body
        // A Kotlin String index is a UTF-16 offset, what the API takes (on a character boundary).
        var position = body.length / 2
        if (Character.isLowSurrogate(body[position])) position--
        client.setReadingProgress("him-though", 500_000u, position.toULong())
        val state = client.readingState()
        checkEq(listOf("him-though"), state.bookmarks.map { it.slug })
        checkEq(listOf(Triple("him-though", 500_000u, position.toULong())), state.progress.map { Triple(it.slug, it.fractionPpm, it.position) })
        assertThrows<HavenFfiException.NotFound> { client.setReadingProgress("no-such-article", 1u, 0uL) }
        assertThrows<HavenFfiException.InvalidInput> { client.setReadingProgress("him-though", 1u, (body.length + 1).toULong()) }
    }

    test("revoke, password change, recovery with the phrase, linking") {
        val (new, newer, newest) = Triple("second long passphrase", "third long passphrase", "fourth long passphrase")
        val username = unique("kt-safety")
        val phone = open("safety-phone")
        val registration = phone.register(username, PASSWORD, "phone")
        phone.journalCreate("kept", "kept through it all")
        phone.syncOnce(30_000uL)
        val taken = open("safety-taken")
        taken.login(username, PASSWORD, "old phone")
        taken.syncOnce(30_000uL)

        val target = phone.devices().first { it.name == "old phone" }
        assertThrows<HavenFfiException.WrongCredentials> { phone.revokeDevice(target.deviceId, "not the password at all", new) }
        phone.revokeDevice(target.deviceId, PASSWORD, new)
        val after = phone.journalCreate("after", "written after")
        phone.syncOnce(30_000uL)
        assertThrows<HavenFfiException.Revoked> { taken.syncOnce(30_000uL) }
        assertThrows<HavenFfiException.NotFound> { taken.journalGet(after) }

        assertThrows<HavenFfiException.WrongCredentials> { phone.changePassword(PASSWORD, newer) }
        phone.changePassword(new, newer)
        val fresh = open("safety-fresh")
        assertThrows<HavenFfiException.InvalidInput> { fresh.recover(username, List(24) { "zoo" }, newest, "new phone") }
        fresh.recover(username, registration.recoveryWords, newest, "new phone")
        fresh.syncOnce(30_000uL)
        checkEq(listOf("after", "kept"), fresh.journalList().map { it.title }.sorted())

        val tablet = open("safety-tablet")
        val offer = tablet.linkStart()
        checkEq(offer.verificationCode, fresh.linkVerificationCode(offer.code))
        val joined = coroutineScope {
            val waiting = async { tablet.linkWait(offer.code, 30_000uL) }
            fresh.linkApprove(offer.code, "tablet")
            waiting.await()
        }
        checkEq(username, joined)
        tablet.syncOnce(30_000uL)
        checkEq(2, tablet.journalList().size)
    }

    test("local-only journal, device alerts, a wipe that logs out") {
        val username = unique("kt-local")
        val a = open("local-a")
        assertThrows<HavenFfiException.NotLoggedIn> { a.journalCreate("t", "b") }
        a.setLocalOnly(true)
        check(a.isLocalOnly())
        val kept = a.journalCreate("kept", "written with no account")
        checkEq(SyncState.LOCAL_ONLY, a.status().state)
        checkEq(0uL, a.status().pending)
        a.register(username, PASSWORD, "phone")
        check(!a.isLocalOnly())
        a.syncOnce(30_000uL)
        val b = open("local-b")
        b.login(username, PASSWORD, "tablet")
        b.syncOnce(30_000uL)
        checkEq("written with no account", b.journalGet(kept).body)

        checkEq(listOf("tablet"), a.syncOnce(30_000uL).devicesJoined.map { it.name })
        checkEq(listOf("tablet"), a.deviceAlerts().map { it.name })
        a.dismissDeviceAlerts()
        checkEq(0, a.deviceAlerts().size)

        b.setLocalOnly(true)
        val paused = b.journalCreate("paused", "only on B for now")
        b.syncOnce(30_000uL)
        a.syncOnce(30_000uL)
        assertThrows<HavenFfiException.NotFound> { a.journalGet(paused) }
        b.setLocalOnly(false)
        b.syncOnce(30_000uL)
        a.syncOnce(30_000uL)
        checkEq("paused", a.journalGet(paused).title)

        checkEq(0uL, b.pushJitterMs())
        b.setPushJitterMs(2_000uL)
        checkEq(2_000uL, b.pushJitterMs())
        assertThrows<HavenFfiException.InvalidInput> { b.setPushJitterMs(600_001uL) }

        val report = b.wipe(logOutFirst = true)
        check(report.keystoreKeyDeleted && report.dirRemoved) { "$report" }
    }

    test("an erasure wipes the other devices when the account asked") {
        val username = unique("kt-erase")
        val phone = open("erase-phone")
        phone.register(username, PASSWORD, "phone")
        val laptopKeys = TestKeyStore()
        val laptop = open("erase-laptop", keyStore = laptopKeys)
        laptop.login(username, PASSWORD, "laptop")
        check(!phone.wipeOnErasure())
        phone.setWipeOnErasure(true)
        phone.syncOnce(30_000uL)
        laptop.syncOnce(30_000uL)
        check(laptop.wipeOnErasure())

        phone.deleteAccount(PASSWORD)
        assertThrows<HavenFfiException.Erased> { laptop.syncOnce(30_000uL) }
        val deadline = System.nanoTime() + 10_000_000_000L
        while (!laptop.isClosed() || File(scratch, "erase-laptop").exists()) {
            check(System.nanoTime() < deadline) { "the laptop was not wiped" }
            Thread.sleep(50)
        }
        check(laptopKeys.deleted)
        check(!phone.isClosed())
        phone.journalList()
    }

    test("a wrong password and bad ids are typed errors") {
        val username = unique("kt-auth")
        val a = open("auth-a")
        a.register(username, PASSWORD, "phone")
        val b = open("auth-b")
        assertThrows<HavenFfiException.WrongCredentials> { b.login(username, "not the password at all", "tablet") }
        assertThrows<HavenFfiException.InvalidInput> { a.journalGet("not-an-id") }
        assertThrows<HavenFfiException.NotFound> { a.journalGet("00".repeat(16)) }
        assertThrows<HavenFfiException.NotFound> { a.journalSetTitle("ab".repeat(16), "x") }
        assertThrows<HavenFfiException.NotFound> { a.article("no-such-article") }
        assertThrows<HavenFfiException.InvalidInput> { a.register(unique("kt-again"), PASSWORD, "phone") }
    }

    test("a KeyStore that throws is a typed error, not a crash") {
        val error = assertThrows<HavenFfiException.KeyStore> { open("throwing", keyStore = ThrowingKeyStore()) }
        check("exploded" in error.reason) { error.reason }
        val keys = TestKeyStore()
        open("lost", keyStore = keys).shutdown()
        keys.deleted = true
        assertThrows<HavenFfiException.KeyLost> { open("lost", keyStore = keys) }
        check(keys.threads.all { it.startsWith("haven-worker") }) { "${keys.threads}" }
    }

    test("an unwritable data directory is a typed error") {
        val blocker = File(scratch, "a-file").apply { writeText("") }
        assertThrows<HavenFfiException.Storage> { open("a-file/profile") }
        open("twice")
        assertThrows<HavenFfiException.Storage> { open("twice") }
        assertThrows<HavenFfiException.InvalidInput> { open("bad-url", url = "ftp://example.invalid") }
        check(blocker.isFile)
    }

    test("a closed client is a typed error") {
        val keys = TestKeyStore()
        val client = open("closed", keyStore = keys)
        client.register(unique("kt-closed"), PASSWORD, "phone")
        val entry = client.journalCreate("t", "b")
        client.shutdown()
        check(client.isClosed())
        assertThrows<HavenFfiException.Closed> { client.journalGet(entry) }
        assertThrows<HavenFfiException.Closed> { client.status() }
        assertThrows<HavenFfiException.Closed> { client.startLive() }
        assertThrows<HavenFfiException.Closed> { client.shutdown() }
        checkEq("b", open("closed", keyStore = keys).journalGet(entry).body)
    }

    test("calls from several threads at once") {
        val client = open("threads")
        client.register(unique("kt-threads"), PASSWORD, "phone")
        val pool = Executors.newFixedThreadPool(8)
        val errors: MutableList<Throwable> = Collections.synchronizedList(mutableListOf())
        val done = CountDownLatch(8)
        repeat(8) { n ->
            pool.execute {
                try {
                    runBlocking {
                        repeat(5) { i ->
                            val entry = client.journalCreate("t$n-$i", "body 🌧 $i")
                            client.journalAppendBody(entry, "!")
                            client.journalList()
                            client.status()
                        }
                    }
                } catch (error: Throwable) {
                    errors.add(error)
                } finally {
                    done.countDown()
                }
            }
        }
        check(done.await(60, TimeUnit.SECONDS)) { "threads did not finish" }
        pool.shutdown()
        checkEq(emptyList<Throwable>(), errors.toList())
        checkEq(40, client.journalList().size)
        // Many coroutines at once on one thread, too.
        val ids = coroutineScope { (1..20).map { async { client.journalCreate("g", "$it") } }.awaitAll() }
        checkEq(20, ids.toSet().size)
    }

    test("sync_once's timeout, and cancel() against a server that never answers") {
        ServerSocket(0, 16, InetAddress.getLoopbackAddress()).use { silent ->
            val client = open("silent", url = "http://127.0.0.1:${silent.localPort}")
            var started = System.currentTimeMillis()
            assertThrows<HavenFfiException.Timeout> { client.syncOnce(300uL) }
            check(System.currentTimeMillis() - started < 10_000)
            checkEq(0u, client.cancel())
            started = System.currentTimeMillis()
            coroutineScope {
                launch { delay(300); client.cancel() }
                assertThrows<HavenFfiException.Cancelled> { client.syncOnce(60_000uL) }
            }
            check(System.currentTimeMillis() - started < 10_000)
            check(client.articles().isNotEmpty())
        }
    }

    test("a cancelled coroutine returns at once and leaves nothing in flight") {
        ServerSocket(0, 16, InetAddress.getLoopbackAddress()).use { silent ->
            val client = open("coroutine-cancel", url = "http://127.0.0.1:${silent.localPort}")
            val started = System.currentTimeMillis()
            coroutineScope {
                val job = launch { client.syncOnce(60_000uL) }
                delay(300)
                job.cancel()
                job.join()
            }
            check(System.currentTimeMillis() - started < 10_000)
            checkEq(0u, client.cancel()) // nothing left in flight
        }
    }

    test("backup, wipe, restore on a new profile; purge an entry's history") {
        val passphrase = "seven quiet lanterns over the bay"
        val a = open("backup-a")
        a.register(unique("kt-backup"), PASSWORD, "phone")
        val entry = a.journalCreate("Kept", "written before the wipe 🌧")
        a.journalAppendBody(entry, " and after")
        a.journalSetTags(entry, listOf("kept"))
        assertThrows<HavenFfiException.InvalidInput> { a.backupJournal("short") }
        val backup = a.backupJournal(passphrase)
        checkEq(1uL, backup.entries)
        check(String(backup.data.copyOfRange(0, 8), Charsets.US_ASCII) == "HAVENBAK")
        check(!String(backup.data, Charsets.ISO_8859_1).contains("written before")) { "ciphertext only" }
        check(backupNotice().contains("encrypted"))
        val expected = a.journalGet(entry)
        val revisions = a.journalHistory(entry).size
        // Never synced: after the wipe, the backup is the only copy.
        a.wipe()

        val b = open("backup-b")
        b.register(unique("kt-restored"), PASSWORD, "phone")
        assertThrows<HavenFfiException.Backup> { b.restoreBackup(backup.data, "not the passphrase at all") }
        val tampered = backup.data.copyOf().also { it[it.size - 1] = (it[it.size - 1].toInt() xor 1).toByte() }
        assertThrows<HavenFfiException.Backup> { b.restoreBackup(tampered, passphrase) }
        check(b.journalList().isEmpty())
        val report = b.restoreBackup(backup.data, passphrase)
        checkEq(RestoreReport(added = 1uL, merged = 0uL, unchanged = 0uL, deleted = 0uL, keptDeleted = 0uL), report)
        checkEq(expected, b.journalGet(entry))
        checkEq(revisions, b.journalHistory(entry).size)
        checkEq(1uL, b.restoreBackup(backup.data, passphrase).unchanged)

        val copy = b.journalPurgeHistory(entry)
        check(copy != entry)
        checkEq(1, b.journalHistory(copy).size)
        checkEq(expected.copy(id = copy), b.journalGet(copy))
        assertThrows<HavenFfiException.NotFound> { b.journalGet(entry) }
        checkEq(listOf(copy), b.journalList().map { it.id })
        b.syncOnce(30_000uL)
        b.shutdown()
    }

    test("wipe destroys the key first, then the files") {
        val keys = TestKeyStore()
        val client = open("wipe", keyStore = keys)
        client.register(unique("kt-wipe"), PASSWORD, "phone")
        client.journalCreate("secret", "CANARY-kt-wipe")
        client.startLive()
        val report = client.wipe()
        check(report.keystoreKeyDeleted && report.dataKeyFileRemoved && report.dirRemoved) { "$report" }
        check(keys.deleted)
        check(!File(scratch, "wipe").exists())
        check(client.isClosed() && !client.isLive())
        assertThrows<HavenFfiException.Closed> { client.journalList() }
        check(!client.wipe().dirRemoved)
        open("other").shutdown()
        check(wipeProfile(File(scratch, "other").path, TestKeyStore()).dirRemoved)
    }
}
