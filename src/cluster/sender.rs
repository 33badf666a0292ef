//! One sender per destination: a bounded queue drained by a few connections, in plaintext or
//! carbon's pickle framing (COMPAT.md §2.12).
//!
//! While the node is down its points wait in the queue and go out when it returns; only a full
//! queue drops, and every drop is counted (carbon's `fullQueueDrops`) — unless it spills, or,
//! for the stream listeners under flow control, makes them wait for room (carbon's
//! `USE_FLOW_CONTROL`: the listener stops reading, TCP slows its client down). A batch whose write
//! fails is put back at the head of the queue, so a broken connection costs a resend, not the
//! points. Plaintext and pickle have no acknowledgement: before each batch the connection is
//! checked for the peer's close, which makes a peer's orderly shutdown lossless; a peer that
//! crashes loses whatever its kernel had accepted and it had not read — as with carbon-relay
//! and carbon-c-relay.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use super::{DEFAULT_RECONNECT_MAX_DELAY, Destination};
use crate::error::{Error, Result};
use crate::journal::{FsyncPolicy, Journal, JournalOptions};
use crate::points::Point;

/// Wire format towards a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `name value timestamp\n` lines (port 2003).
    Plain,
    /// carbon's pickle receiver framing: u32 big-endian length + pickle protocol 2 list of
    /// `(name, (timestamp, value))` (port 2004, carbon-relay's default).
    Pickle,
}

/// How a sender queues, batches and reconnects.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// Wire format.
    pub protocol: Protocol,
    /// Points held at most (queued or being written); past it new points spill, wait
    /// (`flow_control`) or are dropped and counted (carbon's `MAX_QUEUE_SIZE`, 10000).
    pub queue_size: usize,
    /// Points per write (carbon's `MAX_DATAPOINTS_PER_MESSAGE`, 500).
    pub batch_size: usize,
    /// Connections per destination draining the same queue.
    pub connections: usize,
    /// Bound on one connect attempt.
    pub connect_timeout: Duration,
    /// Bound on one write; a stalled peer then counts as down.
    pub io_timeout: Duration,
    /// Reconnect backoff doubles from 100 ms up to this (carbon's `maxDelay`, 5 s).
    pub reconnect_max_delay: Duration,
    /// Where points go once `queue_size` is reached (a [`Journal`] in this directory), so a
    /// node that is down for long costs disk, not points. `None` = drop past `queue_size`.
    pub spill_dir: Option<PathBuf>,
    /// Bytes the spill may take on disk; past it points are dropped and counted. 0 = no cap.
    pub spill_max_size: u64,
    /// carbon's `USE_FLOW_CONTROL`: without a spill, [`Sender::send_waiting`] (the stream
    /// listeners' path) waits for room in a full queue instead of dropping.
    pub flow_control: bool,
}

impl Default for SenderOptions {
    fn default() -> Self {
        SenderOptions {
            protocol: Protocol::Pickle,
            queue_size: 10_000,
            batch_size: 500,
            connections: 1,
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(5),
            reconnect_max_delay: DEFAULT_RECONNECT_MAX_DELAY,
            spill_dir: None,
            spill_max_size: DEFAULT_SPILL_MAX_SIZE,
            flow_control: true,
        }
    }
}

/// Default cap of one destination's spill: 1 GiB, about 25 million points.
pub const DEFAULT_SPILL_MAX_SIZE: u64 = 1 << 30;

/// Points appended to the spill journal as one record.
const SPILL_RECORD: usize = 4096;

/// Once the listeners are stopping, how long a flow-controlled point still waits for a
/// destination that has written nothing: a live destination keeps taking points during a
/// close, a dead one no longer holds the close up.
const STOPPING_PATIENCE: Duration = Duration::from_secs(1);

/// What [`Sender::offer`] did with a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued in memory or in the spill.
    Queued,
    /// Refused and counted in `dropped` (full without flow control, or stopped).
    Dropped,
    /// The queue is full and flow control applies: nothing done, nothing counted; the caller
    /// waits with [`Sender::send_waiting`].
    Full,
}

