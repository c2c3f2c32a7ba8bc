//! One DSGD worker: it trains its stripes' blocks stratum by stratum as the training loop asks
//! for epochs ([`Command`]), passes item halves on, runs its part of the SVD++ term's passes,
//! scores its stripes' test ratings, and at the end hands its rows to worker 0.

use super::exchange::{BlockExchange, Message, RowsKind};
use super::post::{guarded, Post};
use super::threads::{figures, Command};
use super::{checkpoint, svdpp, Gathered, Rows, Shared, WorkerStart, HALVES};
use crate::data::{Rating, UNKNOWN};
use crate::error::{Error, Result};
use crate::gpu::{GpuSolver, Side};
use crate::model::{score_rows, SeenItems};
use crate::objective::LossSums;
use crate::solver::EpochFigures;
use crate::svdpp::StripeItems;
use crate::update::{self, BlockRows, Step};
use crate::vector::CacheLines;
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc, Arc};

/// The SVD++ term's state of one worker: y (every item's, by position) and its stripes'
/// priors and shares.
pub(super) struct Terms {
    item_vectors: Vec<f32>,
    priors: BTreeMap<usize, CacheLines>,
    shares: BTreeMap<usize, CacheLines>,
    /// Each stripe's users' items, for the passes.
    items: BTreeMap<usize, StripeItems>,
}

impl Terms {
    /// The state of a worker with `stripes`, from y (`item_vectors`): the stripes' item lists
    /// and the priors y gives (zero at the start; a resumed run's, as its pass left them), and
    /// the shares (zero, or a resumed run's `pending`), also on the worker's GPU. Built when the
    /// cluster sets up, before the first epoch.
    pub(super) fn start(shared: &Shared, stripes: &BTreeMap<usize, Rows>, item_vectors: Vec<f32>, mut pending: BTreeMap<usize, Vec<f32>>, device: Option<&GpuSolver>) -> Result<Terms> {
        let k = shared.params.rank;
        let reach = shared.svdpp.as_ref().expect("the SVD++ term is on");
        // The stripes' ratings are where the worker keeps them: in this process's grid, or on its GPU.
        let ratings = device.map_or(&shared.schedule, |gpu| gpu.schedule());
        let (mut items, mut priors, mut shares) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        let fresh = item_vectors.iter().all(|&y| y == 0.0);
        for (&p, rows) in stripes {
            let mut index = svdpp::stripe_items(shared, ratings, p)?;
            let mut z = CacheLines::zeros(rows.bias.len() * k);
            if !fresh {
                svdpp::priors(&mut index, reach, &item_vectors, &mut z, k);
            }
            let mut share = CacheLines::zeros(z.len());
            if let Some(kept) = pending.remove(&p) {
                share.copy_from_slice(&kept);
            }
            if let Some(gpu) = device {
                gpu.set_svdpp_rows(p, &z, &share);
            }
            shares.insert(p, share);
            priors.insert(p, z);
            items.insert(p, index);
        }
        Ok(Terms { item_vectors, priors, shares, items })
    }
}

pub(super) struct Worker<E> {
    post: Post<E>,
    shared: Arc<Shared>,
    stripes: BTreeMap<usize, Rows>,
    halves: HashMap<usize, (u64, Rows)>,
    terms: Option<Terms>,
    commands: mpsc::Receiver<Command>,
    /// The first worker of each process hands the cluster's figures to its training loop here.
    figures: Option<mpsc::Sender<EpochFigures>>,
    /// On a GPU, the stripes' rows live there, and `stripes` is refreshed only when read.
    device: Option<GpuSolver>,
}

impl<E: BlockExchange> Worker<E> {
    pub fn new(exchange: E, shared: Arc<Shared>, start: WorkerStart, commands: mpsc::Receiver<Command>, figures: Option<mpsc::Sender<EpochFigures>>) -> Self {
        let mut device = start.device;
        if let Some(gpu) = &mut device {
            // The rows it starts from (a checkpoint's, when resuming).
            for (&p, rows) in &start.stripes {
                gpu.set_rows(Side::Users, p, &rows.factors, &rows.bias);
            }
        }
        Worker { post: Post::new(exchange, shared.cluster.clone()), shared, stripes: start.stripes, halves: start.halves, terms: start.terms, commands, figures, device }
    }

