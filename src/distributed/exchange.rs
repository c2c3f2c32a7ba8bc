//! The exchange of blocks between DSGD workers, behind a small trait ([`BlockExchange`]) so a
//! transport other than timely's (MPI, say) can be added without touching the trainer.
//!
//! The one transport today is timely-dataflow's communication layer: worker threads of one
//! process pass messages by moving them; processes pass them over TCP. gpumf opens the sockets
//! itself (timely's own set-up retries forever and prints to stdout), shakes hands on them to
//! compare every process's settings and data, and hands them to timely.

use crate::error::{Error, Result};
use crate::metrics::ErrorSums;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};
use timely_communication::allocator::zero_copy::initialize::{initialize_networking_from_sockets, CommsGuard};
use timely_communication::allocator::ProcessBuilder;
use timely_communication::{Allocator, AllocatorBuilder, Bytesable, Hooks, Pull, Push};

/// What one worker sends another.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Factor rows with their biases: an item half on its way to the stratum `tag`, a copy of
    /// one for scoring, or a worker's rows at the end.
    Rows { kind: RowsKind, id: u32, tag: u64, factors: Vec<f32>, bias: Vec<f32> },
    /// Errors of one epoch, block by block (train or test), and the bytes the sender sent.
    Sums { epoch: u32, test: bool, blocks: Vec<(u32, ErrorSums)>, sent_bytes: u64 },
    /// The sender failed and stops: the others stop too, at once, rather than wait for it.
    Stop { worker: u32, reason: String },
    /// The items each user of a stripe rated, encoded as the model file keeps them.
    Seen { stripe: u32, runs: Vec<u8> },
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
}

impl Message {
    /// Bytes of factor rows and biases the message carries.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            Message::Rows { factors, bias, .. } => 4 * (factors.len() + bias.len()) as u64,
            Message::Sums { blocks, .. } => 28 * blocks.len() as u64,
            Message::Stop { .. } => 0,
            Message::Seen { runs, .. } => runs.len() as u64,
        }
    }
}

// The wire format writes f32 and f64 in the machine's order: little-endian on every platform
// gpumf builds for; a big-endian build would need byte swaps here.
#[cfg(not(target_endian = "little"))]
compile_error!("the DSGD wire format assumes a little-endian machine");