/// Counters of one destination, named as carbon's `destinations.<d>.*`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Points written to a connection.
    pub sent: u64,
    /// Points waiting now, queued or in a connection's hands (gauge).
    pub queued: u64,
    /// Points refused because the queue was full.
    pub dropped: u64,
    /// Connections established after a connection was lost or refused.
    pub reconnects: u64,
    /// Connect attempts that failed.
    pub connect_failures: u64,
    /// Batches whose write failed and were put back in the queue.
    pub requeued_batches: u64,
    /// Points written to the spill journal because the memory queue was full (counter).
    pub spilled: u64,
    /// Points a stream listener held back until the full queue had room (flow control;
    /// carbon-c-relay's `metricStalls`).
    pub stalls: u64,
}

struct Queue {
    items: VecDeque<(String, Point)>,
    closed: bool,
    /// Set when the memory queue first fills; from then on every new point goes to the spill
    /// (so delivery stays in arrival order) until the spill is empty again.
    spilling: bool,
    /// Spilled points not yet appended to the journal (appended by `SPILL_RECORD`).
    spill_buf: Vec<(String, Point)>,
    /// Spilled points not yet moved back into `items`: in `spill_buf`, being appended, or in
    /// the journal. Counted in `queued`, and `wait_idle` waits for them.
    spill_outstanding: u64,
}

/// The on-disk overflow of one destination: a journal that is reopened to read back what was
/// spilled (a journal replays only segments of earlier opens) and released once delivered.
struct Spill {
    dir: PathBuf,
    opts: JournalOptions,
    /// Appenders share it; the drainer takes it exclusively to reopen.
    journal: RwLock<Option<Journal>>,
}

struct Inner {
    dest: Destination,
    opts: SenderOptions,
    queue: Mutex<Queue>,
    ready: Condvar,
    idle: Condvar,
    /// Points taken by a connection and not yet written (for `wait_idle`).
    in_flight: AtomicU64,
    stop: AtomicBool,
    sent: AtomicU64,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    requeued: AtomicU64,
    spilled: AtomicU64,
    stalls: AtomicU64,
    /// Milliseconds from `born` to the last batch written (for [`STOPPING_PATIENCE`]).
    progress_ms: AtomicU64,
    born: Instant,
    spill: Option<Spill>,
}

impl Inner {
    /// Points held: queued in memory or in a batch being written (what `queue_size` bounds).
    fn held(&self, q: &Queue) -> usize {
        q.items.len() + self.in_flight.load(Relaxed) as usize
    }

    /// Queues the point if the queue is open and has room, and wakes a connection; otherwise
    /// drops it and counts the drop. Returns whether it was queued.
    fn enqueue(&self, mut q: parking_lot::MutexGuard<'_, Queue>, name: &str, p: Point) -> bool {
        if q.closed || self.held(&q) >= self.opts.queue_size {
            drop(q);
            self.dropped.fetch_add(1, Relaxed);
            return false;
        }
        q.items.push_back((name.to_owned(), p));
        drop(q);
        self.ready.notify_one();
        true
    }
}

