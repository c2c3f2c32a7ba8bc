//! The exchange of blocks between DSGD workers, behind a small trait ([`BlockExchange`]) so a
//! transport other than timely's (MPI, say) can be added without touching the trainer.
//!
//! The one transport today is timely-dataflow's communication layer: worker threads of one
//! process pass messages by moving them; processes pass them over TCP. gpumf opens the sockets
//! itself (timely's own set-up retries forever and prints to stdout), shakes hands on them to
//! compare every process's settings and data, and hands them to timely.

use crate::error::{Error, Result};
use crate::objective::LossSums;
use crate::vector::CacheLines;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timely_communication::allocator::zero_copy::initialize::{initialize_networking_from_sockets, CommsGuard};
use timely_communication::allocator::ProcessBuilder;
use timely_communication::{Allocator, AllocatorBuilder, Bytesable, Hooks, Pull, Push};

/// What one worker sends another.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Factor rows with their biases: an item half on its way to the stratum `tag`, a copy of
    /// one for scoring, or a worker's rows at the end.
    Rows { kind: RowsKind, id: u32, tag: u64, factors: CacheLines, bias: Vec<f32> },
    /// Errors of one epoch, block by block (train or test), and the bytes the sender sent.
    Sums { epoch: u32, test: bool, blocks: Vec<(u32, LossSums)>, sent_bytes: u64 },
    /// The sender failed and stops: the others stop too, at once, rather than wait for it.
    Stop { worker: u32, reason: String },
    /// The items each user of a stripe rated, encoded as the model file keeps them.
    Seen { stripe: u32, runs: Vec<u8> },
    /// The SVD++ term: a stripe's part of the items' gradient after an epoch, to worker 0.
    Gradient { epoch: u32, stripe: u32, values: Vec<f32> },
    /// The SVD++ term: Σ n_j |q_j|² of each item half the sender holds after an epoch.
    Norms { epoch: u32, halves: Vec<(u32, f64)> },
    /// The SVD++ term: the items' vectors y after an epoch, from worker 0.
    ItemVectors { epoch: u32, values: Vec<f32> },
    /// The whole cluster's figures of an epoch, from worker 0 to the first worker of each other
    /// process, so every process's training loop sees the same epochs.
    Figures { epoch: u32, train: LossSums, test: Option<LossSums>, sent_bytes: u64 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RowsKind {
    /// An item half, for the stratum its tag names.
    Half = 0,
    /// A copy of an item half as it stands after epoch `tag`, for scoring the test set.
    Copy = 1,
    /// A user stripe's final rows, for the model.
    Stripe = 2,
    /// An item half's final rows, for the model.
    Final = 3,
    /// ALS: the rows one process solved in a half-epoch, for every other process (its tag
    /// names the half-epoch).
    Solved = 4,
}

/// Bytes of one block's sums on the wire: its number, count and four sums.
const SUMS_BYTES: u64 = 4 + 8 + 4 * 8;

impl Message {
    /// A message as [`Bytesable::into_bytes`] wrote it; `None` where the bytes end first.
    fn read(r: &mut Reader) -> Option<Message> {
        Some(match r.u8()? {
            0 => {
                let kind = match r.u8()? {
                    0 => RowsKind::Half,
                    1 => RowsKind::Copy,
                    2 => RowsKind::Stripe,
                    3 => RowsKind::Final,
                    _ => RowsKind::Solved,
                };
                let (id, tag) = (r.u32()?, r.u64()?);
                let (factors, bias) = (r.floats()?.into(), r.floats()?);
                Message::Rows { kind, id, tag, factors, bias }
            }
            1 => {
                let (epoch, test, sent_bytes) = (r.u32()?, r.u8()? != 0, r.u64()?);
                let n = r.u64()?;
                let blocks = (0..n).map(|_| Some((r.u32()?, r.sums()?))).collect::<Option<_>>()?;
                Message::Sums { epoch, test, blocks, sent_bytes }
            }
            2 => {
                let (worker, n) = (r.u32()?, usize::try_from(r.u64()?).ok()?);
                Message::Stop { worker, reason: String::from_utf8_lossy(r.take(n)?).into_owned() }
            }
            3 => {
                let (stripe, n) = (r.u32()?, usize::try_from(r.u64()?).ok()?);
                Message::Seen { stripe, runs: r.take(n)?.to_vec() }
            }
            4 => {
                let (epoch, stripe) = (r.u32()?, r.u32()?);
                Message::Gradient { epoch, stripe, values: r.floats()? }
            }
            5 => {
                let (epoch, n) = (r.u32()?, r.u64()?);
                Message::Norms { epoch, halves: (0..n).map(|_| Some((r.u32()?, r.f64()?))).collect::<Option<_>>()? }
            }
            6 => {
                let epoch = r.u32()?;
                Message::ItemVectors { epoch, values: r.floats()? }
            }
            _ => {
                let (epoch, sent_bytes, train) = (r.u32()?, r.u64()?, r.sums()?);
                let test = if r.u8()? != 0 { Some(r.sums()?) } else { None };
                Message::Figures { epoch, train, test, sent_bytes }
            }
        })
    }

    /// Bytes of factor rows and biases the message carries.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            Message::Rows { factors, bias, .. } => 4 * (factors.len() + bias.len()) as u64,
            Message::Sums { blocks, .. } => SUMS_BYTES * blocks.len() as u64,
            Message::Stop { .. } => 0,
            Message::Seen { runs, .. } => runs.len() as u64,
            Message::Gradient { values, .. } | Message::ItemVectors { values, .. } => 4 * values.len() as u64,
            Message::Norms { halves, .. } => 12 * halves.len() as u64,
            Message::Figures { .. } => 2 * SUMS_BYTES,
        }
    }

    /// The first byte of a message on the wire, which says its kind ([`Message::read`] reads it).
    fn tag(&self) -> u8 {
        match self {
            Message::Rows { .. } => 0,
            Message::Sums { .. } => 1,
            Message::Stop { .. } => 2,
            Message::Seen { .. } => 3,
            Message::Gradient { .. } => 4,
            Message::Norms { .. } => 5,
            Message::ItemVectors { .. } => 6,
            Message::Figures { .. } => 7,
        }
    }
}

