//! Access lines leave the request path through a buffer: a request appends its line under a
//! short lock (one of several buffers, chosen per thread, so workers do not contend), and one
//! writer thread hands whole batches to the output. Under load that is one
//! `write` per batch instead of one blocking `write` (and a contended stdout lock) per request;
//! an idle proxy's writer sleeps until a line arrives.
//!
//! Nothing is dropped: when the output cannot keep up and the buffer reaches its cap, requests
//! wait for the writer, as they would for a blocking `write` on stdout.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::{self, JoinHandle, Thread},
    time::Duration,
};

use super::access_log::Sink;

/// How long the writer gathers lines after a write before it writes again: bounds how stale a
/// line on disk can be, and turns a burst of requests into one system call.
const BATCH_WINDOW: Duration = Duration::from_millis(5);
/// The buffer a slow output may fill before requests wait for it (about 40,000 lines).
const DEFAULT_CAP: usize = 8 << 20;
/// Appending threads spread over this many buffers, so two workers rarely wait for each other.
const SHARDS: usize = 8;

/// Lines of concurrent requests land in different shards; each thread always uses the same one,
/// so its own lines stay in order.
fn my_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.try_with(|s| *s).unwrap_or(0)
}

/// Progress of the writer, for appenders that wait on a full buffer and for `flush`.
struct Control {
    /// Set by `close`: the writer drains what is left and exits.
    closed: bool,
    /// Batches taken from the shards, and batches handed to the output.
    taken: u64,
    written: u64,
}

struct Shared {
    shards: Vec<Mutex<Vec<u8>>>,
    control: Mutex<Control>,
    /// Signalled when the writer has taken or written a batch.
    progress: Condvar,
    /// The writer is parked waiting for a line; the next appender wakes it.
    idle: AtomicBool,
    shard_cap: usize,
}

/// A panic while a lock is held cannot leave a buffer or counter inconsistent (appends are
/// whole), so a poisoned lock is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn pending(&self) -> bool {
        self.shards.iter().any(|s| !lock(s).is_empty())
    }
}

/// A [`Sink`] that writes through a background thread. Dropping it flushes and stops the thread.
pub struct BufferedWriter {
    shared: Arc<Shared>,
    thread: Thread,
    /// The writer thread; it hands the output back when it exits.
    handle: Mutex<Option<JoinHandle<Output>>>,
    /// Set by `close`: from then on lines go straight to the output.
    closed: AtomicBool,
    /// The output after `close`.
    direct: Mutex<Option<Output>>,
}

type Output = Box<dyn Write + Send>;

impl BufferedWriter {
    /// Access lines to stdout.
    pub fn stdout() -> std::io::Result<BufferedWriter> {
        Self::new(std::io::stdout(), DEFAULT_CAP)
    }

    /// `cap` bounds the bytes waiting to be written; appenders wait beyond it.
    pub fn new<W: Write + Send + 'static>(out: W, cap: usize) -> std::io::Result<BufferedWriter> {
        let shared = Arc::new(Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(Vec::new())).collect(),
            control: Mutex::new(Control {
                closed: false,
                taken: 0,
                written: 0,
            }),
            progress: Condvar::new(),
            idle: AtomicBool::new(false),
            shard_cap: (cap / SHARDS).max(1),
        });
        let for_thread = shared.clone();
        let handle = thread::Builder::new()
            .name("access-log".into())
            .spawn(move || Box::new(run(&for_thread, out)) as Output)?;
        Ok(BufferedWriter {
            shared,
            thread: handle.thread().clone(),
            handle: Mutex::new(Some(handle)),
            closed: AtomicBool::new(false),
            direct: Mutex::new(None),
        })
    }

    fn wake(&self) {
        if self.shared.idle.load(Ordering::SeqCst) && self.shared.idle.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    /// Stops the writer after it has written everything appended so far; later lines are
    /// written directly, one `write` each.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.shared.control).closed = true;
        self.shared.progress.notify_all();
        self.thread.unpark();
        let handle = lock(&self.handle).take();
        if let Some(Ok(out)) = handle.map(JoinHandle::join) {
            *lock(&self.direct) = Some(out);
        }
        self.drain_direct();
    }

    /// After `close`: writes whatever sits in the buffers to the output. A line appended while
    /// the writer was stopping is caught either here by `close` or by its own appender, which
    /// checks `closed` after appending.
    fn drain_direct(&self) {
        let mut direct = lock(&self.direct);
        let Some(out) = direct.as_mut() else {
            return; // the writer is still stopping; close() drains after it
        };
        for shard in &self.shared.shards {
            let mut buf = lock(shard);
            if !buf.is_empty() {
                let _ = out.write_all(&buf);
                buf.clear();
            }
        }
        let _ = out.flush();
    }
}

