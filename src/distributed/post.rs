//! A worker's end of the exchange, as the DSGD workers and the ALS processes both use it: it
//! counts the bytes sent, keeps what arrives before it is wanted, waits with a deadline, and
//! when its worker fails tells every other worker at once, so none waits out the timeout.

use super::exchange::{worker_panicked, BlockExchange, Message};
use super::Cluster;
use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// How an error passed on from the worker that failed begins (it is not passed on again).
pub(super) const STOPPED: &str = "stopped because";

pub(super) struct Post<E> {
    exchange: E,
    /// This worker's number in the cluster.
    pub me: usize,
    cluster: Cluster,
    /// Messages that arrived before they were wanted.
    inbox: Vec<Message>,
    pub sent_bytes: u64,
}

impl<E: BlockExchange> Post<E> {
    pub fn new(exchange: E, cluster: Cluster) -> Post<E> {
        Post { me: exchange.worker(), exchange, cluster, inbox: Vec::new(), sent_bytes: 0 }
    }

    /// Workers in the whole cluster.
    pub fn workers(&self) -> usize {
        self.exchange.workers()
    }

    pub fn send(&mut self, to: usize, message: Message) {
        self.sent_bytes += message.payload_bytes();
        self.exchange.send(to, message);
    }

    /// The first message `wanted` accepts, from the inbox or as it arrives; after the timeout,
    /// an error naming what was awaited; a stop from another worker, as an error naming it.
    pub fn wait_for(&mut self, what: &str, wanted: impl Fn(&Message) -> bool) -> Result<Message> {
        let deadline = self.cluster.deadline();
        let mut seen = 0;
        loop {
            if let Some(at) = self.inbox[seen..].iter().position(&wanted) {
                return Ok(self.inbox.remove(seen + at));
            }
            if let Some(Message::Stop { worker, reason }) = self.inbox[seen..].iter().find(|m| matches!(m, Message::Stop { .. })) {
                return Err(Error::Cluster(format!("{STOPPED} {} failed: {reason}", self.cluster.describe_worker(*worker as usize))));
            }
            seen = self.inbox.len();
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Cluster(format!(
                    "{} waited {} s for {what} and none came: a worker is lost or stalled (raise --timeout if the blocks are slow)",
                    self.cluster.describe_worker(self.me),
                    self.cluster.timeout.as_secs()
                )));
            }
            self.exchange.receive((deadline - now).min(Duration::from_millis(100)), &mut self.inbox);
        }
    }

    /// Tells every other worker that `e` stopped this one, unless `e` is itself such a stop.
    fn stop_others(&mut self, e: &Error) {
        if matches!(e, Error::Cluster(m) if m.starts_with(STOPPED)) {
            return;
        }
        let reason = e.to_string();
        // Sending to a peer that vanished panics inside timely (its queue is poisoned); the
        // error already says what happened, so such a panic is let go.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for w in (0..self.exchange.workers()).filter(|&w| w != self.me) {
                self.exchange.send(w, Message::Stop { worker: self.me as u32, reason: reason.clone() });
            }
        }));
    }
}

/// Runs `serve` on `worker`, whose exchange `post` reaches. A panic (a bug, or timely's threads
/// losing a peer) becomes an error with its message; on failure the other workers are told.
/// Timely's allocator panics when dropped after a peer vanished: that too is an error.
pub(super) fn guarded<W, E: BlockExchange, R>(mut worker: W, post: impl Fn(&mut W) -> &mut Post<E>, serve: impl FnOnce(&mut W) -> Result<R>) -> Result<R> {
    let (cluster, me) = (post(&mut worker).cluster.clone(), post(&mut worker).me);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve(&mut worker))).unwrap_or_else(|panic| Err(worker_panicked(&cluster, me, &*panic)));
    if let Err(e) = &outcome {
        post(&mut worker).stop_others(e);
    }
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(worker))) {
        Err(panic) if outcome.is_ok() => Err(worker_panicked(&cluster, me, &*panic)),
        _ => outcome,
    }
}