/// The queue and connections of one destination. Dropping it stops the connection threads;
/// points still queued then are abandoned (call [`Sender::wait_idle`] first to deliver them).
pub struct Sender {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Sender {
    /// Starts `opts.connections` threads sending to `dest`, and with `opts.spill_dir` the
    /// spill drainer, which first delivers what an earlier run left spilled there. A spill
    /// directory that cannot be opened leaves the sender without spill (points past the
    /// queue bound are then dropped and counted), since a relay must keep relaying. Fails only
    /// when the OS refuses a thread.
    pub fn start(dest: Destination, opts: SenderOptions) -> Result<Sender> {
        let n = opts.connections.max(1);
        let mut leftover = 0;
        let spill = opts.spill_dir.as_ref().and_then(|dir| {
            let jopts = JournalOptions {
                // The spill bounds memory; it does not promise durability (the memory queue
                // in front of it does not either), so no fsync.
                fsync: FsyncPolicy::Never,
                segment_size: 8 << 20,
                max_size: opts.spill_max_size,
                ..JournalOptions::default()
            };
            let (j, replay) = Journal::open(dir, jopts.clone()).ok()?;
            leftover = replay.report().entries;
            Some(Spill {
                dir: dir.clone(),
                opts: jopts,
                journal: RwLock::new(Some(j)),
            })
        });
        let has_spill = spill.is_some();
        let inner = Arc::new(Inner {
            dest,
            opts,
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                closed: false,
                spilling: leftover > 0,
                spill_buf: Vec::new(),
                spill_outstanding: leftover,
            }),
            ready: Condvar::new(),
            idle: Condvar::new(),
            in_flight: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            requeued: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            stalls: AtomicU64::new(0),
            progress_ms: AtomicU64::new(0),
            born: Instant::now(),
            spill,
        });
        let sender = Sender {
            inner,
            threads: Mutex::new(Vec::new()),
        };
        // A thread the OS refuses is an error for the caller; dropping `sender` stops the
        // threads already started.
        for i in 0..n {
            let inner = Arc::clone(&sender.inner);
            sender.spawn(
                format!("carbonlite-send-{}-{i}", inner.dest.port),
                move || connection_loop(&inner),
            )?;
        }
        if has_spill {
            let inner = Arc::clone(&sender.inner);
            sender.spawn(format!("carbonlite-spill-{}", inner.dest.port), move || {
                spill_loop(&inner)
            })?;
        }
        Ok(sender)
    }

    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let t = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .map_err(|e| Error::io(name, e))?;
        self.threads.lock().push(t);
        Ok(())
    }

    /// The destination.
    pub fn destination(&self) -> &Destination {
        &self.inner.dest
    }

    /// Queues one point (in memory, or past `queue_size` in the spill); false if it was
    /// dropped (counted) because the queue was full and there is no spill.
    pub fn send(&self, name: &str, p: Point) -> bool {
        self.push(name, p, false) == Offered::Queued
    }

    /// [`Sender::send`] that leaves a point the full queue has no room for to the caller when
    /// flow control applies ([`Offered::Full`], nothing counted), so it can queue the point's
    /// other copies before waiting here.
    pub fn offer(&self, name: &str, p: Point) -> Offered {
        self.push(name, p, true)
    }

    /// Whether a full queue holds stream listeners back: `flow_control` on and no spill to
    /// absorb the overflow.
    pub fn flow_control(&self) -> bool {
        self.inner.opts.flow_control && self.inner.spill.is_none()
    }

    fn push(&self, name: &str, p: Point, hold: bool) -> Offered {
        let mut q = self.inner.queue.lock();
        let held = self.inner.held(&q);
        if !q.closed
            && self.inner.spill.is_some()
            && (q.spilling || held >= self.inner.opts.queue_size)
        {
            q.spilling = true;
            q.spill_outstanding += 1;
            q.spill_buf.push((name.to_owned(), p));
            if q.spill_buf.len() >= SPILL_RECORD {
                let buf = std::mem::take(&mut q.spill_buf);
                drop(q);
                append_spill(&self.inner, buf);
            }
            return Offered::Queued;
        }
        if !q.closed && held >= self.inner.opts.queue_size && hold && self.flow_control() {
            return Offered::Full;
        }
        if self.inner.enqueue(q, name, p) {
            Offered::Queued
        } else {
            Offered::Dropped
        }
    }

    /// Queues one point for a stream listener: with [`Sender::flow_control`], a full queue
    /// makes the caller wait (counted once in `stalls`) until it is below 80% of `queue_size`
    /// (carbon's `QUEUE_LOW_WATERMARK_PCT`), so the listener stops reading its socket. The
    /// wait ends, and the point is dropped and counted, when the sender stops, or once
    /// `stopping` is set and the destination has written nothing for a second. Without flow
    /// control this is [`Sender::send`].
    pub fn send_waiting(&self, name: &str, p: Point, stopping: &AtomicBool) -> bool {
        if !self.flow_control() {
            return self.send(name, p);
        }
        let inner = &*self.inner;
        let size = inner.opts.queue_size;
        let mut q = inner.queue.lock();
        if !q.closed && inner.held(&q) >= size {
            let mut stalled = false;
            // Resume below 80%: held * 5 < size * 4 (an empty queue for size 1).
            while !q.closed && inner.held(&q) * 5 >= size * 4 {
                if stopping.load(Relaxed) {
                    let idle_ms = (inner.born.elapsed().as_millis() as u64)
                        .saturating_sub(inner.progress_ms.load(Relaxed));
                    if idle_ms >= STOPPING_PATIENCE.as_millis() as u64 {
                        break;
                    }
                }
                if !stalled {
                    stalled = true;
                    inner.stalls.fetch_add(1, Relaxed);
                }
                inner.idle.wait_for(&mut q, Duration::from_millis(100));
            }
        }
        inner.enqueue(q, name, p)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SenderStats {
        let i = &self.inner;
        let (items, spill) = {
            let q = i.queue.lock();
            (q.items.len() as u64, q.spill_outstanding)
        };
        SenderStats {
            spilled: i.spilled.load(Relaxed),
            sent: i.sent.load(Relaxed),
            queued: items + spill + i.in_flight.load(Relaxed),
            dropped: i.dropped.load(Relaxed),
            reconnects: i.reconnects.load(Relaxed),
            connect_failures: i.connect_failures.load(Relaxed),
            requeued_batches: i.requeued.load(Relaxed),
            stalls: i.stalls.load(Relaxed),
        }
    }

    /// Waits until everything queued has been written, or `timeout`; true if it has.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let idle = |q: &Queue| {
            q.items.is_empty()
                && q.spill_outstanding == 0
                && self.inner.in_flight.load(Relaxed) == 0
        };
        let mut q = self.inner.queue.lock();
        while !idle(&q) {
            if self.inner.idle.wait_until(&mut q, deadline).timed_out() {
                return idle(&q);
            }
        }
        true
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Sender {
    /// Stops the connection threads; what is still held goes to the spill (delivered by the
    /// next start over the same directory) or, without spill, is abandoned. Later `send`s
    /// drop and count. Idempotent.
    pub fn stop(&self) {
        self.inner.stop.store(true, Relaxed);
        self.inner.queue.lock().closed = true;
        self.inner.ready.notify_all();
        self.inner.idle.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        if threads.is_empty() {
            return;
        }
        for t in threads {
            let _ = t.join();
        }
        if self.inner.spill.is_some() {
            // Whatever is still held joins the spill, which the next start delivers.
            let buf = {
                let mut q = self.inner.queue.lock();
                let mut buf: Vec<_> = q.items.drain(..).collect();
                buf.append(&mut q.spill_buf);
                q.spill_outstanding += buf.len() as u64;
                buf
            };
            append_spill(&self.inner, buf);
        }
    }
}