    /// Serves the training loop's commands until it finishes (then worker 0 returns the rows);
    /// on failure, tells every other worker to stop, so none waits out the timeout for blocks
    /// that will not come.
    pub fn run(self) -> Result<Option<Gathered>> {
        guarded(self, |w| &mut w.post, |w| w.serve())
    }

    fn serve(&mut self) -> Result<Option<Gathered>> {
        loop {
            match self.commands.recv() {
                Ok(Command::Epoch { epoch, lr, score }) => {
                    let figures = self.epoch(epoch, lr, score)?;
                    if let (Some(tx), Some(figures)) = (&self.figures, figures) {
                        // The receiver is gone only if training is being abandoned anyway.
                        let _ = tx.send(figures);
                    }
                }
                Ok(Command::Finish) => return self.gather_model(),
                Err(_) => return Err(Error::Cluster(format!("process {} stopped training", self.shared.cluster.process))),
            }
        }
    }

    /// One block of SGD on stripe `stripe`'s rows and `half`, on this worker's CPU or GPU;
    /// `None` for an empty block.
    fn train(&mut self, b: usize, stripe: usize, h: usize, half: &mut Rows, step: &Step) -> Result<Option<LossSums>> {
        let Some(gpu) = &mut self.device else {
            let s = &self.shared.schedule;
            // (The workers' blocks are in memory: nothing is read into the buffer.)
            let mut buf = Vec::new();
            let ratings = s.checked_block(b, &mut buf)?;
            if ratings.ratings().is_empty() {
                return Ok(None);
            }
            let (u0, i0) = (s.users.start(stripe), s.items.start(h));
            let rows = self.stripes.get_mut(&stripe).expect("own stripe");
            let (m, n) = (rows.bias.len(), half.bias.len());
            let (prior, share): (&[f32], &mut [f32]) = match &mut self.terms {
                Some(t) => (t.priors.get(&stripe).expect("own stripe"), t.shares.get_mut(&stripe).expect("own stripe")),
                None => (&[], &mut []),
            };
            let weights = &self.shared.weights;
            let users = BlockRows { first: u0 as u32, factors: &mut rows.factors, bias: &mut rows.bias, weights: &weights.users[u0..u0 + m], prior, share };
            let items = BlockRows { first: i0 as u32, factors: &mut half.factors, bias: &mut half.bias, weights: &weights.items[i0..i0 + n], prior: &[], share: &mut [] };
            return update::train_block(ratings, users, items, self.shared.params.rank, step).map(Some);
        };
        if gpu.schedule().block(b).is_empty() {
            return Ok(None);
        }
        gpu.set_rows(Side::Items, h, &half.factors, &half.bias);
        let sums = gpu.train_blocks(&[b], step.lr, step.share_weight)?;
        let (factors, bias) = gpu.rows(Side::Items, h)?;
        (half.factors, half.bias) = (factors.into(), bias);
        Ok(Some(sums))
    }

    /// On a GPU: brings the stripes' rows back from the device (to score, checkpoint or gather).
    fn refresh_stripes(&mut self) -> Result<()> {
        if let Some(gpu) = &self.device {
            for (&p, rows) in self.stripes.iter_mut() {
                let (factors, bias) = gpu.rows(Side::Users, p)?;
                (rows.factors, rows.bias) = (factors.into(), bias);
            }
        }
        Ok(())
    }

