//! What a new user met in their first hour (issue 17), as they meet it: through the binary.

use gpumf::data::{load_ratings, LoadOptions};
use gpumf::problem::split_random;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpumf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).env("GPUMF_ADAPTER", "").output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv")
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A failure with a message, not a panic or an abort.
fn fails_with(o: &Output, expected: &str) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "expected a clean error: {e}");
    assert!(e.contains(expected), "expected {expected:?} in: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn recommendations_leave_out_the_users_training_items_and_rank_by_the_unclipped_score() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gpumf");
    let o = gpumf(&["train", "--train", &s(&shipped()), "--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--quiet", "--save", &s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));

    // User 1's training ratings under the same seeded split the command made.
    let all = load_ratings(&shipped(), LoadOptions::default()).unwrap().ratings;
    let problem = split_random(&all, 0.2, 42).unwrap();
    let u1 = problem.users.index_of(1).unwrap();
    let trained: HashSet<u64> = problem.train.iter().filter(|r| r.user == u1).map(|r| problem.items.external_id(r.item)).collect();
    assert!(trained.len() > 100);

    let top = |n: &str, extra: &[&str]| -> Vec<(u64, f64, f64)> {
        let o = gpumf(&[&["predict", "--model", &s(&model), "--user", "1", "--top", n], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap())
            })
            .collect()
    };
    let unseen = top("20", &[]);
    assert_eq!(unseen.len(), 20);
    for (item, predicted, score) in &unseen {
        assert!(!trained.contains(item), "item {item}, rated by user 1 in training, was recommended");
        assert!(*predicted <= 5.0 && *predicted <= *score + 1e-4);
    }
    assert!(unseen.windows(2).all(|w| w[0].2 >= w[1].2), "ordered by score: {unseen:?}");
    let distinct: HashSet<u64> = unseen.iter().map(|t| (t.2 * 1e4) as u64).collect();
    assert!(distinct.len() > 10, "the top of the list is not one clipped tie: {unseen:?}");

    // --include-seen ranks every item; leaving out the training items gives the default list.
    let with_seen = top("400", &["--include-seen"]);
    assert!(with_seen.iter().any(|(item, _, _)| trained.contains(item)), "--include-seen lists training items too: {with_seen:?}");
    let filtered: Vec<u64> = with_seen.iter().map(|t| t.0).filter(|i| !trained.contains(i)).take(20).collect();
    assert_eq!(filtered, unseen.iter().map(|t| t.0).collect::<Vec<_>>());
    fails_with(&gpumf(&["predict", "--model", &s(&model), "--user", "1", "--top", "0"]), "at least 1");
}

