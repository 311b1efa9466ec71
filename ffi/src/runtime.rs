//! The library's own tokio runtime, and the wrappers every exported call goes through: work runs
//! on the runtime (never on the caller's thread, which may be a UI thread), a panic becomes
//! [`HavenFfiError::Internal`], and in-flight work can be aborted by [`Inflight::cancel_all`] or by
//! the caller dropping the future (a cancelled Kotlin coroutine, a cancelled Swift task).

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, MutexGuard, OnceLock};

use futures_util::FutureExt as _;
use tokio::runtime::Runtime;
use tokio::task::{AbortHandle, JoinError, JoinHandle};

use crate::error::{FfiResult, HavenFfiError};
use crate::log::{LogLevel, log};

/// Worker threads of the runtime: network I/O and sync rounds are mostly waiting; two keep a
/// phone's cores free for the UI. Store reads and writes run on tokio's blocking pool.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

/// The runtime, built on first use. Its threads (workers and the blocking pool) are named
/// `haven-worker`: that is the thread a `ChangeListener` or `KeyStore` is called on.
pub(crate) fn runtime() -> FfiResult<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(WORKER_THREADS)
                .thread_name("haven-worker")
                .enable_all()
                .build()
                .map_err(|error| format!("cannot start the library's runtime: {error}"))
        })
        .as_ref()
        .map_err(|reason| HavenFfiError::internal(reason.clone()))
}

/// Locks a mutex, ignoring poison: every state behind these locks stays consistent at each
/// statement, and a panic is already reported as an error where it happened.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The error a caught panic becomes. The payload is not included: it could hold anything.
pub(crate) fn panicked(operation: &str, _payload: Box<dyn Any + Send>) -> HavenFfiError {
    log(
        LogLevel::Error,
        format!("{operation}: a panic was caught at the FFI boundary"),
    );
    HavenFfiError::internal(format!(
        "{operation} failed unexpectedly (a bug in the library; nothing was changed by it)"
    ))
}

/// Runs a synchronous exported body, turning a panic into an error.
pub(crate) fn guard<T>(operation: &str, body: impl FnOnce() -> FfiResult<T>) -> FfiResult<T> {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| Err(panicked(operation, payload)))
}

/// The operations of one client that are running, so `cancel()` can abort them.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    state: Mutex<InflightState>,
}

#[derive(Debug, Default)]
struct InflightState {
    next: u64,
    tasks: HashMap<u64, AbortHandle>,
}

impl Inflight {
    /// Aborts every registered operation; each fails with `Cancelled`. Work already inside a
    /// store write finishes that write (writes are atomic), network waits end at once.
    pub(crate) fn cancel_all(&self) -> usize {
        let tasks: Vec<AbortHandle> = lock(&self.state).tasks.drain().map(|(_, t)| t).collect();
        for task in &tasks {
            task.abort();
        }
        tasks.len()
    }

    fn register(&self, task: AbortHandle) -> u64 {
        let mut state = lock(&self.state);
        state.next += 1;
        let id = state.next;
        state.tasks.insert(id, task);
        id
    }

    fn unregister(&self, id: u64) {
        lock(&self.state).tasks.remove(&id);
    }
}

/// Unregisters a task when its caller stops waiting, and aborts it if the caller gave up (the
/// foreign future was dropped): a cancelled coroutine cancels the Rust work too.
struct Tracked<'a> {
    inflight: Option<&'a Inflight>,
    id: u64,
    task: AbortHandle,
    done: bool,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        if let Some(inflight) = self.inflight {
            inflight.unregister(self.id);
        }
        if !self.done {
            self.task.abort();
        }
    }
}