    /// Epoch `epoch`: the SVD++ term's passes where due, the strata, the test scoring and a
    /// checkpoint as asked. Returns the cluster's figures on the first worker of each process.
    fn epoch(&mut self, epoch: usize, lr: f32, score: bool) -> Result<Option<EpochFigures>> {
        let sh = self.shared.clone();
        let (s, p) = (&sh.schedule, &sh.params);
        let sent_before = self.post.sent_bytes;
        let following = s.strata(epoch + 1)[0];
        if self.terms.is_some() && crate::svdpp::passes_before(epoch, crate::svdpp::pass_every(p)) {
            // The halves the epoch starts with, where they lie, for the passes' norms.
            self.collect_halves(sh.tag(epoch, 0), s.strata(epoch)[0])?;
            self.refresh_stripes()?;
            let before = Step::new(p, p.learning_rate_at(epoch - 1), sh.mean, sh.unit, sh.labels).for_epoch(epoch - 1);
            self.svdpp_pass(epoch, &before)?;
        }
        let step = crate::svdpp::epoch_step(Step::new(p, lr, sh.mean, sh.unit, sh.labels), epoch, p);
        let sums = self.strata(epoch, &step)?;
        let last = epoch + 1 == p.epochs;
        let checkpoint = sh.cluster.checkpoint.as_ref().filter(|(_, every)| (epoch + 1).is_multiple_of(*every.max(&1)) || last);
        if score || last || checkpoint.is_some() {
            self.collect_halves(sh.tag(epoch + 1, 0), following)?;
            self.refresh_stripes()?;
        }
        let test = if score { Some(self.score_test(epoch)?) } else { None };
        if let Some((dir, _)) = checkpoint {
            self.shares_from_device()?;
            let terms = self.terms.as_ref().map(|t| checkpoint::Terms { item_vectors: &t.item_vectors, shares: &t.shares });
            checkpoint::write(dir, epoch + 1, self.post.me, &sh, &self.stripes, &self.halves, terms)?;
        }
        let sent = self.post.sent_bytes - sent_before;
        if self.post.me != 0 {
            self.post.send(0, Message::Sums { epoch: epoch as u32, test: false, blocks: sums, sent_bytes: sent });
            if let Some(test) = test {
                self.post.send(0, Message::Sums { epoch: epoch as u32, test: true, blocks: test, sent_bytes: 0 });
            }
            if self.figures.is_none() {
                return Ok(None);
            }
            let message = self.post.wait_for(&format!("the figures of epoch {}", epoch + 1), |m| matches!(m, Message::Figures { epoch: e, .. } if *e as usize == epoch))?;
            let Message::Figures { train, test, sent_bytes, .. } = message else { unreachable!("matched figures") };
            return Ok(Some(figures(train, test, sent_bytes)));
        }
        let (train, test, sent_bytes) = self.gather_figures(epoch, sums, test, sent)?;
        for process in 1..sh.cluster.processes() {
            self.post.send(sh.cluster.lead_of(process), Message::Figures { epoch: epoch as u32, train, test, sent_bytes });
        }
        Ok(Some(figures(train, test, sent_bytes)))
    }

    /// The epoch's strata: each of this worker's stripes trains its item pair, half by half,
    /// passing each half on when it is trained. Returns each block's sums.
    fn strata(&mut self, epoch: usize, step: &Step) -> Result<Vec<(u32, LossSums)>> {
        let sh = self.shared.clone();
        let (s, side) = (&sh.schedule, sh.side());
        let (strata, following) = (s.strata(epoch), s.strata(epoch + 1)[0]);
        let my_stripes: Vec<usize> = self.stripes.keys().copied().collect();
        let mut sums = Vec::new();
        for (t, &shift) in strata.iter().enumerate() {
            let (next_shift, next_tag) = if t + 1 < side { (strata[t + 1], sh.tag(epoch, t + 1)) } else { (following, sh.tag(epoch + 1, 0)) };
            for &stripe in &my_stripes {
                let pair = s.pair_of(stripe, shift);
                for h in HALVES * pair..HALVES * (pair + 1) {
                    let mut half = self.take_half(h, sh.tag(epoch, t))?;
                    let b = stripe * HALVES * side + h;
                    if let Some(block_sums) = self.train(b, stripe, h, &mut half, step).map_err(|e| in_block(b, e))? {
                        sums.push((b as u32, block_sums));
                    }
                    self.pass_on(h, next_tag, half, sh.owner(s.stripe_of(pair, next_shift)));
                }
            }
        }
        Ok(sums)
    }

    /// With the SVD++ term on a GPU: the stripes' shares read back from it, for the passes or a
    /// checkpoint.
    fn shares_from_device(&mut self) -> Result<()> {
        if let (Some(gpu), Some(terms)) = (&self.device, self.terms.as_mut()) {
            for (&p, share) in terms.shares.iter_mut() {
                *share = gpu.svdpp_shares(p)?.into();
            }
        }
        Ok(())
    }

