//! `gpumf predict`: scores for pairs, top-N lists, and the items or users most like one.

use super::train::load_model;
use anyhow::{bail, Context};
use clap::{ArgGroup, Args};
use gpumf::data::{load_ids, load_pairs, load_rated_items, ExternalId};
use gpumf::model::{FoldInReg, Model};
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;

/// Users whose lists are made and written at a time: the output streams, so all users of a
/// large model never wait in memory.
const USERS_PER_WRITE: usize = 8192;

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["pairs", "user", "users", "all_users", "similar_item", "similar_user", "items"])))]
pub struct PredictArgs {
    /// A model saved by `gpumf train --save`.
    #[arg(long)]
    pub model: PathBuf,
    /// Pairs to predict, one `user item` per line, separated as in training files (tab, comma,
    /// semicolon, space or '::'; more columns are ignored; a header line is skipped).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// Recommend for this user (external id): the items with the highest scores, leaving out
    /// the items the user rated in training.
    #[arg(long, value_parser = user_id)]
    pub user: Option<ExternalId>,
    /// Recommend for each user in this file (one external id a line, the first field).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Recommend for every user the model knows.
    #[arg(long)]
    pub all_users: bool,
    /// List the items whose factors have the highest cosine with this item's.
    #[arg(long, alias = "similar", value_parser = item_id)]
    pub similar_item: Option<ExternalId>,
    /// List the users whose factors have the highest cosine with this user's.
    #[arg(long, value_parser = user_id)]
    pub similar_user: Option<ExternalId>,
    /// Recommend for a user the model has not seen, from their items: `item [value]` lines
    /// (the value a rating or a binary label; without one, the top of the rating scale or the
    /// positive label). Their row is solved with the items' factors fixed (fold-in); the
    /// listed items are left out of the list.
    #[arg(long)]
    pub items: Option<PathBuf>,
    /// How many items each list has (default 10).
    #[arg(long, value_parser = at_least_one)]
    pub top: Option<usize>,
    /// Let the lists include items the user rated in training too.
    #[arg(long)]
    pub include_seen: bool,
    /// Write predictions here instead of stdout (an existing file is kept unless --force).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Replace an existing file at --output.
    #[arg(long)]
    pub force: bool,
}

/// A user id as files write them: a number, or a label such as an ASIN.
fn user_id(s: &str) -> Result<ExternalId, String> {
    ExternalId::parse(s, "user")
}

fn item_id(s: &str) -> Result<ExternalId, String> {
    ExternalId::parse(s, "item")
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{s:?} is not a whole number")),
    }
}