/// Reads little-endian fields in order: a message's (timely hands back whole messages it was
/// given) or a checkpoint's ([`super::checkpoint`]); `None` where the bytes end first.
pub(super) struct Reader<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    pub fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    /// A count, then as many floats.
    pub fn floats(&mut self) -> Option<Vec<f32>> {
        let n = usize::try_from(self.u64()?).ok()?;
        Some(self.take(n.checked_mul(4)?)?.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect())
    }
    fn sums(&mut self) -> Option<LossSums> {
        let count = self.u64()?;
        Some(LossSums { count, loss: self.f64()?, squared: self.f64()?, absolute: self.f64()?, correct: self.f64()? })
    }
}

fn put_sums(put: &mut impl FnMut(&[u8]), s: &LossSums) {
    put(&s.count.to_le_bytes());
    for v in [s.loss, s.squared, s.absolute, s.correct] {
        put(&v.to_le_bytes());
    }
}

fn put_floats(put: &mut impl FnMut(&[u8]), values: &[f32]) {
    put(&(values.len() as u64).to_le_bytes());
    put(bytemuck::cast_slice(values));
}

// The wire format writes f32 and f64 in the machine's order: little-endian on every platform
// gpumf builds for; a big-endian build would need byte swaps here.
#[cfg(not(target_endian = "little"))]
compile_error!("the DSGD wire format assumes a little-endian machine");

impl Bytesable for Message {
    fn from_bytes(bytes: timely_bytes::arc::Bytes) -> Self {
        Message::read(&mut Reader { bytes: &bytes, at: 0 }).expect("timely hands back whole messages")
    }