impl Bytesable for Message {
    fn from_bytes(bytes: timely_bytes::arc::Bytes) -> Self {
        let mut at = 0usize;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s
        };
        let u32_ = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let u64_ = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let floats = |b: &[u8]| -> Vec<f32> { b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect() };
        match take(1)[0] {
            0 => {
                let kind = match take(1)[0] {
                    0 => RowsKind::Half,
                    1 => RowsKind::Copy,
                    2 => RowsKind::Stripe,
                    _ => RowsKind::Final,
                };
                let id = u32_(take(4));
                let tag = u64_(take(8));
                let n = u64_(take(8)) as usize;
                let factors = floats(take(4 * n));
                let n = u64_(take(8)) as usize;
                let bias = floats(take(4 * n));
                Message::Rows { kind, id, tag, factors, bias }
            }
            3 => {
                let stripe = u32_(take(4));
                let n = u64_(take(8)) as usize;
                Message::Seen { stripe, runs: take(n).to_vec() }
            }
            2 => {
                let worker = u32_(take(4));
                let n = u64_(take(8)) as usize;
                Message::Stop { worker, reason: String::from_utf8_lossy(take(n)).into_owned() }
            }
            _ => {
                let epoch = u32_(take(4));
                let test = take(1)[0] != 0;
                let sent_bytes = u64_(take(8));
                let n = u64_(take(8)) as usize;
                let blocks = (0..n)
                    .map(|_| {
                        let b = u32_(take(4));
                        let count = u64_(take(8));
                        let squared = f64::from_le_bytes(take(8).try_into().expect("8 bytes"));
                        let absolute = f64::from_le_bytes(take(8).try_into().expect("8 bytes"));
                        (b, ErrorSums { count, squared, absolute })
                    })
                    .collect();
                Message::Sums { epoch, test, blocks, sent_bytes }
            }
        }
    }

    fn length_in_bytes(&self) -> usize {
        match self {
            Message::Rows { factors, bias, .. } => 1 + 1 + 4 + 8 + 8 + 4 * factors.len() + 8 + 4 * bias.len(),
            Message::Sums { blocks, .. } => 1 + 4 + 1 + 8 + 8 + 28 * blocks.len(),
            Message::Stop { reason, .. } => 1 + 4 + 8 + reason.len(),
            Message::Seen { runs, .. } => 1 + 4 + 8 + runs.len(),
        }
    }

    fn into_bytes<W: Write>(&self, writer: &mut W) {
        // timely writes into memory it has sized with `length_in_bytes`: this cannot fail.
        let mut put = |b: &[u8]| writer.write_all(b).expect("timely's buffer holds the message");
        match self {
            Message::Rows { kind, id, tag, factors, bias } => {
                put(&[0, *kind as u8]);
                put(&id.to_le_bytes());
                put(&tag.to_le_bytes());
                put(&(factors.len() as u64).to_le_bytes());
                put(bytemuck::cast_slice(factors));
                put(&(bias.len() as u64).to_le_bytes());
                put(bytemuck::cast_slice(bias));
            }
            Message::Seen { stripe, runs } => {
                put(&[3]);
                put(&stripe.to_le_bytes());
                put(&(runs.len() as u64).to_le_bytes());
                put(runs);
            }
            Message::Stop { worker, reason } => {
                put(&[2]);
                put(&worker.to_le_bytes());
                put(&(reason.len() as u64).to_le_bytes());
                put(reason.as_bytes());
            }
            Message::Sums { epoch, test, blocks, sent_bytes } => {
                put(&[1]);
                put(&epoch.to_le_bytes());
                put(&[*test as u8]);
                put(&sent_bytes.to_le_bytes());
                put(&(blocks.len() as u64).to_le_bytes());
                for (b, s) in blocks {
                    put(&b.to_le_bytes());
                    put(&s.count.to_le_bytes());
                    put(&s.squared.to_le_bytes());
                    put(&s.absolute.to_le_bytes());
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
    let deadline = Instant::now() + timeout;
    let listener = TcpListener::bind(&hosts[me]).map_err(|e| Error::Cluster(format!("process {me} cannot listen on {} (its line of the host file): {e}", hosts[me])))?;
    listener.set_nonblocking(true).map_err(|e| Error::Cluster(format!("listening on {}: {e}", hosts[me])))?;
    let mut sockets: Vec<Option<TcpStream>> = (0..hosts.len()).map(|_| None).collect();
    // Connect to those before us, retrying while they start.
    for (peer, host) in hosts.iter().enumerate().take(me) {
        let stream = loop {
            let tried = host.to_socket_addrs().map_err(|e| Error::Cluster(format!("process {peer}'s address {host}: {e}"))).and_then(|mut addresses| {
                let address = addresses.next().ok_or_else(|| Error::Cluster(format!("process {peer}'s address {host} names no host")))?;
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(10));
                TcpStream::connect_timeout(&address, left.min(Duration::from_secs(5))).map_err(|e| Error::Cluster(e.to_string()))
            });
            match tried {
                Ok(stream) => break stream,
                Err(Error::Cluster(why)) if Instant::now() < deadline && !why.contains("address") => std::thread::sleep(Duration::from_millis(100)),
                Err(Error::Cluster(why)) => {
                    return Err(Error::Cluster(format!("cannot reach process {peer} at {host} within {} s: {why}", timeout.as_secs())));
                }
                Err(e) => return Err(e),
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_the_wire_format() {
        let messages = [
            Message::Rows { kind: RowsKind::Half, id: 7, tag: 1 << 40, factors: vec![1.5, -2.0, f32::MIN_POSITIVE], bias: vec![0.25] },
            Message::Rows { kind: RowsKind::Final, id: 0, tag: 0, factors: Vec::new(), bias: Vec::new() },
            Message::Sums { epoch: 3, test: true, blocks: vec![(5, ErrorSums { count: 9, squared: 1.0 / 3.0, absolute: 2.5 })], sent_bytes: 12345 },
            Message::Stop { worker: 2, reason: "training diverged at epoch 3 ⚠".into() },
            Message::Seen { stripe: 1, runs: vec![2, 0, 5, 1, 200] },
        ];
        for m in messages {
            let mut bytes = Vec::new();
            m.into_bytes(&mut bytes);
            assert_eq!(bytes.len(), m.length_in_bytes());
            assert_eq!(Message::from_bytes(timely_bytes::arc::BytesMut::from(bytes).freeze()), m);
        }
    }
}