/// Appends spilled points to the journal; if it refuses them (cap reached, disk error) they
/// are dropped and counted.
fn append_spill(inner: &Inner, buf: Vec<(String, Point)>) {
    let Some(spill) = &inner.spill else { return };
    if buf.is_empty() {
        return;
    }
    let n = buf.len() as u64;
    let refs: Vec<(&str, Point)> = buf.iter().map(|(s, p)| (s.as_str(), *p)).collect();
    let ok = spill
        .journal
        .read()
        .as_ref()
        .is_some_and(|j| j.append(&refs).is_ok());
    if ok {
        inner.spilled.fetch_add(n, Relaxed);
    } else {
        inner.dropped.fetch_add(n, Relaxed);
        let mut q = inner.queue.lock();
        q.spill_outstanding = q.spill_outstanding.saturating_sub(n);
        drop(q);
        inner.idle.notify_all();
    }
}

/// Moves spilled points back into the memory queue whenever it has room: reopen the journal
/// (which replays everything appended before), feed the replay in, release it once sent.
fn spill_loop(inner: &Inner) {
    let Some(spill) = &inner.spill else { return };
    let room = |q: &Queue| inner.held(q) < inner.opts.queue_size / 2 + 1;
    while !inner.stop.load(Relaxed) {
        let mut q = inner.queue.lock();
        if !q.spill_buf.is_empty() {
            // Spilled points wait in memory at most one tick.
            let buf = std::mem::take(&mut q.spill_buf);
            drop(q);
            append_spill(inner, buf);
            continue;
        }
        if !(q.spilling && room(&q)) {
            inner.idle.wait_for(&mut q, Duration::from_millis(100));
            continue;
        }
        if q.spill_outstanding == 0 {
            q.spilling = false;
            drop(q);
            inner.idle.notify_all();
            continue;
        }
        drop(q);
        let replay = {
            let mut j = spill.journal.write();
            // Close before reopening: the reopen then replays every sealed segment.
            *j = None;
            match Journal::open(&spill.dir, spill.opts.clone()) {
                Ok((nj, r)) => {
                    *j = Some(nj);
                    r
                }
                Err(_) => {
                    // Appends fail (and count drops) until a reopen works.
                    drop(j);
                    sleep_unless_stopped(inner, Duration::from_secs(1));
                    continue;
                }
            }
        };
        let mut fed = 0u64;
        let read = replay.for_each(|name, p| {
            let mut q = inner.queue.lock();
            while !room(&q) && !inner.stop.load(Relaxed) {
                inner.idle.wait_for(&mut q, Duration::from_millis(100));
            }
            if inner.stop.load(Relaxed) {
                return;
            }
            q.items.push_back((name.to_owned(), p));
            q.spill_outstanding = q.spill_outstanding.saturating_sub(1);
            fed += 1;
            drop(q);
            inner.ready.notify_one();
        });
        if read.is_err() || inner.stop.load(Relaxed) {
            // Not released: the next open replays it again (a resend, never a loss).
            if read.is_err() {
                let unread = replay.report().entries.saturating_sub(fed);
                inner.dropped.fetch_add(unread, Relaxed);
                let mut q = inner.queue.lock();
                q.spill_outstanding = q.spill_outstanding.saturating_sub(unread);
            }
            continue;
        }
        // Release only what has been written to a connection.
        let mut q = inner.queue.lock();
        while !(q.items.is_empty() && inner.in_flight.load(Relaxed) == 0) {
            if inner.stop.load(Relaxed) {
                return;
            }
            inner.idle.wait_for(&mut q, Duration::from_millis(100));
        }
        drop(q);
        if let Some(j) = spill.journal.read().as_ref() {
            let _ = j.release(replay.upto());
        }
    }
}