    fn length_in_bytes(&self) -> usize {
        let sums = SUMS_BYTES as usize - 4;
        match self {
            Message::Rows { factors, bias, .. } => 1 + 1 + 4 + 8 + 8 + 4 * factors.len() + 8 + 4 * bias.len(),
            Message::Sums { blocks, .. } => 1 + 4 + 1 + 8 + 8 + SUMS_BYTES as usize * blocks.len(),
            Message::Stop { reason, .. } => 1 + 4 + 8 + reason.len(),
            Message::Seen { runs, .. } => 1 + 4 + 8 + runs.len(),
            Message::Gradient { values, .. } => 1 + 4 + 4 + 8 + 4 * values.len(),
            Message::Norms { halves, .. } => 1 + 4 + 8 + 12 * halves.len(),
            Message::ItemVectors { values, .. } => 1 + 4 + 8 + 4 * values.len(),
            Message::Figures { test, .. } => 1 + 4 + 8 + sums + 1 + if test.is_some() { sums } else { 0 },
        }
    }

    fn into_bytes<W: Write>(&self, writer: &mut W) {
        // timely writes into memory it has sized with `length_in_bytes`: this cannot fail.
        let mut put = |b: &[u8]| writer.write_all(b).expect("timely's buffer holds the message");
        put(&[self.tag()]);
        match self {
            Message::Rows { kind, id, tag, factors, bias } => {
                put(&[*kind as u8]);
                put(&id.to_le_bytes());
                put(&tag.to_le_bytes());
                put_floats(&mut put, factors);
                put_floats(&mut put, bias);
            }
            Message::Sums { epoch, test, blocks, sent_bytes } => {
                put(&epoch.to_le_bytes());
                put(&[*test as u8]);
                put(&sent_bytes.to_le_bytes());
                put(&(blocks.len() as u64).to_le_bytes());
                for (b, s) in blocks {
                    put(&b.to_le_bytes());
                    put_sums(&mut put, s);
                }
            }
            Message::Stop { worker, reason } => {
                put(&worker.to_le_bytes());
                put(&(reason.len() as u64).to_le_bytes());
                put(reason.as_bytes());
            }
            Message::Seen { stripe, runs } => {
                put(&stripe.to_le_bytes());
                put(&(runs.len() as u64).to_le_bytes());
                put(runs);
            }
            Message::Gradient { epoch, stripe, values } => {
                put(&epoch.to_le_bytes());
                put(&stripe.to_le_bytes());
                put_floats(&mut put, values);
            }
            Message::Norms { epoch, halves } => {
                put(&epoch.to_le_bytes());
                put(&(halves.len() as u64).to_le_bytes());
                for (h, n) in halves {
                    put(&h.to_le_bytes());
                    put(&n.to_le_bytes());
                }
            }
            Message::ItemVectors { epoch, values } => {
                put(&epoch.to_le_bytes());
                put_floats(&mut put, values);
            }
            Message::Figures { epoch, train, test, sent_bytes } => {
                put(&epoch.to_le_bytes());
                put(&sent_bytes.to_le_bytes());
                put_sums(&mut put, train);
                put(&[test.is_some() as u8]);
                if let Some(test) = test {
                    put_sums(&mut put, test);
                }
            }
        }
    }
}

/// How DSGD workers reach each other. Workers are numbered `0..workers()` across every
/// process; a message from one worker to another arrives once, and messages between two
/// workers arrive in the order sent.
pub trait BlockExchange {
    /// This worker's number.
    fn worker(&self) -> usize;
    /// Workers in the whole cluster.
    fn workers(&self) -> usize;
    /// Sends `message` to worker `to` (another worker: a worker keeps its own blocks).
    fn send(&mut self, to: usize, message: Message);
    /// Appends the messages that have arrived to `into`, waiting at most `wait` for one.
    fn receive(&mut self, wait: Duration, into: &mut Vec<Message>);
}

/// [`BlockExchange`] over timely's allocators.
pub struct TimelyExchange {
    allocator: Allocator,
    pushers: Vec<Box<dyn Push<Message>>>,
    puller: Box<dyn Pull<Message>>,
}

impl TimelyExchange {
    pub fn new(mut allocator: Allocator) -> TimelyExchange {
        let (pushers, puller) = allocator.allocate(0);
        TimelyExchange { allocator, pushers, puller }
    }

