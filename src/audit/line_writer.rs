//! Access lines leave the request path through a buffer: a request appends its line under a
//! short lock, and one writer thread hands whole batches to the output. Under load that is one
//! `write` per batch instead of one blocking `write` (and a contended stdout lock) per request;
//! an idle proxy's writer sleeps until a line arrives.
//!
//! Nothing is dropped: when the output cannot keep up and the buffer reaches its cap, requests
//! wait for the writer, as they would for a blocking `write` on stdout.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
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

struct State {
    buf: Vec<u8>,
    /// Set by `close`: the writer drains what is left and exits.
    closed: bool,
    /// Batches handed to the output, so `flush` knows when its lines are out.
    written: u64,
    taken: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the writer has taken or written a batch (for full buffers and flushes).
    progress: Condvar,
    /// The writer is parked waiting for a line; the next appender wakes it.
    idle: AtomicBool,
    cap: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the buffer inconsistent (appends are
        // whole), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A [`Sink`] that writes through a background thread. Dropping it flushes and stops the thread.
pub struct BufferedWriter {
    shared: Arc<Shared>,
    thread: Thread,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl BufferedWriter {
    /// Access lines to stdout.
    pub fn stdout() -> std::io::Result<BufferedWriter> {
        Self::new(std::io::stdout(), DEFAULT_CAP)
    }

    pub fn new<W: Write + Send + 'static>(out: W, cap: usize) -> std::io::Result<BufferedWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                buf: Vec::with_capacity(64 * 1024),
                closed: false,
                written: 0,
                taken: 0,
            }),
            progress: Condvar::new(),
            idle: AtomicBool::new(false),
            cap: cap.max(1),
        });
        let for_thread = shared.clone();
        let handle = thread::Builder::new()
            .name("access-log".into())
            .spawn(move || run(&for_thread, out))?;
        Ok(BufferedWriter {
            shared,
            thread: handle.thread().clone(),
            handle: Mutex::new(Some(handle)),
        })
    }

    fn wake(&self) {
        if self.shared.idle.load(Ordering::SeqCst) && self.shared.idle.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    /// Stops the writer after it has written everything appended so far.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.thread.unpark();
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Sink for BufferedWriter {
    fn line(&self, line: &str) {
        let mut st = self.shared.lock();
        while st.buf.len() >= self.shared.cap && !st.closed {
            // The output is behind: wait for the writer rather than lose the line.
            self.wake();
            st = self.shared.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.closed {
            // After shutdown nothing reads the buffer any more: write directly.
            drop(st);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
            return;
        }
        st.buf.extend_from_slice(line.as_bytes());
        drop(st);
        self.wake();
    }

    /// Returns once every line appended before the call has been handed to the output.
    fn flush(&self) {
        let mut st = self.shared.lock();
        if st.buf.is_empty() && st.written == st.taken {
            return;
        }
        // The batch holding our lines is the next one taken (or the one being written).
        let target = if st.buf.is_empty() { st.taken } else { st.taken + 1 };
        self.shared.idle.store(false, Ordering::SeqCst);
        self.thread.unpark();
        while st.written < target && !(st.closed && st.buf.is_empty() && st.written == st.taken) {
            st = self.shared.progress.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for BufferedWriter {
    fn drop(&mut self) {
        self.close();
    }
}

fn run<W: Write>(shared: &Shared, mut out: W) {
    let mut spare: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let mut st = shared.lock();
        if st.buf.is_empty() {
            if st.closed {
                return;
            }
            // Publish "idle" and re-check under the lock: an appender either sees the flag and
            // wakes us, or appended before our check and we see its line.
            shared.idle.store(true, Ordering::SeqCst);
            drop(st);
            thread::park();
            shared.idle.store(false, Ordering::SeqCst);
            continue;
        }
        let mut batch = std::mem::replace(&mut st.buf, std::mem::take(&mut spare));
        st.taken += 1;
        let closed = st.closed;
        drop(st);
        shared.progress.notify_all();

        // A failing output (closed pipe, full disk) must not stop the proxy; lines are lost
        // then, as they would be with direct writes.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if batch.capacity() > 4 * 1024 * 1024 {
            // Do not keep a burst's worth of memory forever.
            batch = Vec::with_capacity(64 * 1024);
        }
        spare = batch;
        shared.lock().written += 1;
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
        let w = Arc::new(BufferedWriter::new(m.clone(), 64).unwrap());
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
    fn drop_writes_what_is_left() {
        let m = Mem::default();
        let w = BufferedWriter::new(m.clone(), 1 << 20).unwrap();
        w.line("a\n");
        w.line("b\n");
        drop(w);
        assert_eq!(text(&m), "a\nb\n");
    }
}