fn connection_loop(inner: &Inner) {
    let mut conn: Option<TcpStream> = None;
    let mut backoff = Duration::from_millis(100);
    // The first connection of this slot is a connect, every later one a reconnect.
    let mut first = true;
    let mut batch: Vec<(String, Point)> = Vec::with_capacity(inner.opts.batch_size);
    let mut buf = Vec::new();
    while !inner.stop.load(Relaxed) {
        if batch.is_empty() && !take_batch(inner, &mut batch) {
            return;
        }
        if conn.as_ref().is_some_and(|c| !still_open(c)) {
            conn = None;
        }
        let stream = match conn.as_mut() {
            Some(s) => s,
            None => match connect(inner) {
                Ok(s) => {
                    backoff = Duration::from_millis(100);
                    if !first {
                        inner.reconnects.fetch_add(1, Relaxed);
                    }
                    first = false;
                    conn.insert(s)
                }
                Err(_) => {
                    first = false;
                    inner.connect_failures.fetch_add(1, Relaxed);
                    sleep_unless_stopped(inner, backoff);
                    backoff = (backoff * 2).min(inner.opts.reconnect_max_delay.max(backoff));
                    continue;
                }
            },
        };
        buf.clear();
        encode(inner.opts.protocol, &batch, &mut buf);
        match stream.write_all(&buf).and_then(|()| stream.flush()) {
            Ok(()) => {
                let n = batch.len() as u64;
                batch.clear();
                inner.sent.fetch_add(n, Relaxed);
                inner.in_flight.fetch_sub(n, Relaxed);
                inner
                    .progress_ms
                    .store(inner.born.elapsed().as_millis() as u64, Relaxed);
                let _q = inner.queue.lock();
                inner.idle.notify_all();
            }
            Err(_) => {
                // Put the batch back at the head, in order, and reconnect; the points may be
                // sent twice (the peer may have read part of it), never dropped.
                conn = None;
                inner.requeued.fetch_add(1, Relaxed);
                let mut q = inner.queue.lock();
                let n = batch.len() as u64;
                for item in batch.drain(..).rev() {
                    q.items.push_front(item);
                }
                inner.in_flight.fetch_sub(n, Relaxed);
                drop(q);
                inner.ready.notify_one();
            }
        }
    }
    // Stopping with a batch in hand: give it back so stats stay truthful.
    if !batch.is_empty() {
        let n = batch.len() as u64;
        let mut q = inner.queue.lock();
        for item in batch.drain(..).rev() {
            q.items.push_front(item);
        }
        inner.in_flight.fetch_sub(n, Relaxed);
    }
}