    fn drain(&mut self, into: &mut Vec<Message>) -> bool {
        self.allocator.receive();
        let before = into.len();
        while let Some(message) = self.puller.recv() {
            into.push(message);
        }
        self.allocator.release();
        into.len() > before
    }
}

impl BlockExchange for TimelyExchange {
    fn worker(&self) -> usize {
        self.allocator.index()
    }

    fn workers(&self) -> usize {
        self.allocator.peers()
    }

    fn send(&mut self, to: usize, message: Message) {
        self.pushers[to].send(message);
        self.pushers[to].done();
        self.allocator.release();
    }

    fn receive(&mut self, wait: Duration, into: &mut Vec<Message>) {
        if !self.drain(into) {
            self.allocator.await_events(Some(wait));
            self.drain(into);
        }
    }
}

/// Timely allocators for the workers of this process, and what must outlive them.
pub struct Transport {
    pub builders: Vec<AllocatorBuilder>,
    /// The TCP send and receive threads (none in one process). Dropping it waits for them,
    /// and panics if a peer vanished: after a failure it is forgotten instead.
    pub comms: Option<CommsGuard>,
}

/// Threads of one process.
pub fn in_process(workers: usize) -> Transport {
    let hooks = Hooks::default();
    let builders = ProcessBuilder::new_typed_vector(workers, hooks.refill, hooks.spill).into_iter().map(AllocatorBuilder::Process).collect();
    Transport { builders, comms: None }
}

/// What a process says of itself when it connects: compared field by field, so two processes
/// started with different settings or data stop at once, naming the difference.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    pub process: usize,
    pub processes: usize,
    /// Each field is compared as text, e.g. "rank" → "32", "data" → a checksum.
    pub settings: Vec<(String, String)>,
}

const MAGIC: &[u8; 8] = b"gpumfDSG";

