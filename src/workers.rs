//! Long-lived threads for blocking work that lasts as long as a transfer: the stages of blob
//! sealing, background writeback of blob files, and the writers behind streamed downloads.
//!
//! Why not a new thread per transfer: glibc spreads new threads over its malloc arenas and each
//! arena keeps memory freed into it, so fresh threads for every transfer let RSS climb with use
//! (five rounds of four concurrent uploads: 137.6 MiB with fresh threads, 88.7 MiB reusing them).
//! Why not tokio's blocking pool: its threads exit after 10 s idle, so every burst would start
//! fresh ones again, and these jobs hold a thread for as long as a transfer lasts.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;

/// Idle threads kept for reuse; a thread that finishes a job while this many wait exits.
const IDLE_MAX: usize = 64;

/// A job gets a callback to call once its result is ready and before handing it over, so that its
/// thread is idle again before the caller (who may start the next job at once) sees the result.
type Job = Box<dyn FnOnce(&mut dyn FnMut()) + Send + 'static>;

/// Senders of the idle threads' job channels, most recently used last.
static IDLE: Mutex<Vec<mpsc::Sender<Job>>> = Mutex::new(Vec::new());

fn take_idle() -> Option<mpsc::Sender<Job>> {
    IDLE.lock().unwrap_or_else(|p| p.into_inner()).pop()
}

/// Offers a thread that finished its job for reuse; `false` when enough are idle already.
fn put_idle(worker: mpsc::Sender<Job>) -> bool {
    let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
    if idle.len() >= IDLE_MAX {
        return false;
    }
    idle.push(worker);
    true
}

/// The result of a job run by [`spawn`].
pub struct Task<T> {
    rx: mpsc::Receiver<thread::Result<T>>,
    done: Option<thread::Result<T>>,
}

impl<T> std::fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task").finish_non_exhaustive()
    }
}

impl<T> Task<T> {
    /// Whether the job has ended (without blocking).
    pub fn is_finished(&mut self) -> bool {
        if self.done.is_none() {
            match self.rx.try_recv() {
                Ok(result) => self.done = Some(result),
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.done = Some(Err(Box::new("the worker thread went away")))
                }
            }
        }
        true
    }

    /// Waits for the job (blocking) and returns what it returned; a panic becomes an error.
    pub fn join(self) -> io::Result<T> {
        let result = match self.done {
            Some(result) => result,
            None => self
                .rx
                .recv()
                .unwrap_or_else(|_| Err(Box::new("the worker thread went away"))),
        };
        result.map_err(|_| io::Error::other("a background worker panicked"))
    }
}

/// Runs `job` on an idle worker thread, or on a new one when none is idle. Dropping the
/// [`Task`] does not stop the job; it only discards its result.
pub fn spawn<T, F>(job: F) -> io::Result<Task<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = mpsc::sync_channel(1);
    let mut job: Job = Box::new(move |ready: &mut dyn FnMut()| {
        // The thread outlives a panicking job; the job's captures are dropped while unwinding.
        let result = panic::catch_unwind(AssertUnwindSafe(job));
        ready();
        let _ = tx.send(result);
    });
    while let Some(worker) = take_idle() {
        match worker.send(job) {
            Ok(()) => return Ok(Task { rx, done: None }),
            // Cannot happen while idle threads keep their own receiver; try the next one.
            Err(mpsc::SendError(returned)) => job = returned,
        }
    }
    start_worker(job)?;
    Ok(Task { rx, done: None })
}

fn start_worker(first: Job) -> io::Result<()> {
    let (tx, rx) = mpsc::channel::<Job>();
    tx.send(first)
        .map_err(|_| io::Error::other("cannot hand a job to a new worker"))?;
    thread::Builder::new()
        .name("pcii-worker".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                let mut reused = false;
                job(&mut || reused = put_idle(tx.clone()));
                if !reused {
                    break;
                }
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn jobs_return_their_results_and_threads_are_reused() {
        let first = spawn(|| thread::current().id()).unwrap().join().unwrap();
        // Other tests use the pool concurrently, so look for reuse over many sequential jobs:
        // with reuse they run on a handful of threads, without it on one thread each.
        let mut threads = HashSet::from([first]);
        for i in 0..200u32 {
            let (n, id) = spawn(move || (i * 2, thread::current().id()))
                .unwrap()
                .join()
                .unwrap();
            assert_eq!(n, i * 2);
            threads.insert(id);
        }
        assert!(threads.len() < 20, "{} threads for 201 jobs", threads.len());
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_goes_on() {
        let err = spawn(|| -> u32 { panic!("job bug") })
            .unwrap()
            .join()
            .unwrap_err();
        assert_eq!(err.to_string(), "a background worker panicked");
        assert_eq!(spawn(|| 7).unwrap().join().unwrap(), 7);
    }

    #[test]
    fn is_finished_does_not_block_and_keeps_the_result() {
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let mut task = spawn(move || {
            go_rx.recv().unwrap();
            "done"
        })
        .unwrap();
        assert!(!task.is_finished());
        go_tx.send(()).unwrap();
        let start = std::time::Instant::now();
        while !task.is_finished() {
            assert!(start.elapsed() < Duration::from_secs(60));
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(task.join().unwrap(), "done");
    }

    #[test]
    fn concurrent_jobs_run_at_the_same_time() {
        // Three jobs that each wait for the other two: they only finish if all three run at once
        // (the sealing pipeline's stages depend on each other in the same way).
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(3));
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let barrier = barrier.clone();
                spawn(move || barrier.wait().is_leader()).unwrap()
            })
            .collect();
        let leaders = tasks
            .into_iter()
            .map(|t| t.join().unwrap())
            .filter(|leader| *leader)
            .count();
        assert_eq!(leaders, 1);
    }
}