impl Sink for BufferedWriter {
    fn line(&self, line: &str) {
        let shard = &self.shared.shards[my_shard()];
        loop {
            let mut buf = lock(shard);
            if buf.len() < self.shared.shard_cap || self.closed.load(Ordering::SeqCst) {
                buf.extend_from_slice(line.as_bytes());
                drop(buf);
                if self.closed.load(Ordering::SeqCst) {
                    self.drain_direct();
                } else {
                    self.wake();
                }
                return;
            }
            drop(buf);
            // The output is behind: wait for the writer to take a batch rather than lose the line.
            let mut ctl = lock(&self.shared.control);
            if ctl.closed {
                continue; // appended and written directly on the next round
            }
            // The writer may have taken this shard's batch while we waited for the control lock
            // (it holds it while taking): then there is room now, and no later batch to wait for.
            if lock(shard).len() < self.shared.shard_cap {
                continue;
            }
            let seen = ctl.taken;
            self.shared.idle.store(false, Ordering::SeqCst);
            self.thread.unpark();
            while ctl.taken == seen && !ctl.closed {
                ctl = self.shared.progress.wait(ctl).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Returns once every line appended before the call has been handed to the output.
    fn flush(&self) {
        if self.closed.load(Ordering::SeqCst) {
            self.drain_direct();
            return;
        }
        // The writer takes batches with the control lock held (lock order: control, then a
        // shard), so what is pending and what was taken are seen consistently here.
        let mut ctl = lock(&self.shared.control);
        // Our lines are in the next batch taken, or in the one being written now.
        let target = if self.shared.pending() {
            ctl.taken + 1
        } else {
            ctl.taken
        };
        if ctl.written >= target {
            return;
        }
        self.shared.idle.store(false, Ordering::SeqCst);
        self.thread.unpark();
        while ctl.written < target {
            if ctl.closed && ctl.taken == ctl.written && !self.shared.pending() {
                return;
            }
            ctl = self.shared.progress.wait(ctl).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for BufferedWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn run<W: Write>(shared: &Shared, mut out: W) -> W {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let closed = {
            let mut ctl = lock(&shared.control);
            for shard in &shared.shards {
                let mut buf = lock(shard);
                batch.extend_from_slice(&buf);
                buf.clear();
                if buf.capacity() > 1024 * 1024 {
                    // Do not keep a burst's worth of memory forever.
                    *buf = Vec::new();
                }
            }
            if !batch.is_empty() {
                ctl.taken += 1;
            }
            ctl.closed
        };
        if batch.is_empty() {
            if closed {
                shared.progress.notify_all();
                return out;
            }
            // Publish "idle", then look again: an appender either sees the flag and wakes us,
            // or appended before our look and we see its line.
            shared.idle.store(true, Ordering::SeqCst);
            if !shared.pending() && !lock(&shared.control).closed {
                thread::park();
            }
            shared.idle.store(false, Ordering::SeqCst);
            continue;
        }
        shared.progress.notify_all();

        // A failing output (closed pipe, full disk) must not stop the proxy; lines are lost
        // then, as they would be with direct writes.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > 4 * 1024 * 1024 {
            batch = Vec::with_capacity(64 * 1024);
        }
        lock(&shared.control).written += 1;
        shared.progress.notify_all();
        if !closed {
            thread::sleep(BATCH_WINDOW);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Mem(Arc<Mutex<Vec<u8>>>, Arc<Mutex<usize>>);

    impl Write for Mem {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            *self.1.lock().unwrap() += 1;
            Ok(())
        }
    }

    fn text(m: &Mem) -> String {
        String::from_utf8(m.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn flush_returns_after_every_earlier_line_is_written() {
        let m = Mem::default();
        let w = BufferedWriter::new(m.clone(), 1 << 20).unwrap();
        for i in 0..1000 {
            w.line(&format!("line {i}\n"));
        }
        w.flush();
        let out = text(&m);
        assert_eq!(out.lines().count(), 1000);
        assert!(out.starts_with("line 0\nline 1\n") && out.ends_with("line 999\n"));
        // Lines were batched, not written one by one.
        assert!(*m.1.lock().unwrap() < 1000, "{} writes", m.1.lock().unwrap());
    }

    #[test]
    fn concurrent_lines_stay_whole_and_none_is_lost() {
        let m = Mem::default();
        // A tiny cap makes appenders wait for the writer over and over.
        let w = Arc::new(BufferedWriter::new(m.clone(), 512).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        w.line(&format!("thread {t} line {i} {}\n", "x".repeat(i % 50)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        w.close();
        let out = text(&m);
        assert_eq!(out.lines().count(), 2000);
        for t in 0..4 {
            let mine: Vec<usize> = out
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .map(|l| l.split(' ').nth(3).unwrap().parse().unwrap())
                .collect();
            assert_eq!(mine, (0..500).collect::<Vec<_>>(), "thread {t}: order or loss");
        }
    }

    #[test]
    fn an_idle_writer_wakes_for_a_single_line() {
        let m = Mem::default();
        let w = BufferedWriter::new(m.clone(), 1 << 20).unwrap();
        // Let the writer park first.
        std::thread::sleep(Duration::from_millis(50));
        w.line("one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while text(&m).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(text(&m), "one\n");
        drop(w);
    }

    #[test]
    fn a_full_shard_emptied_while_waiting_for_the_writer_does_not_block() {
        let m = Mem::default();
        // Per-shard cap of 4 bytes: every line fills its shard.
        let w = Arc::new(BufferedWriter::new(m.clone(), 4 * SHARDS).unwrap());
        std::thread::sleep(Duration::from_millis(50)); // the writer parks
        // The appender needs a shard after shard 0, which the test holds to stall the writer
        // in the middle of taking a batch (with the control lock held).
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Arc::new(Mutex::new(go_rx));
        let (done_tx, done_rx) = std::sync::mpsc::channel::<&'static str>();
        let blocker = lock(&w.shared.shards[0]);
        let appender = loop {
            let (w, go_rx, done_tx) = (w.clone(), go_rx.clone(), done_tx.clone());
            let (k_tx, k_rx) = std::sync::mpsc::channel();
            let t = std::thread::spawn(move || {
                let k = my_shard();
                k_tx.send(k).unwrap();
                if k == 0 {
                    return;
                }
                w.line("first\n");
                done_tx.send("first").unwrap();
                lock(&go_rx).recv().unwrap();
                w.line("second\n");
                done_tx.send("second").unwrap();
            });
            if k_rx.recv().unwrap() != 0 {
                break t;
            }
            t.join().unwrap();
        };
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(3)), Ok("first"));
        // Wait until the woken writer holds the control lock, stuck on shard 0.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while w.shared.control.try_lock().is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never started a batch"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        go_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100)); // the appender waits for the control lock
        drop(blocker);
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(3)),
            Ok("second"),
            "appender stuck"
        );
        appender.join().unwrap();
        w.flush();
        assert_eq!(text(&m), "first\nsecond\n");
    }

    #[test]
    fn lines_after_close_go_straight_to_the_output() {
        let m = Mem::default();
        let w = BufferedWriter::new(m.clone(), 1 << 20).unwrap();
        w.line("before\n");
        w.close();
        w.line("late\n");
        w.flush();
        assert_eq!(text(&m), "before\nlate\n");
    }

    #[test]
    fn drop_writes_what_is_left() {
        let m = Mem::default();
        let w = BufferedWriter::new(m.clone(), 1 << 20).unwrap();
        w.line("a\n");
        w.line("b\n");
        drop(w);
        assert_eq!(text(&m), "a\nb\n");
    }
}