    /// The SVD++ term's passes before epoch `epoch` ([`svdpp`]; where
    /// [`passes_before`](crate::svdpp::passes_before) says), at `step` (the epoch before's):
    /// this worker's parts to worker 0, y back from it, and its stripes' priors and rows moved.
    fn svdpp_pass(&mut self, epoch: usize, step: &Step) -> Result<()> {
        let sh = self.shared.clone();
        let reach = sh.svdpp.as_ref().expect("the SVD++ term is on");
        let k = sh.params.rank;
        self.shares_from_device()?;
        let Terms { shares, items, .. } = self.terms.as_mut().expect("the SVD++ term is on");
        let gradients: Vec<(usize, Vec<f32>)> = shares.iter().map(|(&p, share)| (p, svdpp::item_gradient(items.get_mut(&p).expect("own stripe"), reach, share, k))).collect();
        let norms: Vec<(u32, f64)> = svdpp::halves_in_order(self.halves.iter().map(|(h, (_, rows))| (h, rows))).into_iter().map(|(h, rows)| (h as u32, svdpp::half_norm(&sh, reach, h, &rows.factors, k))).collect();
        let tag = epoch as u32;
        if self.post.me != 0 {
            for (p, values) in gradients {
                self.post.send(0, Message::Gradient { epoch: tag, stripe: p as u32, values });
            }
            self.post.send(0, Message::Norms { epoch: tag, halves: norms });
            let message = self.post.wait_for(&format!("the items' vectors before epoch {}", epoch + 1), |m| matches!(m, Message::ItemVectors { epoch: e, .. } if *e == tag))?;
            let Message::ItemVectors { values, .. } = message else { unreachable!("matched the vectors") };
            self.terms.as_mut().expect("the SVD++ term is on").item_vectors = values;
        } else {
            let side = sh.side();
            let mut parts: Vec<Option<Vec<f32>>> = vec![None; side];
            let mut half_norms: Vec<Option<f64>> = vec![None; HALVES * side];
            for (p, values) in gradients {
                parts[p] = Some(values);
            }
            for (h, norm) in norms {
                half_norms[h as usize] = Some(norm);
            }
            while parts.iter().any(Option::is_none) || half_norms.iter().any(Option::is_none) {
                let message = self.post.wait_for(&format!("the SVD++ term's parts before epoch {}", epoch + 1), |m| matches!(m, Message::Gradient { epoch: e, .. } | Message::Norms { epoch: e, .. } if *e == tag))?;
                match message {
                    Message::Gradient { stripe, values, .. } => parts[stripe as usize] = Some(values),
                    Message::Norms { halves, .. } => halves.into_iter().for_each(|(h, n)| half_norms[h as usize] = Some(n)),
                    _ => unreachable!("matched the parts"),
                }
            }
            let parts: Vec<Vec<f32>> = parts.into_iter().map(|p| p.expect("every stripe's part")).collect();
            let half_norms: Vec<f64> = half_norms.into_iter().map(|n| n.expect("every half's norm")).collect();
            let terms = self.terms.as_mut().expect("the SVD++ term is on");
            svdpp::step_items(&sh, reach, &mut terms.item_vectors, parts, &half_norms, k, step);
            for w in 1..self.post.workers() {
                let values = self.terms.as_ref().expect("the SVD++ term is on").item_vectors.clone();
                self.post.send(w, Message::ItemVectors { epoch: tag, values });
            }
        }
        let terms = self.terms.as_mut().expect("the SVD++ term is on");
        for (&p, rows) in self.stripes.iter_mut() {
            // The fresh priors go into the shares, done with, which moving the rows clears.
            let (prior, fresh) = (terms.priors.get_mut(&p).expect("own stripe"), terms.shares.get_mut(&p).expect("own stripe"));
            svdpp::priors(terms.items.get_mut(&p).expect("own stripe"), reach, &terms.item_vectors, fresh, k);
            crate::svdpp::move_prior(prior, &mut rows.factors, fresh, step.nonneg);
            if let Some(gpu) = &self.device {
                gpu.set_rows(Side::Users, p, &rows.factors, &rows.bias);
                gpu.set_svdpp_rows(p, prior, fresh);
            }
        }
        Ok(())
    }

    /// Item half `h` for the stratum `tag`: kept here, or received.
    fn take_half(&mut self, h: usize, tag: u64) -> Result<Rows> {
        if self.halves.get(&h).is_some_and(|(t, _)| *t == tag) {
            return Ok(self.halves.remove(&h).expect("present").1);
        }
        let message =
            self.post.wait_for(&format!("item half {h} for stratum {tag}"), |m| matches!(m, Message::Rows { kind: RowsKind::Half, id, tag: t, .. } if *id as usize == h && *t == tag))?;
        match message {
            Message::Rows { factors, bias, .. } => Ok(Rows { factors, bias }),
            _ => unreachable!("matched rows"),
        }
    }