pub fn predict(args: PredictArgs) -> anyhow::Result<()> {
    if let Some(out) = &args.output {
        let inputs = [("--model", Some(args.model.as_path())), ("--pairs", args.pairs.as_deref()), ("--users", args.users.as_deref()), ("--items", args.items.as_deref())];
        gpumf::output::check_not_an_input(out, "--output", &inputs)?;
        gpumf::output::check_output(out, args.force).context("--output")?;
    }
    let lists = args.user.is_some() || args.users.is_some() || args.all_users || args.items.is_some();
    if args.pairs.is_some() && args.top.is_some() {
        bail!("--top sets the length of a list (--user, --users, --all-users, --items, --similar-item, --similar-user), not of --pairs");
    }
    if args.include_seen && !lists {
        bail!("--include-seen applies to recommendations (--user, --users, --all-users, --items)");
    }
    let model = load_model(&args.model)?;
    let top = args.top.unwrap_or(10);
    // Everything that can be refused is checked before the first line is written.
    let asked = asked(&model, &args, top)?;
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        match &asked {
            Asked::Pairs(pairs) => write_pairs(&model, pairs, w),
            Asked::Similar(id, list) => list.iter().try_for_each(|(other, cosine)| writeln!(w, "{id}\t{other}\t{cosine:.4}")),
            Asked::Lists(users) => write_lists(&model, users, top, !args.include_seen, w),
            Asked::New(list) => list.iter().try_for_each(|&(i, score)| writeln!(w, "{}\t{}\t{score:.4}", model.items.shown(i), shown(&model, score))),
        }
    };
    match &args.output {
        Some(out) => gpumf::output::write_atomically(out, args.force, |w| write(w)).context("--output")?,
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            write(&mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// What `args` ask for, read from their files and checked against the model.
fn asked(model: &Model, args: &PredictArgs, top: usize) -> anyhow::Result<Asked> {
    Ok(if let Some(path) = &args.pairs {
        Asked::Pairs(load_pairs(path).context("--pairs")?)
    } else if let Some(item) = &args.similar_item {
        let Some(i) = model.items.index_of(item.key) else { bail!("--similar-item {item}: the model has no such item (it knows {} items)", model.items.len()) };
        Asked::Similar(item.clone(), model.similar_items(i, top).into_iter().map(|(j, c)| (model.items.shown(j).to_string(), c)).collect())
    } else if let Some(user) = &args.similar_user {
        let Some(u) = model.users.index_of(user.key) else { bail!("--similar-user {user}: the model has no such user (it knows {} users)", model.users.len()) };
        Asked::Similar(user.clone(), model.similar_users(u, top).into_iter().map(|(j, c)| (model.users.shown(j).to_string(), c)).collect())
    } else if let Some(path) = &args.items {
        let rated = rated_items(model, path)?;
        let user = model.fold_in(&rated, FoldInReg::default())?;
        let exclude: Vec<u32> = if args.include_seen { Vec::new() } else { rated.iter().map(|&(i, _)| i).collect() };
        Asked::New(model.recommend_folded(&user, top, &exclude))
    } else {
        if !args.include_seen && model.seen.is_none() {
            eprintln!("note: this model file does not record which items each user rated, so the lists may include them");
        }
        Asked::Lists(chosen_users(model, args)?)
    })
}

/// What `predict` was asked for, read and checked.
enum Asked {
    Pairs(Vec<(ExternalId, ExternalId)>),
    /// The id asked about and its most similar ids (as written) with their cosines.
    Similar(ExternalId, Vec<(String, f32)>),
    /// The users (dense indices) to recommend for.
    Lists(Vec<u32>),
    /// A folded-in user's list: (item, score).
    New(Vec<(u32, f32)>),
}

/// `--items`: the new user's items as model indices with values (the top of the scale or the
/// positive label where a line gives none), or an error naming an item the model lacks.
fn rated_items(model: &Model, path: &std::path::Path) -> anyhow::Result<Vec<(u32, f32)>> {
    let place = |line: u64| format!("--items {}:{line}", path.display());
    load_rated_items(path)
        .context("--items")?
        .into_iter()
        .map(|(line, (item, value))| {
            let i = model.items.index_of(item.key).with_context(|| format!("{}: the model has no item {item} (it knows {} items)", place(line), model.items.len()))?;
            let value = value.unwrap_or(model.liked_value());
            model.check_rated_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", place(line)))?;
            Ok((i, value))
        })
        .collect()
}

/// The dense indices of the users whose lists were asked for, or an error naming an id (and
/// its line of the file) that the model does not have.
fn chosen_users(model: &Model, args: &PredictArgs) -> anyhow::Result<Vec<u32>> {
    if let Some(user) = &args.user {
        let Some(u) = model.users.index_of(user.key) else { bail!("--user {user}: the model has no such user (it knows {} users)", model.users.len()) };
        return Ok(vec![u]);
    }
    if let Some(path) = &args.users {
        return load_ids(path, "user")
            .context("--users")?
            .into_iter()
            .map(|(line, id)| model.users.index_of(id.key).with_context(|| format!("--users {}:{line}: the model has no user {id} (it knows {} users)", path.display(), model.users.len())))
            .collect();
    }
    Ok((0..model.users.len() as u32).collect())
}

/// Each user's list as lines of user, item, the prediction (a rating clipped to the scale, a
/// probability, or a margin and its class) and the unclipped score that orders the list; users
/// in parallel, written in their order.
fn write_lists(model: &Model, users: &[u32], top: usize, exclude_seen: bool, w: &mut dyn Write) -> std::io::Result<()> {
    for chunk in users.chunks(USERS_PER_WRITE) {
        let lists = model.recommend_many(chunk, top, exclude_seen);
        let text: Vec<String> = chunk
            .par_iter()
            .zip(lists)
            .map(|(&u, list)| {
                let user = model.users.shown(u);
                list.iter().map(|&(i, score)| format!("{user}\t{}\t{}\t{score:.4}\n", model.items.shown(i), prediction(model, u, i))).collect()
            })
            .collect();
        for lines in text {
            w.write_all(lines.as_bytes())?;
        }
    }
    Ok(())
}

/// `user item prediction` lines, `cold` added where the model lacks the user or the item.
fn write_pairs(model: &Model, pairs: &[(ExternalId, ExternalId)], w: &mut dyn Write) -> std::io::Result<()> {
    for (user, item) in pairs {
        let (u, i) = (model.users.index_of(user.key), model.items.index_of(item.key));
        let note = if u.is_some() && i.is_some() { "" } else { "\tcold" };
        let unknown = gpumf::data::UNKNOWN;
        writeln!(w, "{user}\t{item}\t{}{note}", prediction(model, u.unwrap_or(unknown), i.unwrap_or(unknown)))?;
    }
    Ok(())
}

fn prediction(model: &Model, user: u32, item: u32) -> String {
    shown(model, model.score(user, item))
}

/// What a score predicts, as printed: a rating clipped to the scale, a probability, or a
/// margin and its class.
fn shown(model: &Model, score: f32) -> String {
    let predicted = model.loss.link(score, model.rating_range);
    match (model.loss.link_name(), model.labels) {
        ("margin", Some(labels)) => format!("{predicted:.4}\t{}", labels.class(score)),
        _ => format!("{predicted:.4}"),
    }
}