#[test]
fn a_dense_matrix_with_a_missing_marker_trains() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jester.csv");
    // Jester's layout: a count of the user's ratings, then 10 jokes on -10..10, 99 = not rated.
    let mut text = String::new();
    for u in 0..300 {
        let cells: Vec<String> = (0..10).map(|j| if (u + j) % 3 == 0 { "99".into() } else { format!("{:.2}", ((u * 7 + j * 13) % 200) as f64 / 10.0 - 10.0) }).collect();
        text.push_str(&format!("{},{}\n", cells.iter().filter(|c| *c != "99").count(), cells.join(",")));
    }
    std::fs::write(&path, text).unwrap();
    let o = gpumf(&["train", "--train", &s(&path), "--epochs", "2", "--rank", "4", "--backend", "cpu"]);
    fails_with(&o, "--format dense");
    let o = gpumf(&["train", "--train", &s(&path), "--format", "dense", "--missing", "99", "--skip-columns", "1", "--test-fraction", "0.2", "--epochs", "2", "--rank", "4", "--backend", "cpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["train_ratings"].as_u64().unwrap() + v["data"]["test_ratings"].as_u64().unwrap(), 2000);
    assert_eq!(v["data"]["items"], 10);
    fails_with(&gpumf(&["train", "--train", &s(&shipped()), "--missing", "99"]), "--format dense");
}

#[test]
fn archives_and_foreign_binaries_are_named_not_misread_as_records() {
    let dir = tempfile::tempdir().unwrap();
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut e, bytes).unwrap();
        e.finish().unwrap()
    };
    let mut matlab = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024".to_vec();
    matlab.resize(128 + 36, 0);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("jester.zip.bz2", b"BZh91AY&SY\x12\x34\x56\x78\x00\x00".to_vec(), "bzip2 archive; unpack it first"),
        ("ratings.rda", b"BZh91AY&SY\x00\x00\x00\x01".to_vec(), "bzip2"),
        ("ratings.xz", b"\xFD7zXZ\x00\x00\x04\xe6\xd6\xb4\x46".to_vec(), "xz archive"),
        ("ratings.zst", b"\x28\xB5\x2F\xFD\x04\x00\x00\x00\x00\x00\x00\x00".to_vec(), "zstd archive"),
        ("jester.mat.gz", gz(&matlab), "MATLAB"),
        ("jester.xls", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\x00\x00\x00\x00".to_vec(), "Excel"),
        // 12-byte records whose ratings are not finite numbers: not cuMF_SGD's data.
        ("noise.dat", [1u8, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f].repeat(4), "not cuMF_SGD's binary records"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        fails_with(&gpumf(&["train", "--train", &s(&path), "--epochs", "1"]), expected);
    }
    // Plausible records without the extension are still read as cuMF_SGD's format.
    let bin = dir.path().join("gen");
    let o = gpumf(&["generate", "--ratings", "3000", "--users", "100", "--items", "50", "--train-out", &s(&bin)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gpumf(&["train", "--train", &s(&bin), "--epochs", "1", "--rank", "4", "--backend", "cpu"]);
    assert!(o.status.success() && stderr(&o).contains("Binary format"), "{}", stderr(&o));
}

#[test]
fn a_split_column_pairs_with_double_colons_and_duplicates_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    let marked = dir.path().join("marked.tsv");
    let mut text = String::new();
    for u in 1..=40 {
        for i in 1..=10 {
            let split = if i % 5 == 0 { "test" } else { "train" };
            text.push_str(&format!("{u}\t{i}\t{}\t{split}\n", 1 + (u * i) % 5));
        }
    }
    std::fs::write(&marked, &text).unwrap();
    let o = gpumf(&["train", "--train", &s(&marked), "--split-column", "4", "--epochs", "1", "--rank", "4", "--backend", "cpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["data"]["train_ratings"].as_u64(), v["data"]["test_ratings"].as_u64()), (Some(320), Some(80)));
    let numeric = dir.path().join("numeric.tsv");
    std::fs::write(&numeric, text.replace("\ttest", "\t1").replace("\ttrain", "\t0")).unwrap();
    let o = gpumf(&["train", "--train", &s(&numeric), "--split-column", "4", "--epochs", "1", "--rank", "4", "--backend", "cpu", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["test_ratings"].as_u64(), Some(80), "{}", stderr(&o));
    let bad = dir.path().join("bad.tsv");
    std::fs::write(&bad, text.replacen("\ttrain", "\tvalidation", 1)).unwrap();
    fails_with(&gpumf(&["train", "--train", &s(&bad), "--split-column", "4"]), "bad.tsv:1: split column 4 holds \"validation\"");

    // A file detected as binary records has no columns to split by.
    let bin = dir.path().join("gen");
    let o = gpumf(&["generate", "--ratings", "150", "--users", "20", "--items", "10", "--train-out", &s(&bin)]);
    assert!(o.status.success(), "{}", stderr(&o));
    fails_with(&gpumf(&["train", "--train", &s(&bin), "--split-column", "4"]), "holds binary records");

    // predict --pairs reads '::' as train does.
    let model = dir.path().join("m.gpumf");
    let o = gpumf(&["train", "--train", &s(&shipped()), "--epochs", "1", "--rank", "4", "--backend", "cpu", "--quiet", "--save", &s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pairs = dir.path().join("pairs.dat");
    std::fs::write(&pairs, "1::1193\n").unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--pairs", &s(&pairs)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("1\t1193\t"), "{}", stdout(&o));
    std::fs::write(&pairs, "1::2.5\n").unwrap();
    fails_with(&gpumf(&["predict", "--model", &s(&model), "--pairs", &s(&pairs)]), "pairs.dat:1: bad item id");

    // Repeated (user, item) pairs are counted, and resolved on request.
    let dups = dir.path().join("dups.tsv");
    std::fs::write(&dups, "1\t1\t5\n1\t2\t3\n2\t1\t4\n1\t1\t1\n2\t2\t2\n1\t1\t3\n").unwrap();
    let o = gpumf(&["train", "--train", &s(&dups), "--epochs", "1", "--rank", "2", "--backend", "cpu"]);
    assert!(stderr(&o).contains("2 ratings repeat a (user, item) pair"), "{}", stderr(&o));
    fails_with(&gpumf(&["train", "--train", &s(&dups), "--duplicates", "error"]), "user 1 rates item 1 more than once (line 1 and line 4)");
    let o = gpumf(&["train", "--train", &s(&dups), "--duplicates", "mean", "--epochs", "1", "--rank", "2", "--backend", "cpu", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["train_ratings"], 4, "{}", stderr(&o));
}

#[test]
fn corrupt_models_are_errors_and_saves_are_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gpumf");
    let data = s(&shipped());
    let o = gpumf(&["train", "--train", &data, "--epochs", "2", "--rank", "8", "--backend", "cpu", "--quiet", "--save", &s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let good = std::fs::read(&model).unwrap();
    for (name, spoil) in [("flipped", 0x5au8), ("ones", 0xff)] {
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid..mid + 100].iter_mut().for_each(|b| *b = if spoil == 0xff { 0xff } else { *b ^ spoil });
        let path = dir.path().join(format!("{name}.gpumf"));
        std::fs::write(&path, bad).unwrap();
        fails_with(&gpumf(&["eval", "--model", &s(&path), "--test", &data]), "checksum mismatch");
        fails_with(&gpumf(&["predict", "--model", &s(&path), "--user", "1"]), "checksum mismatch");
    }

    // Nowhere to save: refused before a single epoch runs.
    for (target, expected) in [
        (s(&dir.path().join("no/such/dir/m.gpumf")), "does not exist"),
        (s(dir.path()), "is a directory"),
        ("/proc/m.gpumf".to_string(), "cannot write in /proc"),
    ] {
        let o = gpumf(&["train", "--train", &data, "--epochs", "1", "--backend", "cpu", "--save", &target]);
        fails_with(&o, expected);
        assert!(!stdout(&o).contains("trained"), "trained before refusing: {}", stdout(&o));
    }
    let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains("partial") && !n.contains("probe")), "temporary files left: {names:?}");
}

#[test]
fn sizes_beyond_the_machine_are_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let out = s(&dir.path().join("huge.bin"));
    fails_with(&gpumf(&["generate", "--ratings", "1000000000000", "--users", "100000000", "--items", "1000000", "--train-out", &out]), "ratings fit");
    // More ratings than the Netflix shape has pairs: no sparse matrix, however much memory.
    fails_with(&gpumf(&["generate", "--ratings", "1000000000000", "--train-out", &out]), "more than the 8532958530 user-item pairs");
    assert!(!Path::new(&out).exists());
    fails_with(&gpumf(&["validate", "--rows", "10000000", "--cols", "10000000", "--rank", "2", "--no-gpu"]), "fit");
    fails_with(&gpumf(&["train", "--train", &s(&shipped()), "--threads", "10000"]), "--threads 10000 is far more than");
    fails_with(&gpumf(&["generate", "--ratings", "10", "--hidden-rank", "4611686018427387904", "--train-out", &out]), "--hidden-rank");
    // An epoch count costs time, not an allocation up front: one that would abort is refused
    // by no one, so a short run with a huge count must start (and is stopped by its own time).
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpumf"))
        .args(["train", "--train", &s(&shipped()), "--epochs", "1000000000000000", "--rank", "2", "--backend", "cpu", "--quiet"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(child.try_wait().unwrap().is_none(), "a huge --epochs ended at once (an abort?)");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn gpu_lookups_print_only_gpumfs_own_lines() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).env_remove("XDG_RUNTIME_DIR").output().unwrap();
    let info = run(&["info", "--json"]);
    assert!(info.status.success());
    assert!(!stderr(&info).contains("XDG_RUNTIME_DIR"), "{}", stderr(&info));
    let o = run(&["train", "--train", &s(&shipped()), "--epochs", "1", "--rank", "4", "--quiet"]);
    assert!(o.status.success() && !stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
    // When auto passes over a software adapter, it names it rather than claiming there is none.
    let adapters: Vec<serde_json::Value> = serde_json::from_slice(&info.stdout).unwrap();
    let o = run(&["train", "--train", &s(&shipped()), "--epochs", "1", "--rank", "4"]);
    if !adapters.is_empty() && adapters.iter().all(|a| a["device_type"] == "Cpu") {
        let name = adapters[0]["name"].as_str().unwrap();
        assert!(stderr(&o).contains(name) && stderr(&o).contains("software"), "{}", stderr(&o));
        assert!(!stderr(&o).contains("no GPU adapter found"), "{}", stderr(&o));
    }
    let help = stdout(&gpumf(&["train", "--help"]));
    assert!(help.contains("software adapter"), "{help}");
}

#[test]
fn bench_runs_exactly_the_ranks_asked_and_validate_prints_each_case_once() {
    let o = gpumf(&["bench", "--ratings", "3000", "--users", "100", "--items", "50", "--backends", "cpu", "--ranks", "4,8", "--epochs", "1", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let ranks: Vec<u64> = rows.iter().map(|r| r["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, vec![4, 8]);
    // The time to a target counts from the first epoch, as a peer's is measured: a target the
    // first epoch meets is reached in that epoch's time (scoring included), set-up left out.
    let o = gpumf(&["bench", "--ratings", "20000", "--users", "400", "--items", "300", "--backends", "cpu", "--epochs", "2", "--target", "100", "--json"]);
    let row = &serde_json::from_slice::<Vec<serde_json::Value>>(&o.stdout).unwrap()[0];
    let (to_target, first) = (row["seconds_to_target"].as_f64().unwrap(), &row["history"][0]);
    let epoch_end = first["elapsed_seconds"].as_f64().unwrap() - row["setup_seconds"].as_f64().unwrap();
    assert!((to_target - epoch_end).abs() < 1e-9 && to_target >= first["sgd_seconds"].as_f64().unwrap(), "{row}");
    // Each epoch is on stderr as it ends (a run cut short still leaves it), with its test metric.
    let err = stderr(&o);
    let epochs: Vec<&str> = err.lines().filter(|l| l.starts_with("bench: cpu rank 128, epoch ")).collect();
    assert_eq!(epochs.len(), 2, "{err}");
    assert!(epochs[1].starts_with("bench: cpu rank 128, epoch 2: ") && epochs[1].contains(", test rmse "), "{err}");
    let o = gpumf(&["bench", "--ratings", "3000", "--users", "100", "--items", "50", "--backends", "cpu", "--epochs", "1"]);
    assert!(stdout(&o).contains("eff GB/s") && stdout(&o).contains("effective bytes"), "{}", stdout(&o));

    let o = gpumf(&["validate", "--sweep", "--sizes", "30", "--ranks", "2", "--epochs", "20", "--no-gpu"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = stdout(&o) + &stderr(&o);
    assert_eq!(all.matches("30x30 rank 2").count(), 1, "{all}");
}