    /// Keeps half `h` for the stratum `tag` if `to` is this worker, else sends it there.
    fn pass_on(&mut self, h: usize, tag: u64, half: Rows, to: usize) {
        if to == self.post.me {
            self.halves.insert(h, (tag, half));
        } else {
            self.post.send(to, Message::Rows { kind: RowsKind::Half, id: h as u32, tag, factors: half.factors, bias: half.bias });
        }
    }

    /// Waits until this worker holds every half its stripes train first in the next epoch:
    /// then it holds the epoch's final rows of those halves.
    fn collect_halves(&mut self, tag: u64, shift: usize) -> Result<()> {
        let stripes: Vec<usize> = self.stripes.keys().copied().collect();
        for stripe in stripes {
            let pair = self.shared.schedule.pair_of(stripe, shift);
            for h in HALVES * pair..HALVES * (pair + 1) {
                let half = self.take_half(h, tag)?;
                self.halves.insert(h, (tag, half));
            }
        }
        Ok(())
    }

    /// Scores this worker's stripes' test ratings after epoch `epoch`: every worker sends the
    /// others a copy of the halves it holds, so each sees every item row once. (It scores from
    /// its own halves where they lie: copying them too cost as much as a fifth of the scoring.)
    fn score_test(&mut self, epoch: usize) -> Result<Vec<(u32, LossSums)>> {
        let sh = self.shared.clone();
        let side = sh.side();
        let me = self.post.me;
        for to in (0..self.post.workers()).filter(|&w| w != me) {
            let copies: Vec<Message> = self
                .halves
                .iter()
                .map(|(&h, (_, rows))| Message::Rows { kind: RowsKind::Copy, id: h as u32, tag: epoch as u64, factors: rows.factors.clone(), bias: rows.bias.clone() })
                .collect();
            for message in copies {
                self.post.send(to, message);
            }
        }
        let mut copied: Vec<Option<Rows>> = vec![None; HALVES * side];
        while (0..HALVES * side).any(|h| copied[h].is_none() && !self.halves.contains_key(&h)) {
            let message = self
                .post
                .wait_for(&format!("copies of item halves after epoch {}", epoch + 1), |m| matches!(m, Message::Rows { kind: RowsKind::Copy, tag, .. } if *tag == epoch as u64))?;
            if let Message::Rows { id, factors, bias, .. } = message {
                copied[id as usize] = Some(Rows { factors, bias });
            }
        }
        let all: Vec<&Rows> = (0..HALVES * side).map(|h| self.halves.get(&h).map(|(_, rows)| rows).or(copied[h].as_ref()).expect("every half arrived")).collect();
        let (k, loss) = (sh.params.rank, sh.params.loss);
        let mut out = Vec::new();
        for (&stripe, user_rows) in &self.stripes {
            for (h, item_rows) in all.iter().enumerate() {
                let b = stripe * HALVES * side + h;
                if sh.test[b].is_empty() {
                    continue;
                }
                let mut sums = LossSums::default();
                for r in &sh.test[b] {
                    let user = (r.user != UNKNOWN).then(|| (&user_rows.factors[r.user as usize * k..][..k], user_rows.bias[r.user as usize]));
                    let item = (r.item != UNKNOWN).then(|| (&item_rows.factors[r.item as usize * k..][..k], item_rows.bias[r.item as usize]));
                    let label = sh.labels.map_or(r.value, |l| l.label(r.value));
                    sums.add(loss.terms(loss.judged(score_rows(sh.mean, user, item), sh.range), label));
                }
                out.push((b as u32, sums));
            }
        }
        Ok(out)
    }

