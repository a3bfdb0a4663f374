//! The CPU engine's threads: one parallel loop at a time, `parallel_for(threads, tasks, f)`
//! runs `f(0..tasks)` on the calling thread and up to `threads - 1` pool workers, which
//! take task indices from a shared counter (so a worker the OS delays takes fewer).
//!
//! Workers are process-wide and only grow in number. Natively they are OS threads spawned
//! on first use ([`ensure_workers`]); in the browser (the `atomics` build) each is a Web
//! Worker that instantiates the same module over the same shared memory, registers
//! ([`worker_join`]), says it is ready, and serves ([`worker_serve`], which never returns).
//!
//! The calling thread never blocks on a lock or a futex: a browser's main thread may not
//! (`memory.atomic.wait` traps there), so it spins until the last task is done; it only
//! ever waits for work that is already running. Workers sleep between loops. A second
//! `parallel_for` while one runs (another thread's model, or a nested call) runs on its
//! own thread, serially, rather than wait.

use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst,
};

/// The most threads one loop uses (the calling thread included); beyond this the
/// matmuls' panels get too thin to pay for the hand-off.
pub const MAX_THREADS: usize = 32;

/// The loop being run: a type-erased `&dyn Fn(usize)` and its counters.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
    /// Workers with an index below this take part.
    helpers: usize,
    next: AtomicUsize,
    /// Tasks not yet finished.
    left: AtomicUsize,
}

/// The published job (null between loops) and the counters the protocol needs.
static JOB: AtomicPtr<Job> = AtomicPtr::new(std::ptr::null_mut());
/// Bumped for every job: sleeping workers wait for it to change.
static EPOCH: AtomicU32 = AtomicU32::new(0);
/// Workers inside a job (between reading `JOB` and leaving it).
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Whether a loop is running; a second one runs serially.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Registered workers (each takes the next index).
static WORKERS: AtomicUsize = AtomicUsize::new(0);
/// Loops handed to workers, and tasks the workers ran: how a test (or a puzzled user) sees
/// that the threads really work.
static SHARED_LOOPS: AtomicUsize = AtomicUsize::new(0);
static WORKER_TASKS: AtomicUsize = AtomicUsize::new(0);

/// `(loops offered to workers, tasks workers ran)` since the process started.
pub fn stats() -> (usize, usize) {
    (SHARED_LOOPS.load(Relaxed), WORKER_TASKS.load(Relaxed))
}

/// Threads a loop can use now: the registered workers plus the calling thread.
pub fn available() -> usize {
    (WORKERS.load(SeqCst) + 1).min(MAX_THREADS)
}

/// The machine's cores, as the OS reports them (1 when it does not).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Run `f(i)` for every `i` in `0..tasks`, on up to `threads` threads. Returns when all
/// are done, with the number of threads the loop was offered to (1: it ran serially).
/// `f` must not panic (the kernels check their inputs before they split).
pub fn parallel_for(threads: usize, tasks: usize, f: &(dyn Fn(usize) + Sync)) -> usize {
    let helpers = threads
        .min(available())
        .saturating_sub(1)
        .min(tasks.saturating_sub(1));
    if helpers == 0 || BUSY.swap(true, SeqCst) {
        (0..tasks).for_each(f);
        return 1;
    }
    // SAFETY of the erased lifetime: `job` (and `f`) outlive every worker's use of them,
    // because this function returns only after `JOB` is cleared and no worker is ACTIVE.
    let f: *const (dyn Fn(usize) + Sync + '_) = f;
    let job = Job {
        f: unsafe {
            std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
                f,
            )
        },
        tasks,
        helpers,
        next: AtomicUsize::new(0),
        left: AtomicUsize::new(tasks),
    };
    JOB.store(&job as *const Job as *mut Job, SeqCst);
    SHARED_LOOPS.fetch_add(1, Relaxed);
    EPOCH.fetch_add(1, SeqCst);
    wake_workers();
    run_tasks(&job);
    while job.left.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    // A worker that read `JOB` before this store is counted in ACTIVE (SeqCst: one that
    // counts itself after the load below reads null), so waiting for zero is enough.
    JOB.store(std::ptr::null_mut(), SeqCst);
    while ACTIVE.load(SeqCst) != 0 {
        std::hint::spin_loop();
    }
    BUSY.store(false, SeqCst);
    helpers + 1
}