/// Process `me` of the cluster at `hosts` (one `host:port` per process): listens on its own
/// line, connects to the processes before it and accepts those after it, compares `hello`
/// with each, and hands the sockets to timely. Gives up after `timeout` naming who is missing.
pub fn over_tcp(hosts: &[String], me: usize, workers: usize, hello: &Hello, timeout: Duration) -> Result<Transport> {
    let now = Instant::now();
    let deadline = now.checked_add(timeout).unwrap_or(now + Duration::from_secs(3600));
    let listener = TcpListener::bind(&hosts[me]).map_err(|e| Error::Cluster(format!("process {me} cannot listen on {} (its line of the host file): {e}", hosts[me])))?;
    listener.set_nonblocking(true).map_err(|e| Error::Cluster(format!("listening on {}: {e}", hosts[me])))?;
    let mut sockets: Vec<Option<TcpStream>> = (0..hosts.len()).map(|_| None).collect();
    // Connect to those before us, retrying while they start.
    for (peer, host) in hosts.iter().enumerate().take(me) {
        let stream = connect(peer, host, deadline, timeout)?;
        shake_hands(&stream, hello, Some(peer), host, hosts, deadline)?;
        sockets[peer] = Some(stream);
    }
    // Accept those after us.
    while sockets[me + 1..].iter().any(Option::is_none) {
        match listener.accept() {
            Ok((stream, from)) => {
                stream.set_nonblocking(false).map_err(|e| Error::Cluster(format!("a connection from {from}: {e}")))?;
                let theirs = shake_hands(&stream, hello, None, &from.to_string(), hosts, deadline)?;
                if theirs.process <= me || theirs.process >= hosts.len() || sockets[theirs.process].is_some() {
                    return Err(Error::Cluster(format!(
                        "{from} says it is process {}, which this process does not expect (it is process {me} of {})",
                        theirs.process,
                        hosts.len()
                    )));
                }
                sockets[theirs.process] = Some(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (me + 1..hosts.len()).filter(|&p| sockets[p].is_none()).map(|p| format!("process {p} ({})", hosts[p])).collect();
                    return Err(Error::Cluster(format!("{} did not connect within {} s: is it running, with this host file?", missing.join(", "), timeout.as_secs())));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::Cluster(format!("accepting on {}: {e}", hosts[me]))),
        }
    }
    for socket in sockets.iter().flatten() {
        // No delay: blocks are large, but the sums and the last half of a stratum are not.
        socket.set_nodelay(true).map_err(|e| Error::Cluster(e.to_string()))?;
        socket.set_read_timeout(None).map_err(|e| Error::Cluster(e.to_string()))?;
    }
    let hooks = Hooks::default();
    let local = ProcessBuilder::new_typed_vector(workers, hooks.refill.clone(), hooks.spill.clone());
    let (builders, comms) =
        initialize_networking_from_sockets(local, sockets, me, workers, hooks).map_err(|e| Error::Cluster(format!("starting timely's network threads: {e}")))?;
    Ok(Transport { builders: builders.into_iter().map(AllocatorBuilder::Tcp).collect(), comms: Some(comms) })
}

/// A connection to process `peer` at `host`, retried while it starts, until `deadline`.
fn connect(peer: usize, host: &str, deadline: Instant, timeout: Duration) -> Result<TcpStream> {
    loop {
        let tried = host.to_socket_addrs().map_err(|e| Error::Cluster(format!("process {peer}'s address {host}: {e}"))).and_then(|mut addresses| {
            let address = addresses.next().ok_or_else(|| Error::Cluster(format!("process {peer}'s address {host} names no host")))?;
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
            TcpStream::connect_timeout(&address, left.min(Duration::from_secs(5))).map_err(|e| Error::Cluster(e.to_string()))
        });
        match tried {
            Ok(stream) => return Ok(stream),
            Err(Error::Cluster(why)) if Instant::now() < deadline && !why.contains("address") => std::thread::sleep(Duration::from_millis(100)),
            Err(Error::Cluster(why)) => {
                return Err(Error::Cluster(format!("cannot reach process {peer} at {host} within {} s: {why}", timeout.as_secs())));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends our hello, reads theirs, and compares. `expected`: the process we dialled.
fn shake_hands(stream: &TcpStream, ours: &Hello, expected: Option<usize>, address: &str, hosts: &[String], deadline: Instant) -> Result<Hello> {
    let lost = |e: std::io::Error| Error::Cluster(format!("the connection with {address} failed during start-up: {e}"));
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    stream.set_read_timeout(Some(left)).map_err(lost)?;
    let body = serde_json::to_vec(ours).expect("a hello serialises");
    let mut out = stream;
    out.write_all(MAGIC).map_err(lost)?;
    out.write_all(&(body.len() as u32).to_le_bytes()).map_err(lost)?;
    out.write_all(&body).map_err(lost)?;
    let mut input = stream;
    let mut head = [0u8; 12];
    input.read_exact(&mut head).map_err(lost)?;
    if &head[..8] != MAGIC {
        return Err(Error::Cluster(format!("{address} is not a gpumf process of this version (it answered something else)")));
    }
    let len = u32::from_le_bytes(head[8..].try_into().expect("4 bytes")) as usize;
    if len > 1 << 20 {
        return Err(Error::Cluster(format!("{address} sent a start-up message of {len} bytes; not gpumf")));
    }
    let mut body = vec![0u8; len];
    input.read_exact(&mut body).map_err(lost)?;
    let theirs: Hello = serde_json::from_slice(&body).map_err(|e| Error::Cluster(format!("{address} sent an unreadable start-up message: {e}")))?;
    let who = format!("process {} ({})", theirs.process, hosts.get(theirs.process).map_or(address, String::as_str));
    if let Some(p) = expected.filter(|&p| p != theirs.process) {
        return Err(Error::Cluster(format!("{address} is process {p}'s line of the host file, but the process there says it is process {}", theirs.process)));
    }
    if theirs.processes != ours.processes {
        return Err(Error::Cluster(format!(
            "{who} has {} processes in its host file, this one has {}: start every process with the same --hosts file",
            theirs.processes, ours.processes
        )));
    }
    let differences = super::differences(&ours.settings, &theirs.settings, &[], "here");
    if !differences.is_empty() {
        return Err(Error::Cluster(format!("{who} was started with other settings or data: {}; start every process with the same flags and files", differences.join("; "))));
    }
    Ok(theirs)
}

/// The panics of timely's threads when a peer vanishes, kept for the error instead of printed.
static TIMELY_PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

pub(super) fn quiet_timely_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            if thread.starts_with("timely:") {
                TIMELY_PANICS.lock().unwrap_or_else(|e| e.into_inner()).push((thread, panic_message(info.payload())));
            } else {
                default(info);
            }
        }));
    });
}

