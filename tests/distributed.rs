//! DSGD as users run it: `--workers` threads and `--hosts` processes on loopback write the same
//! model bytes, resume from checkpoints to the same bytes, and fail clearly.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn shipped() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv").display().to_string()
}

/// The settings every run of a comparison shares: a seeded split of the shipped data, a 4x4
/// grid, 8 epochs at rank 16; a flag in `extra` replaces its default.
fn common(extra: &[&str]) -> Vec<String> {
    let defaults = [("--blocks", "4"), ("--epochs", "8"), ("--rank", "16")];
    let mut args: Vec<String> = ["train", "--train", &shipped(), "--test-fraction", "0.2", "--json"].iter().map(|s| s.to_string()).collect();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value.to_string()]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A gpumf process that is killed if the test ends (or fails) before it is waited for.
struct Process(Option<Child>);

impl Process {
    fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0.take().expect("not yet waited for").wait_with_output()
    }

    fn kill(&mut self) -> std::io::Result<()> {
        let child = self.0.as_mut().expect("not yet waited for");
        child.kill()?;
        child.wait().map(|_| ())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn(args: &[String]) -> Process {
    Process(Some(Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs")))
}

fn run(args: &[String]) -> Output {
    spawn(args).wait_with_output().expect("finishes")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A host file of `n` loopback addresses on ports free a moment ago.
fn host_file(dir: &Path, n: usize) -> String {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let lines: Vec<String> = listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
    let path = dir.join(format!("hosts{n}"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

/// Runs `processes` processes of `workers` workers each; returns process 0's output and the
/// others' statuses.
fn cluster(dir: &Path, processes: usize, workers: usize, extra: &[&str]) -> (Output, Vec<Output>) {
    let hosts = host_file(dir, processes);
    let mut children = Vec::new();
    for p in (1..processes).rev() {
        let args = common(&[&["--workers", &workers.to_string(), "--hosts", &hosts, "--process", &p.to_string(), "--timeout", "60"], extra].concat());
        children.push(spawn(&args));
    }
    let lead = run(&common(&[&["--workers", &workers.to_string(), "--hosts", &hosts, "--process", "0", "--timeout", "60"], extra].concat()));
    let others = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    (lead, others)
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", stderr(o)))
}

#[test]
fn any_worker_count_as_threads_or_processes_writes_the_same_model_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let mut models = Vec::new();
    let mut losses = Vec::new();
    for workers in ["1", "2", "4"] {
        let o = run(&common(&["--workers", workers, "--save", &path(&format!("threads{workers}"))]));
        assert!(o.status.success(), "--workers {workers}: {}", stderr(&o));
        let v = json(&o);
        losses.push(v["history"].as_array().unwrap().iter().map(|e| (e["train_loss"].as_f64().unwrap(), e["test_rmse"].as_f64().unwrap())).collect::<Vec<_>>());
        models.push(std::fs::read(path(&format!("threads{workers}"))).unwrap());
    }
    for (processes, workers) in [(2, 2), (2, 1), (4, 1)] {
        let name = format!("p{processes}x{workers}");
        let (lead, others) = cluster(dir.path(), processes, workers, &["--save", &path(&name)]);
        assert!(lead.status.success(), "{name}: {}", stderr(&lead));
        for o in &others {
            assert!(o.status.success(), "{name}: {}", stderr(o));
            assert!(o.stdout.is_empty(), "only process 0 prints the report");
        }
        let v = json(&lead);
        assert_eq!(v["history"].as_array().unwrap().len(), 8, "process 0 reports every epoch");
        losses.push(v["history"].as_array().unwrap().iter().map(|e| (e["train_loss"].as_f64().unwrap(), e["test_rmse"].as_f64().unwrap())).collect());
        models.push(std::fs::read(path(&name)).unwrap());
    }
    for (i, m) in models.iter().enumerate() {
        assert!(m == &models[0], "run {i} wrote other bytes than --workers 1");
        assert_eq!(losses[i], losses[0], "run {i} reported other figures");
    }
    // Training worked: the loss fell and the test RMSE is in the range of the one-process trainer.
    let first = &losses[0];
    assert!(first.windows(2).all(|w| w[1].0 < w[0].0), "the loss falls every epoch: {first:?}");
    let one = run(&common(&["--threads", "1"]));
    assert!(one.status.success(), "{}", stderr(&one));
    let sequential = json(&one)["test_rmse"].as_f64().unwrap();
    let dsgd = first.last().unwrap().1;
    assert!((dsgd - sequential).abs() < 0.005, "DSGD {dsgd} vs one process {sequential}");
}

#[test]
fn a_resumed_run_reaches_the_uninterrupted_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let whole = run(&common(&["--workers", "2", "--save", &path("whole")]));
    assert!(whole.status.success(), "{}", stderr(&whole));
    // Stops after 5 of 8 epochs, as if killed: checkpoints after epochs 3 and 5.
    let first = run(&common(&["--workers", "2", "--epochs", "5", "--checkpoint-every", "3", "--checkpoint-dir", &path("ck")]));
    assert!(first.status.success(), "{}", stderr(&first));
    let resumed = run(&common(&["--workers", "2", "--resume", &path("ck"), "--save", &path("resumed")]));
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert_eq!(json(&resumed)["history"][0]["epoch"], 6, "resumed after epoch 5");
    assert!(std::fs::read(path("whole")).unwrap() == std::fs::read(path("resumed")).unwrap(), "resumed model differs");
    // A checkpoint cut short (a run killed while writing it) is passed over for the one before.
    let latest = dir.path().join("ck/worker-0-of-2.epoch-5.ckpt");
    let bytes = std::fs::read(&latest).unwrap();
    std::fs::write(&latest, &bytes[..bytes.len() / 2]).unwrap();
    let again = run(&common(&["--workers", "2", "--resume", &path("ck"), "--save", &path("again")]));
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json(&again)["history"][0]["epoch"], 4, "resumed after epoch 3");
    assert!(std::fs::read(path("whole")).unwrap() == std::fs::read(path("again")).unwrap(), "resumed model differs");
    // Other settings, or another worker count, are refused.
    let other = run(&common(&["--workers", "2", "--rank", "8", "--resume", &path("ck")]));
    assert!(!other.status.success() && stderr(&other).contains("--rank 16 there, 8 now"), "{}", stderr(&other));
    let more = run(&common(&["--workers", "4", "--resume", &path("ck")]));
    assert!(!more.status.success() && stderr(&more).contains("for 4 workers"), "{}", stderr(&more));
}

#[test]
fn a_killed_process_is_named_by_the_survivor() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = host_file(dir.path(), 2);
    let long = |p: &str| common(&["--workers", "1", "--epochs", "100000", "--hosts", &hosts, "--process", p, "--timeout", "30"]);
    let mut victim = spawn(&long("1"));
    let lead = spawn(&long("0"));
    std::thread::sleep(Duration::from_secs(3));
    victim.kill().unwrap();
    let started = Instant::now();
    let o = lead.wait_with_output().unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "the survivor must fail");
    assert!(err.contains("process 1") && err.contains(hosts_line(&hosts, 1).as_str()), "names the lost process: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "within the timeout");
}

#[test]
fn a_failing_worker_stops_the_others_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = host_file(dir.path(), 2);
    // A learning rate that diverges in the first epoch: the figures say so in both processes,
    // and both stop at once rather than after --timeout.
    let diverging = |p: &str| common(&["--workers", "1", "--lr", "50", "--hosts", &hosts, "--process", p, "--timeout", "60"]);
    let started = Instant::now();
    let one = spawn(&diverging("1"));
    let zero = run(&diverging("0"));
    let one = one.wait_with_output().unwrap();
    assert!(!zero.status.success() && stderr(&zero).contains("training diverged"), "{}", stderr(&zero));
    // Every process's training loop sees the cluster's figures, so process 1 finds it too.
    assert!(!one.status.success() && stderr(&one).contains("training diverged"), "{}", stderr(&one));
    assert!(started.elapsed() < Duration::from_secs(30), "well within the timeout: {:?}", started.elapsed());
    let threads = run(&common(&["--workers", "2", "--lr", "50"]));
    assert!(!threads.status.success() && stderr(&threads).contains("training diverged"), "{}", stderr(&threads));
    assert!(!stderr(&threads).contains("stopped because"), "the failure itself is reported: {}", stderr(&threads));
}

#[test]
fn ials_on_any_processes_and_workers_writes_the_one_process_model() {
    // Each process solves whole blocks of rows as one process does, so the bits are the same.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let ials = ["--loss", "ials", "--positive-threshold", "4", "--epochs", "4", "--rank", "16"];
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--train", &shipped(), "--test-fraction", "0.2", "--json"].iter().map(|s| s.to_string()).collect();
        a.extend(ials.iter().chain(extra).map(|s| s.to_string()));
        a
    };
    let figures = |o: &Output| -> Vec<(f64, f64)> { json(o)["history"].as_array().unwrap().iter().map(|e| (e["train_loss"].as_f64().unwrap(), e["test_ndcg@20"].as_f64().unwrap_or(f64::NAN))).collect() };
    let one = run(&args(&["--threads", "2", "--save", &path("one")]));
    assert!(one.status.success(), "{}", stderr(&one));
    let workers = run(&args(&["--workers", "2", "--save", &path("workers")]));
    assert!(workers.status.success(), "{}", stderr(&workers));
    // Three processes, with threads of their own choosing.
    let hosts = host_file(dir.path(), 3);
    let others: Vec<Process> = [("1", "1"), ("2", "2")].iter().map(|(p, w)| spawn(&args(&["--workers", w, "--hosts", &hosts, "--process", p, "--timeout", "60"]))).collect();
    let lead = run(&args(&["--workers", "2", "--hosts", &hosts, "--process", "0", "--timeout", "60", "--save", &path("three")]));
    assert!(lead.status.success(), "{}", stderr(&lead));
    for o in others {
        let o = o.wait_with_output().unwrap();
        assert!(o.status.success() && o.stdout.is_empty(), "{}", stderr(&o));
    }
    assert!(json(&lead)["backend"].as_str().unwrap().contains("3 processes"), "{}", json(&lead)["backend"]);
    let model = std::fs::read(path("one")).unwrap();
    for (name, o) in [("workers", &workers), ("three", &lead)] {
        assert!(std::fs::read(path(name)).unwrap() == model, "{name}: other bytes than one process's");
        assert_eq!(figures(o), figures(&one), "{name}: other figures");
    }
    let history = figures(&one);
    assert!(history.windows(2).all(|w| w[1].0 < w[0].0) && history.last().unwrap().1 > 0.2, "trains: {history:?}");
    // What ials on a cluster does not do is refused by name.
    for (flag, said) in [(&["--blocks", "4"][..], "--blocks"), (&["--devices", "0"][..], "--devices"), (&["--checkpoint-every", "1", "--checkpoint-dir", &path("c")][..], "checkpoints")] {
        let o = run(&args(&[&["--workers", "2"][..], flag].concat()));
        assert!(!o.status.success() && stderr(&o).contains(said), "{flag:?}: {}", stderr(&o));
    }
}

#[test]
fn processes_reading_their_file_piece_by_piece_refuse_ratings_for_a_one_class_loss() {
    // One process loading the file whole refused star ratings as events; the pieces were let
    // through, and a cluster trained bpr on them as weights.
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("test.csv");
    std::fs::write(&test, "userId,movieId,rating\n1,1,1\n2,3,1\n").unwrap();
    let test = test.display().to_string();
    let hosts = host_file(dir.path(), 2);
    let args = |p: &str| -> Vec<String> {
        ["train", "--train", &shipped(), "--test", &test, "--loss", "bpr", "--epochs", "1", "--workers", "1", "--hosts", &hosts, "--process", p, "--timeout", "20"].iter().map(|s| s.to_string()).collect()
    };
    let one = spawn(&args("1"));
    let zero = run(&args("0"));
    let one = one.wait_with_output().unwrap();
    for o in [&zero, &one] {
        assert!(!o.status.success() && stderr(o).contains("holds values from 0.5 to 5, but --loss bpr trains on events"), "{}", stderr(o));
    }
}

/// The items user `user` rated in the shipped file.
fn rated_by(user: &str) -> Vec<String> {
    let text = std::fs::read_to_string(shipped()).unwrap();
    text.lines().skip(1).filter_map(|l| l.split_once(',')).filter(|(u, _)| *u == user).map(|(_, rest)| rest.split(',').next().unwrap().to_string()).collect()
}

#[test]
fn a_model_trained_on_a_cluster_leaves_each_users_training_items_out_of_its_list() {
    // The report once recorded its own (empty) training set over the items the workers gathered,
    // so a saved cluster model recommended what each user had rated.
    let dir = tempfile::tempdir().unwrap();
    let rated = rated_by("1");
    for (name, extra) in [("dsgd", &["--blocks", "4"][..]), ("ials", &["--loss", "ials", "--positive-threshold", "0.5"][..])] {
        let model = dir.path().join(name).display().to_string();
        let o = run(&[&["train", "--train", &shipped(), "--epochs", "2", "--rank", "8", "--workers", "2", "--save", &model][..], extra].concat().iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let o = Command::new(env!("CARGO_BIN_EXE_gpumf")).args(["predict", "--model", &model, "--user", "1", "--top", "40"]).output().unwrap();
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let listed: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().map(|l| l.split('\t').nth(1).unwrap().to_string()).collect();
        assert_eq!(listed.len(), 40, "{name}");
        assert!(listed.iter().all(|i| !rated.contains(i)), "{name}: user 1's list names items it rated: {listed:?}");
    }
}

#[test]
fn a_process_whose_stripes_have_no_test_ratings_still_takes_part_in_scoring() {
    // One test rating: its user's stripe lies in one process, and the other has none.
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("one.csv");
    let first_two: Vec<String> = std::fs::read_to_string(shipped()).unwrap().lines().take(2).map(String::from).collect();
    std::fs::write(&test, first_two.join("\n") + "\n").unwrap();
    let test = test.display().to_string();
    for seed in ["1", "2"] {
        let hosts = host_file(dir.path(), 2);
        let args = |p: &str| -> Vec<String> {
            ["train", "--train", &shipped(), "--test", &test, "--epochs", "2", "--rank", "8", "--seed", seed, "--workers", "1", "--hosts", &hosts, "--process", p, "--timeout", "20", "--json"].iter().map(|s| s.to_string()).collect()
        };
        let one = spawn(&args("1"));
        let zero = run(&args("0"));
        assert!(one.wait_with_output().unwrap().status.success());
        assert!(zero.status.success(), "seed {seed}: {}", stderr(&zero));
        assert_eq!(json(&zero)["data"]["test_ratings"], 1);
        assert!(json(&zero)["test_rmse"].as_f64().is_some());
    }
}

#[test]
fn processes_that_read_only_their_stripes_train_the_same_factors() {
    // With the test set in a file of its own, each process reads the training file piece by
    // piece and keeps only its stripes; the factors are those of a run that loaded it whole.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let generated = run(&["generate", "--ratings", "60000", "--users", "600", "--items", "300", "--train-out", &path("train.bin"), "--test-out", &path("test.bin")].map(String::from));
    assert!(generated.status.success(), "{}", stderr(&generated));
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--train", &path("train.bin"), "--test", &path("test.bin"), "--blocks", "4", "--epochs", "5", "--rank", "16", "--json"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let whole = run(&args(&["--workers", "1", "--save", &path("whole")]));
    assert!(whole.status.success(), "{}", stderr(&whole));
    // The same file in gzip, unpacked piece by piece as it is read.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &std::fs::read(path("train.bin")).unwrap()).unwrap();
    std::fs::write(path("train.bin.gz"), gz.finish().unwrap()).unwrap();
    for (train, saved) in [("train.bin", "stripes"), ("train.bin.gz", "stripes.gz")] {
        let args = |extra: &[&str]| -> Vec<String> { args(extra).into_iter().map(|a| if a == path("train.bin") { path(train) } else { a }).collect() };
        let hosts = host_file(dir.path(), 2);
        // Process 1 without --json, so that it says what it kept.
        let one = spawn(&args(&["--workers", "2", "--hosts", &hosts, "--process", "1", "--timeout", "60"]).into_iter().filter(|a| a != "--json").collect::<Vec<_>>());
        let zero = run(&args(&["--workers", "2", "--hosts", &hosts, "--process", "0", "--timeout", "60", "--save", &path(saved)]));
        let one = one.wait_with_output().unwrap();
        assert!(zero.status.success() && one.status.success(), "{} / {}", stderr(&zero), stderr(&one));
        assert!(stderr(&one).contains("read piece by piece; this process keeps the"), "{train}: {}", stderr(&one));
        let kept: usize = stderr(&one).split("keeps the ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(kept > 20_000 && kept < 40_000, "process 1 keeps about half of 60000: {kept}");
        let figures = |o: &Output| -> Vec<(f64, f64)> { json(o)["history"].as_array().unwrap().iter().map(|e| (e["train_loss"].as_f64().unwrap(), e["test_rmse"].as_f64().unwrap())).collect() };
        assert_eq!(figures(&zero), figures(&whole), "{train}: the same figures every epoch");
        let (a, b) = (gpumf::model::Model::load(Path::new(&path("whole"))).unwrap(), gpumf::model::Model::load(Path::new(&path(saved))).unwrap());
        assert!(a.user_factors == b.user_factors && a.item_factors == b.item_factors && a.user_bias == b.user_bias && a.item_bias == b.item_bias && a.mean == b.mean);
        assert!(a.seen.is_some() && a.seen == b.seen, "each user's rated items, gathered from the processes");
        assert!(std::fs::read(path("whole")).unwrap() == std::fs::read(path(saved)).unwrap(), "{train}: the same model file");
    }
}

fn hosts_line(file: &str, n: usize) -> String {
    std::fs::read_to_string(file).unwrap().lines().nth(n).unwrap().to_string()
}

#[test]
fn mismatched_or_missing_peers_get_clear_errors_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let save = dir.path().join("never");
    let save_s = save.display().to_string();
    // Different ranks: both processes stop, naming the difference.
    let hosts = host_file(dir.path(), 2);
    let one = spawn(&common(&["--workers", "1", "--hosts", &hosts, "--process", "1", "--rank", "8", "--timeout", "20"]));
    let zero = run(&common(&["--workers", "1", "--hosts", &hosts, "--process", "0", "--timeout", "20", "--save", &save_s]));
    let one = one.wait_with_output().unwrap();
    for o in [&zero, &one] {
        assert!(!o.status.success());
        assert!(stderr(o).contains("other settings or data") && stderr(o).contains("--rank"), "{}", stderr(o));
    }
    // Another host file (three processes against two).
    let three = host_file(dir.path(), 3);
    let mut lines: Vec<String> = std::fs::read_to_string(&hosts).unwrap().lines().map(String::from).collect();
    lines.push(hosts_line(&three, 2));
    std::fs::write(&three, lines.join("\n")).unwrap();
    let one = spawn(&common(&["--workers", "1", "--hosts", &three, "--process", "1", "--timeout", "20", "--blocks", "6"]));
    let zero = run(&common(&["--workers", "1", "--hosts", &hosts, "--process", "0", "--timeout", "20", "--save", &save_s, "--blocks", "6"]));
    let one = one.wait_with_output().unwrap();
    assert!(!zero.status.success() && stderr(&zero).contains("same --hosts file"), "{} / {}", stderr(&zero), stderr(&one));
    assert!(!one.status.success(), "{}", stderr(&one));
    // Nobody at process 0's address.
    let lonely = run(&common(&["--workers", "1", "--hosts", &hosts, "--process", "1", "--timeout", "2"]));
    assert!(!lonely.status.success() && stderr(&lonely).contains("cannot reach process 0"), "{}", stderr(&lonely));
    // A process number the file does not have; a grid the workers do not divide.
    let beyond = run(&common(&["--workers", "1", "--hosts", &hosts, "--process", "2"]));
    assert!(stderr(&beyond).contains("--process 2: the host file lists 2 processes"), "{}", stderr(&beyond));
    let uneven = run(&common(&["--workers", "3"]));
    assert!(stderr(&uneven).contains("--blocks 4 with 3 workers"), "{}", stderr(&uneven));
    assert!(!save.exists(), "a failed run writes no model");
    let checkpoints = dir.path().join("checkpoints");
    let o = run(&common(&["--workers", "1", "--hosts", &hosts, "--process", "1", "--timeout", "2", "--checkpoint-every", "1", "--checkpoint-dir", &checkpoints.display().to_string()]));
    assert!(!o.status.success() && !checkpoints.exists(), "a run that never started makes no checkpoint directory");
}

/// The SVD++ term, the default, trains on a cluster too: it beats the plain model there as it
/// does in one process, and the run says it is on (that any worker count writes the same bytes
/// with it is the first test's).
#[test]
fn the_cluster_trains_the_svdpp_term() {
    let with = json(&run(&common(&["--workers", "2", "--epochs", "20"])));
    let without = json(&run(&common(&["--workers", "2", "--epochs", "20", "--no-svdpp"])));
    assert!(with["backend"].as_str().unwrap().contains("SVD++ term") && !without["backend"].as_str().unwrap().contains("SVD++"), "{} / {}", with["backend"], without["backend"]);
    assert_eq!(with["settings"]["params"]["svdpp"], serde_json::Value::Bool(true));
    let (a, b) = (with["test_rmse"].as_f64().unwrap(), without["test_rmse"].as_f64().unwrap());
    assert!(a < b - 0.002, "with the SVD++ term {a}, without {b}");
}

#[test]
fn the_pairwise_loss_trains_the_same_model_on_any_worker_count() {
    // Each block draws its non-events from a stream named by its first user and item, so the
    // workers, threads or processes, draw what one process draws.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let bpr = ["--loss", "bpr", "--positive-threshold", "4"];
    let mut models = Vec::new();
    for workers in ["1", "2"] {
        let o = run(&common(&[&bpr[..], &["--workers", workers, "--save", &path(&format!("w{workers}"))]].concat()));
        assert!(o.status.success(), "--workers {workers}: {}", stderr(&o));
        models.push(std::fs::read(path(&format!("w{workers}"))).unwrap());
    }
    let (lead, others) = cluster(dir.path(), 2, 1, &[&bpr[..], &["--save", &path("p2")]].concat());
    assert!(lead.status.success() && others.iter().all(|o| o.status.success()), "{}", stderr(&lead));
    models.push(std::fs::read(path("p2")).unwrap());
    assert!(models.iter().all(|m| m == &models[0]), "the models differ");
    let v = json(&lead);
    let losses: Vec<f64> = v["history"].as_array().unwrap().iter().map(|e| e["train_loss"].as_f64().unwrap()).collect();
    assert!(losses.last().unwrap() < &losses[0], "the pairwise loss falls: {losses:?}");
    // On GPUs the cluster would not draw pairs: refused by name.
    let o = run(&common(&[&bpr[..], &["--workers", "1", "--devices", "0"]].concat()));
    assert!(!o.status.success() && stderr(&o).contains("--devices"), "{}", stderr(&o));
}