/// Awaits a spawned operation, mapping a panic or an abort to a typed error.
pub(crate) async fn join<T>(
    operation: &str,
    handle: JoinHandle<Result<FfiResult<T>, Box<dyn Any + Send>>>,
    inflight: Option<&Inflight>,
) -> FfiResult<T> {
    let task = handle.abort_handle();
    let id = inflight.map_or(0, |inflight| inflight.register(task.clone()));
    let mut tracked = Tracked {
        inflight,
        id,
        task,
        done: false,
    };
    let joined = handle.await;
    tracked.done = true;
    drop(tracked);
    match joined {
        Ok(Ok(result)) => result,
        Ok(Err(payload)) => Err(panicked(operation, payload)),
        Err(error) => Err(join_error(operation, &error)),
    }
}

fn join_error(operation: &str, error: &JoinError) -> HavenFfiError {
    if error.is_cancelled() {
        HavenFfiError::cancelled(operation)
    } else {
        // The task's own catch_unwind already caught any panic; this is tokio's own backstop.
        HavenFfiError::internal(format!("{operation} failed unexpectedly"))
    }
}

/// Runs an async operation on the library's runtime.
pub(crate) async fn spawn<T, F>(
    operation: &str,
    inflight: Option<&Inflight>,
    work: F,
) -> FfiResult<T>
where
    T: Send + 'static,
    F: Future<Output = FfiResult<T>> + Send + 'static,
{
    let handle = runtime()?.spawn(AssertUnwindSafe(work).catch_unwind());
    join(operation, handle, inflight).await
}

/// Runs blocking work (the local store: reads, fsynced writes, the platform key store) on the
/// runtime's blocking pool.
pub(crate) async fn spawn_blocking<T, F>(
    operation: &str,
    inflight: Option<&Inflight>,
    work: F,
) -> FfiResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> FfiResult<T> + Send + 'static,
{
    let handle = runtime()?.spawn_blocking(move || catch_unwind(AssertUnwindSafe(work)));
    join(operation, handle, inflight).await
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Waker};
    use std::time::Duration;

    use super::*;

    /// Sets its flag when dropped: proof that a task's future was dropped (aborted).
    struct DropFlag(Arc<AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    fn wait_for(flag: &AtomicBool) -> bool {
        for _ in 0..200 {
            if flag.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Awaits like a foreign executor would: from another thread, outside the library's runtime.
    fn block_on<T>(future: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a caller's executor")
            .block_on(future)
    }

    #[test]
    fn a_panic_becomes_internal() {
        let result: FfiResult<()> = block_on(spawn("boom", None, async { panic!("boom") }));
        assert!(
            matches!(result, Err(HavenFfiError::Internal { .. })),
            "{result:?}"
        );
        let result: FfiResult<()> = block_on(spawn_blocking("boom", None, || panic!("boom")));
        assert!(
            matches!(result, Err(HavenFfiError::Internal { .. })),
            "{result:?}"
        );
        let result: FfiResult<()> = guard("boom", || panic!("boom"));
        assert!(
            matches!(result, Err(HavenFfiError::Internal { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn cancel_all_aborts_what_is_in_flight() {
        let inflight = Arc::new(Inflight::default());
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        let canceller = Arc::clone(&inflight);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            canceller.cancel_all();
        });
        let result: FfiResult<()> = block_on(spawn("wait", Some(&inflight), async move {
            let _flag = flag;
            std::future::pending::<()>().await;
            Ok(())
        }));
        assert!(
            matches!(result, Err(HavenFfiError::Cancelled { .. })),
            "{result:?}"
        );
        assert!(wait_for(&dropped));
        assert_eq!(inflight.cancel_all(), 0);
    }

    #[test]
    fn dropping_the_callers_future_aborts_the_task() {
        let inflight = Inflight::default();
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = DropFlag(Arc::clone(&dropped));
        {
            let future = spawn("wait", Some(&inflight), async move {
                let _flag = flag;
                std::future::pending::<()>().await;
                Ok(())
            });
            let mut future = pin!(future);
            let mut context = Context::from_waker(Waker::noop());
            assert!(future.as_mut().poll(&mut context).is_pending());
        }
        assert!(wait_for(&dropped), "the task kept running");
        assert_eq!(inflight.cancel_all(), 0, "the task stayed registered");
    }
}