/// A panic's message, whatever its payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "a panic without a message".into())
}

/// The error for a worker whose thread panicked: a peer process that vanished, when timely's
/// receiving thread for it saw its connection end; else the panic's own message.
pub(super) fn worker_panicked(cluster: &super::Cluster, worker: usize, panic: &(dyn std::any::Any + Send)) -> Error {
    lost_peer(cluster).unwrap_or_else(|| Error::Cluster(format!("{} failed: {}", cluster.describe_worker(worker), panic_message(panic))))
}

/// [`worker_panicked`] for a worker thread whose panic ended the thread itself, where timely's
/// join gives no message (only `Any { .. }`): the message is the one the hook kept for it.
pub(super) fn worker_thread_panicked(cluster: &super::Cluster, worker: usize) -> Error {
    lost_peer(cluster).unwrap_or_else(|| {
        let panics = TIMELY_PANICS.lock().unwrap_or_else(|e| e.into_inner());
        let message = panics.iter().rev().find(|(thread, _)| thread.starts_with("timely:work")).map_or("a panic without a message", |(_, m)| m.as_str());
        Error::Cluster(format!("{} failed: {message}", cluster.describe_worker(worker)))
    })
}

/// A peer process that vanished, when timely's receiving thread for it saw its connection end.
fn lost_peer(cluster: &super::Cluster) -> Option<Error> {
    let panics = TIMELY_PANICS.lock().unwrap_or_else(|e| e.into_inner());
    let (process, message) = panics.iter().find_map(|(thread, message)| thread.strip_prefix("timely:recv-").and_then(|p| p.parse::<usize>().ok()).map(|p| (p, message)))?;
    Some(Error::Cluster(format!("process {process} ({}) stopped or lost its connection: {message}", cluster.hosts.get(process).map_or("?", String::as_str))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_wire_format() {
        let messages = [
            Message::Rows { kind: RowsKind::Half, id: 7, tag: 1 << 40, factors: vec![1.5, -2.0, f32::MIN_POSITIVE].into(), bias: vec![0.25] },
            Message::Rows { kind: RowsKind::Final, id: 0, tag: 0, factors: CacheLines::default(), bias: Vec::new() },
            Message::Rows { kind: RowsKind::Solved, id: 1, tag: 9, factors: vec![0.5; 3].into(), bias: Vec::new() },
            Message::Sums { epoch: 3, test: true, blocks: vec![(5, LossSums { count: 9, loss: 0.75, squared: 1.0 / 3.0, absolute: 2.5, correct: 4.0 })], sent_bytes: 12345 },
            Message::Stop { worker: 2, reason: "training diverged at epoch 3 ⚠".into() },
            Message::Seen { stripe: 1, runs: vec![2, 0, 5, 1, 200] },
            Message::Gradient { epoch: 2, stripe: 3, values: vec![0.5, -1.25] },
            Message::Norms { epoch: 2, halves: vec![(0, 1.5), (7, 1e-300)] },
            Message::ItemVectors { epoch: 9, values: vec![3.0; 5] },
            Message::Figures { epoch: 4, train: LossSums { count: 3, loss: 1.0, squared: 2.0, absolute: 3.0, correct: 0.0 }, test: None, sent_bytes: 77 },
            Message::Figures { epoch: 4, train: LossSums::default(), test: Some(LossSums { count: 1, loss: 0.5, squared: 0.25, absolute: 0.5, correct: 1.0 }), sent_bytes: 0 },
        ];
        for m in messages {
            let mut bytes = Vec::new();
            m.into_bytes(&mut bytes);
            assert_eq!(bytes.len(), m.length_in_bytes());
            assert_eq!(Message::from_bytes(timely_bytes::arc::BytesMut::from(bytes).freeze()), m);
        }
    }
}