/// Take and run tasks until none are left; returns how many this thread ran.
fn run_tasks(job: &Job) -> usize {
    let mut ran = 0;
    loop {
        let i = job.next.fetch_add(1, SeqCst);
        if i >= job.tasks {
            return ran;
        }
        // SAFETY: `f` lives until `parallel_for` returns, which waits for this task.
        unsafe { (*job.f)(i) };
        ran += 1;
        job.left.fetch_sub(1, SeqCst);
    }
}

/// A worker's life: wait for a new epoch, help with the job if its index is wanted.
fn worker_loop(index: usize) -> ! {
    let mut seen = EPOCH.load(SeqCst);
    loop {
        wait_for_epoch(seen);
        seen = EPOCH.load(SeqCst);
        ACTIVE.fetch_add(1, SeqCst);
        let job = JOB.load(SeqCst);
        // SAFETY: a non-null JOB stays alive while this worker is ACTIVE (see above).
        if let Some(job) = unsafe { job.as_ref() } {
            if index < job.helpers {
                WORKER_TASKS.fetch_add(run_tasks(job), Relaxed);
            }
        }
        ACTIVE.fetch_sub(1, SeqCst);
    }
}

/// Spin a little before sleeping: the next loop often starts within microseconds.
fn spin_for_epoch(seen: u32) -> bool {
    for _ in 0..20_000 {
        if EPOCH.load(SeqCst) != seen {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}

#[cfg(not(target_arch = "wasm32"))]
mod sleep {
    use super::EPOCH;
    use std::sync::atomic::Ordering::SeqCst;
    use std::sync::{Condvar, Mutex};

    static LOCK: Mutex<()> = Mutex::new(());
    static WAKE: Condvar = Condvar::new();

    pub(super) fn wait_for_epoch(seen: u32) {
        if super::spin_for_epoch(seen) {
            return;
        }
        let mut guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        while EPOCH.load(SeqCst) == seen {
            guard = WAKE.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Native callers may lock: taking the lock orders the wake after a worker's check.
    pub(super) fn wake_workers() {
        drop(LOCK.lock().unwrap_or_else(|e| e.into_inner()));
        WAKE.notify_all();
    }
}

#[cfg(target_arch = "wasm32")]
mod sleep {
    use super::EPOCH;
    use std::sync::atomic::Ordering::SeqCst;

    pub(super) fn wait_for_epoch(seen: u32) {
        if super::spin_for_epoch(seen) {
            return;
        }
        while EPOCH.load(SeqCst) == seen {
            #[cfg(target_feature = "atomics")]
            // SAFETY: EPOCH is a live, aligned u32; waiting is allowed in a worker.
            unsafe {
                core::arch::wasm32::memory_atomic_wait32(
                    EPOCH.as_ptr() as *mut i32,
                    seen as i32,
                    -1,
                );
            }
        }
    }

    /// `memory.atomic.notify` is allowed on every thread, the main one too.
    pub(super) fn wake_workers() {
        #[cfg(target_feature = "atomics")]
        // SAFETY: EPOCH is a live, aligned u32.
        unsafe {
            core::arch::wasm32::memory_atomic_notify(EPOCH.as_ptr() as *mut i32, u32::MAX);
        }
    }
}

use sleep::{wait_for_epoch, wake_workers};

/// Spawn OS threads until `threads - 1` workers exist (natively; a no-op in wasm, where
/// the JS layer starts workers). A failed spawn leaves fewer workers, never an error:
/// the loops use whatever is there.
#[cfg(not(target_arch = "wasm32"))]
pub fn ensure_workers(threads: usize) {
    static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let want = threads.clamp(1, MAX_THREADS) - 1;
    let _guard = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
    while WORKERS.load(SeqCst) < want {
        let index = WORKERS.load(SeqCst);
        let spawned = std::thread::Builder::new()
            .name(format!("webclip-cpu-{}", index + 1))
            .spawn(move || worker_loop(index));
        if spawned.is_err() {
            return;
        }
        WORKERS.fetch_add(1, SeqCst);
    }
}

#[cfg(target_arch = "wasm32")]
pub fn ensure_workers(_threads: usize) {}

/// A Web Worker's entry into the pool (the threaded wasm build), first half: register, and
/// return the worker's index for [`worker_serve`]. Registering before the worker says it
/// is ready means a loop started once the JS layer has all its workers can use them all
/// (a registered worker that is not serving yet only takes no tasks). An error, at once,
/// where memory is not shared.
#[cfg(target_arch = "wasm32")]
pub fn worker_join() -> Result<usize, &'static str> {
    if !cfg!(target_feature = "atomics") {
        return Err("this webclip build has no threads (it was built without atomics)");
    }
    Ok(WORKERS.fetch_add(1, SeqCst))
}

/// The second half: serve loops forever as worker `index` (from [`worker_join`]).
#[cfg(target_arch = "wasm32")]
pub fn worker_serve(index: usize) -> ! {
    worker_loop(index)
}

/// Raw pointers handed to tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub *mut T);
// SAFETY: every use splits the pointee into disjoint ranges, one per task.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the whole `Shared`).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

/// Work below which a thread's share of a kernel does not pay for the hand-off (and, in
/// a matmul, its own packing of A): a few microseconds.
const MIN_FLOPS_PER_THREAD: usize = 1 << 20;

/// How many parts to cut a kernel of `flops` into on `threads` threads: no more than its
/// `units` (panels, attention heads), none smaller than [`MIN_FLOPS_PER_THREAD`], at least 1.
pub(crate) fn parts(threads: usize, flops: usize, units: usize) -> usize {
    threads.min(flops / MIN_FLOPS_PER_THREAD).min(units).max(1)
}

/// A thread-local scratch buffer grown to at least `len` values (kept across calls, so the
/// kernels allocate nothing once warm).
pub(crate) fn scratch(v: &mut Vec<f32>, len: usize) -> *mut f32 {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    v.as_mut_ptr()
}

/// `0..len` cut into at most `parts` ranges of whole `align`-sized units, as even as the
/// units allow: range `i` of the result.
pub(crate) fn split(len: usize, align: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let units = len.div_ceil(align.max(1));
    let parts = parts.clamp(1, units.max(1));
    let (per, extra) = (units / parts, units % parts);
    let start = i * per + i.min(extra);
    let end = start + per + usize::from(i < extra);
    (start * align).min(len)..(end * align).min(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_everything_once_in_aligned_ranges() {
        for (len, align, parts) in [
            (768usize, 16usize, 2usize),
            (769, 16, 3),
            (10, 16, 4),
            (0, 16, 2),
            (3072, 16, 32),
        ] {
            let parts_used = parts.min(len.div_ceil(align).max(1));
            let mut next = 0;
            for i in 0..parts_used {
                let r = split(len, align, parts, i);
                assert_eq!(r.start, next, "{len} {align} {parts}");
                assert!(r.start.is_multiple_of(align));
                next = r.end;
            }
            assert_eq!(next, len);
        }
    }

    /// The pool is process-wide: these tests take turns (a loop started while another
    /// runs would be serial, which the first test checks does not happen).
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn parallel_for_runs_every_task_once_on_several_threads() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        ensure_workers(4);
        assert!(available() >= 4);
        let hits: Vec<AtomicUsize> = (0..1000).map(|_| AtomicUsize::new(0)).collect();
        let mut offered = Vec::new();
        for _ in 0..50 {
            offered.push(parallel_for(4, hits.len(), &|i| {
                hits[i].fetch_add(1, SeqCst);
            }));
        }
        assert!(hits.iter().all(|h| h.load(SeqCst) == 50));
        assert!(offered.contains(&4), "{offered:?}");
        // The workers take part: tasks that wait a little leave them time to.
        // (Another test's model may hold the pool for a moment: then a loop runs serially.)
        let before = stats().1;
        for _ in 0..20 {
            parallel_for(4, 64, &|_| {
                std::thread::sleep(std::time::Duration::from_millis(1))
            });
            if stats().1 > before {
                break;
            }
        }
        assert!(stats().1 > before, "no task ran on a worker");
        // One task, or one thread asked for: no hand-off at all.
        assert_eq!(parallel_for(4, 1, &|_| {}), 1);
        assert_eq!(parallel_for(1, 100, &|_| {}), 1);
    }

    #[test]
    fn concurrent_loops_from_many_threads_all_finish() {
        let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        ensure_workers(3);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        parallel_for(3, 64, &|i| {
                            sum.fetch_add(i, SeqCst);
                        });
                        assert_eq!(sum.load(SeqCst), 64 * 63 / 2);
                    }
                });
            }
        });
    }
}