    /// Worker 0: every worker's sums of epoch `epoch`, added block by block in block order
    /// (so the figures, too, are the same bits for any worker count), and the bytes sent.
    fn gather_figures(&mut self, epoch: usize, mut train: Vec<(u32, LossSums)>, mut test: Option<Vec<(u32, LossSums)>>, sent: u64) -> Result<(LossSums, Option<LossSums>, u64)> {
        let mut sent_total = sent;
        let others = self.post.workers() - 1;
        let mut waiting = others * (1 + test.is_some() as usize);
        while waiting > 0 {
            let message = self.post.wait_for(&format!("the figures of epoch {}", epoch + 1), |m| matches!(m, Message::Sums { epoch: e, .. } if *e as usize == epoch))?;
            if let Message::Sums { test: is_test, blocks, sent_bytes, .. } = message {
                sent_total += sent_bytes;
                if is_test {
                    test.as_mut().expect("test asked for").extend(blocks);
                } else {
                    train.extend(blocks);
                }
            }
            waiting -= 1;
        }
        let fold = |mut v: Vec<(u32, LossSums)>| {
            v.sort_by_key(|(b, _)| *b);
            v.into_iter().fold(LossSums::default(), |a, (_, s)| a.merge(s))
        };
        Ok((fold(train), test.map(fold), sent_total))
    }

    /// At the end: every worker sends its stripes and halves to worker 0.
    fn gather_model(&mut self) -> Result<Option<Gathered>> {
        let side = self.shared.side();
        let record = self.shared.cluster.record_seen;
        let own_seen: Vec<(usize, Vec<u8>)> = if record { self.stripes.keys().map(|&p| (p, self.stripe_seen(p))).collect() } else { Vec::new() };
        if self.post.me != 0 {
            for (p, runs) in own_seen {
                self.post.send(0, Message::Seen { stripe: p as u32, runs });
            }
            let stripes = std::mem::take(&mut self.stripes);
            for (p, rows) in stripes {
                self.post.send(0, Message::Rows { kind: RowsKind::Stripe, id: p as u32, tag: 0, factors: rows.factors, bias: rows.bias });
            }
            let halves = std::mem::take(&mut self.halves);
            for (h, (_, rows)) in halves {
                self.post.send(0, Message::Rows { kind: RowsKind::Final, id: h as u32, tag: 0, factors: rows.factors, bias: rows.bias });
            }
            return Ok(None);
        }
        let mut stripes: Vec<Option<Rows>> = vec![None; side];
        let mut halves: Vec<Option<Rows>> = vec![None; HALVES * side];
        for (p, rows) in std::mem::take(&mut self.stripes) {
            stripes[p] = Some(rows);
        }
        for (h, (_, rows)) in std::mem::take(&mut self.halves) {
            halves[h] = Some(rows);
        }
        let mut seen: Vec<Option<Vec<u8>>> = vec![None; if record { side } else { 0 }];
        for (p, runs) in own_seen {
            seen[p] = Some(runs);
        }
        while stripes.iter().chain(&halves).any(Option::is_none) || seen.iter().any(Option::is_none) {
            let message = self.post.wait_for("the trained rows", |m| matches!(m, Message::Rows { kind: RowsKind::Stripe | RowsKind::Final, .. } | Message::Seen { .. }))?;
            match message {
                Message::Rows { kind, id, factors, bias, .. } => {
                    let slot = if kind == RowsKind::Stripe { &mut stripes[id as usize] } else { &mut halves[id as usize] };
                    *slot = Some(Rows { factors, bias });
                }
                Message::Seen { stripe, runs } => seen[stripe as usize] = Some(runs),
                _ => unreachable!("matched above"),
            }
        }
        let all = |v: Vec<Option<Rows>>| v.into_iter().map(|r| r.expect("arrived")).collect();
        Ok(Some(Gathered { stripes: all(stripes), halves: all(halves), seen: seen.into_iter().map(|r| r.expect("arrived")).collect() }))
    }

    /// The items each user of stripe `stripe` rated, encoded by row of the stripe: from the
    /// stripe's blocks, wherever they are kept (this process's grid, or the worker's GPU's).
    fn stripe_seen(&self, stripe: usize) -> Vec<u8> {
        let s = self.device.as_ref().map_or(&self.shared.schedule, |gpu| gpu.schedule());
        let first_row = s.users.start(stripe) as u32;
        let mut local = Vec::new();
        for b in self.shared.blocks_of(stripe) {
            local.extend(s.block(b).iter().map(|r| Rating { user: r.user - first_row, item: s.items.id_at(r.item), value: 0.0 }));
        }
        SeenItems::from_ratings(&local, s.users.members(stripe).len(), s.items.start(s.items.blocks())).as_bytes().to_vec()
    }
}

/// `e`, an error met training block `b`, with the block named.
fn in_block(b: usize, e: Error) -> Error {
    match e {
        Error::Data(message) => Error::Data(format!("block {b}: {message}")),
        e => e,
    }
}