/// Blocks for the next batch; false once the sender is stopping.
fn take_batch(inner: &Inner, batch: &mut Vec<(String, Point)>) -> bool {
    let mut q = inner.queue.lock();
    loop {
        if inner.stop.load(Relaxed) || q.closed {
            return false;
        }
        if !q.items.is_empty() {
            let n = q.items.len().min(inner.opts.batch_size.max(1));
            batch.extend(q.items.drain(..n));
            inner.in_flight.fetch_add(n as u64, Relaxed);
            return true;
        }
        inner.ready.wait(&mut q);
    }
}

fn connect(inner: &Inner) -> io::Result<TcpStream> {
    let addrs = (inner.dest.host.as_str(), inner.dest.port).to_socket_addrs()?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, inner.opts.connect_timeout) {
            Ok(s) => {
                s.set_nodelay(true)?;
                s.set_write_timeout(Some(inner.opts.io_timeout))?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether the peer has not closed its side. A carbon receiver never writes, so a readable
/// socket means EOF or an error; writing into it would lose the batch to the peer's reset.
fn still_open(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 64];
    let open = match (&*s).read(&mut byte) {
        Ok(0) => false,
        Ok(_) => true, // stray bytes from the peer: ignore them
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    open && s.set_nonblocking(false).is_ok()
}

/// Backoff pause; new points arriving do not cut it short, a stop does.
fn sleep_unless_stopped(inner: &Inner, d: Duration) {
    let deadline = Instant::now() + d;
    let mut q = inner.queue.lock();
    while !inner.stop.load(Relaxed) && !q.closed {
        if inner.ready.wait_until(&mut q, deadline).timed_out() {
            return;
        }
    }
}

/// Encodes `points` in `protocol`, appending to `out`.
pub fn encode(protocol: Protocol, points: &[(String, Point)], out: &mut Vec<u8>) {
    match protocol {
        Protocol::Plain => {
            for (name, p) in points {
                // `{}` of f64 is the shortest text that parses back to the same value.
                let _ = writeln!(out, "{} {} {}", name, p.value, p.timestamp);
            }
        }
        Protocol::Pickle => {
            let start = out.len();
            out.extend_from_slice(&[0, 0, 0, 0]);
            encode_pickle(points, out);
            let len = (out.len() - start - 4) as u32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// Pickle protocol 2 of `[(name, (timestamp, value)), ...]`, as carbon's pickle receiver
/// loads it (`pickle.loads`, or carbon's safe unpickler, which allows these opcodes only).
pub fn encode_pickle(points: &[(String, Point)], out: &mut Vec<u8>) {
    out.extend_from_slice(&[0x80, 2]); // PROTO 2
    out.push(b']'); // EMPTY_LIST
    // APPENDS in chunks of 1000, as Python's pickler does.
    for chunk in points.chunks(1000) {
        out.push(b'('); // MARK
        for (name, p) in chunk {
            out.push(b'X'); // BINUNICODE
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            if let Ok(t) = i32::try_from(p.timestamp) {
                out.push(b'J'); // BININT
                out.extend_from_slice(&t.to_le_bytes());
            } else {
                out.push(0x8a); // LONG1: little-endian two's complement
                let bytes = p.timestamp.to_le_bytes();
                out.push(8);
                out.extend_from_slice(&bytes);
            }
            out.push(b'G'); // BINFLOAT, big-endian
            out.extend_from_slice(&p.value.to_bits().to_be_bytes());
            out.push(0x86); // TUPLE2 (timestamp, value)
            out.push(0x86); // TUPLE2 (name, ...)
        }
        out.push(b'e'); // APPENDS
    }
    out.push(b'.'); // STOP
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        let mut out = Vec::new();
        let pts = vec![
            (
                "a.b".to_string(),
                Point {
                    timestamp: 10,
                    value: 1.5,
                },
            ),
            (
                "c".to_string(),
                Point {
                    timestamp: 20,
                    value: -3.0,
                },
            ),
        ];
        encode(Protocol::Plain, &pts, &mut out);
        assert_eq!(out, b"a.b 1.5 10\nc -3 20\n");
    }

    #[test]
    fn pickle_golden_bytes() {
        let mut out = Vec::new();
        let pts = vec![(
            "ab".to_string(),
            Point {
                timestamp: 1,
                value: 2.0,
            },
        )];
        encode(Protocol::Pickle, &pts, &mut out);
        // python3 -c 'import pickle;print(pickle.dumps([("ab",(1,2.0))],2))' less memo opcodes.
        let body: &[u8] = b"\x80\x02](X\x02\x00\x00\x00abJ\x01\x00\x00\x00G@\x00\x00\x00\x00\x00\x00\x00\x86\x86e.";
        assert_eq!(&out[..4], &(body.len() as u32).to_be_bytes());
        assert_eq!(&out[4..], body);
    }

    /// A sender to port 1 on loopback, where nothing listens, so everything stays queued;
    /// short timeouts so it retries and stops quickly.
    fn unreachable(opts: SenderOptions) -> Sender {
        let opts = SenderOptions {
            reconnect_max_delay: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(100),
            ..opts
        };
        Sender::start(Destination::parse("127.0.0.1:1").unwrap(), opts).unwrap()
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let s = unreachable(SenderOptions {
            queue_size: 3,
            ..SenderOptions::default()
        });
        let p = Point {
            timestamp: 1,
            value: 1.0,
        };
        let accepted = (0..10).filter(|i| s.send(&format!("m{i}"), p)).count();
        // The bound counts the batch a connection holds too.
        assert_eq!(accepted, 3);
        let st = s.stats();
        assert_eq!(st.dropped, 10 - accepted as u64);
        assert_eq!(st.sent, 0);
        assert!(!s.wait_idle(Duration::from_millis(50)));
    }

    #[test]
    fn flow_control_leaves_a_full_queue_to_the_caller() {
        let s = unreachable(SenderOptions {
            queue_size: 2,
            ..SenderOptions::default()
        });
        assert!(s.flow_control());
        let p = Point {
            timestamp: 1,
            value: 1.0,
        };
        assert_eq!(s.offer("a", p), Offered::Queued);
        assert_eq!(s.offer("b", p), Offered::Queued);
        // Full: nothing queued, nothing counted; the embedded path still drops and counts.
        assert_eq!(s.offer("c", p), Offered::Full);
        assert_eq!((s.stats().dropped, s.stats().queued), (0, 2));
        assert!(!s.send("c", p));
        assert_eq!(s.stats().dropped, 1);
        // A stopped sender never makes a listener wait: dropped and counted at once.
        s.stop();
        assert_eq!(s.offer("d", p), Offered::Dropped);
        assert!(!s.send_waiting("d", p, &AtomicBool::new(false)));
        assert_eq!((s.stats().dropped, s.stats().stalls), (3, 0));
        drop(s);
        // With a spill the overflow goes to disk: nobody waits.
        let dir = tempfile::tempdir().unwrap();
        let s = unreachable(SenderOptions {
            queue_size: 2,
            spill_dir: Some(dir.path().to_path_buf()),
            ..SenderOptions::default()
        });
        assert!(!s.flow_control());
        for name in ["a", "b", "c"] {
            assert_eq!(s.offer(name, p), Offered::Queued);
        }
    }
}
