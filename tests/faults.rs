//! gpumf as a hostile user tries it: stale and corrupt block caches, endless and malformed
//! inputs, damaged and misplaced checkpoints, huge numbers, links and interruptions. Each is a
//! clear error or a notice, never training on the wrong data, a panic, a hang, or a file left
//! behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn gpumf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).env("GPUMF_ADAPTER", "").output().expect("runs")
}

/// `gpumf(args)`, killed (and the test failed) if it runs longer than `limit`.
fn gpumf_within(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("gpumf {} ran past {limit:?}: a hang", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shipped() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv").display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Fails unless `o` failed with `expected` in its error, and no panic.
fn fails_with(o: &Output, expected: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "succeeded, expected {expected:?}: {err}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Generates `ratings` ratings with `seed` into `dir/name` (binary) and a test file beside it.
fn generate(dir: &Path, name: &str, ratings: &str, seed: &str) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (train, test) = (dir.join(name), dir.join(format!("{name}.test")));
    let o = gpumf(&["generate", "--ratings", ratings, "--users", "6000", "--items", "900", "--data-seed", seed, "--train-out", &s(&train), "--test-out", &s(&test)]);
    assert!(o.status.success(), "{}", stderr(&o));
    (train, test)
}

fn set_mtime(path: &Path, to: std::time::SystemTime) {
    std::fs::File::options().write(true).open(path).unwrap().set_modified(to).unwrap();
}

/// Two different files of the same name, size and modification time (unpacked from archives,
/// say) do not share a block cache, nor does a file rewritten with its time restored: each is
/// trained on itself, as without the cache.
#[test]
fn a_stale_cache_is_never_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let (fa, ta) = generate(&dir.path().join("fa"), "ratings.bin", "200000", "1");
    let (fb, _) = generate(&dir.path().join("fb"), "ratings.bin", "200000", "2");
    let when = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200);
    set_mtime(&fa, when);
    set_mtime(&fb, when);
    assert_eq!(std::fs::metadata(&fa).unwrap().len(), std::fs::metadata(&fb).unwrap().len());
    let cache = dir.path().join("c");
    std::fs::create_dir(&cache).unwrap();
    let train = |input: &Path| {
        gpumf(&["train", "--train", &s(input), "--test", &s(&ta), "--memory", "1MiB", "--cache-dir", &s(&cache), "--rank", "8", "--epochs", "3", "--threads", "1", "--backend", "cpu"])
    };
    let rmse = |o: &Output| -> f64 { String::from_utf8_lossy(&o.stdout).split("test RMSE ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap() };
    let first = train(&fa);
    assert!(first.status.success(), "{}", stderr(&first));
    let other = train(&fb);
    assert!(other.status.success(), "{}", stderr(&other));
    assert!(!stderr(&other).contains("reusing the block cache") && stderr(&other).contains("is not the file it was written from"), "{}", stderr(&other));
    // fb's model scores fa's test set as a model of other data does, not as fa's own.
    assert!(rmse(&other) > rmse(&first) + 0.05, "{} against {}", rmse(&other), rmse(&first));
    // fa again: rebuilt for fa. Then rewritten (with fb's bytes) and its time restored.
    assert!(train(&fa).status.success());
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&fa, std::fs::read(&fb).unwrap()).unwrap();
    set_mtime(&fa, when);
    let rewritten = train(&fa);
    assert!(rewritten.status.success() && stderr(&rewritten).contains("is not the file it was written from"), "{}", stderr(&rewritten));
}

/// A missing --cache-dir is made (its parent must be a directory, as --checkpoint-dir's), and
/// taken away again when the build fails; a file there is refused.
#[test]
fn a_missing_cache_dir_is_made_and_a_failed_build_leaves_none() {
    let dir = tempfile::tempdir().unwrap();
    let (input, _) = generate(dir.path(), "r.bin", "20000", "3");
    let train = |input: &Path, cache: &Path| gpumf(&["train", "--train", &s(input), "--memory", "200KiB", "--cache-dir", &s(cache), "--rank", "4", "--epochs", "1", "--backend", "cpu"]);
    let made = dir.path().join("made");
    let o = train(&input, &made);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(made.join("r.bin.gpumf-blocks").is_file(), "the cache is in the directory made for it");
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "userId,movieId,rating\n1,2,x\n").unwrap();
    let failed = dir.path().join("failed");
    fails_with(&train(&bad, &failed), "bad.csv:2");
    assert!(!failed.exists(), "a failed build leaves no directory behind");
    fails_with(&train(&input, &dir.path().join("no/such")), "is not a directory");
    fails_with(&train(&input, &input), "exists and is not a directory");
}

/// A block changed on disk under a running job (after the cache was opened and checked) stops
/// it with an error naming the block, on one thread or two, with or without the SVD++ term:
/// never a panic, never a hang.
#[test]
fn a_block_corrupted_during_a_run_is_an_error_not_a_panic_or_a_hang() {
    use gpumf::cache::{CacheSettings, DiskBlocks};
    use gpumf::data::LoadOptions;
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = generate(dir.path(), "r.bin", "50000", "3");
    for (threads, svdpp) in [(1, true), (1, false), (2, true), (2, false)] {
        let order = gpumf::cpu::CpuMode::with_threads(threads).block_order();
        let settings = CacheSettings { grid: None, order, seed: 42, memory: 256 * 1024, threads };
        let cache = DiskBlocks::open_or_build(&train, &LoadOptions::default(), dir.path(), &settings, |_| {}).unwrap();
        let path = cache.path.clone();
        let problem = gpumf::problem::Problem::on_disk(std::sync::Arc::new(cache), None);
        // The cache is open and checked; now bytes of its first block change.
        let mut bytes = std::fs::read(&path).unwrap();
        for b in &mut bytes[4096..4096 + 1200] {
            *b ^= 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let params = gpumf::model::Params { rank: 8, epochs: 2, svdpp, ..Default::default() };
        let backend = gpumf::training::Backend::Cpu(gpumf::cpu::CpuMode::with_threads(threads));
        let e = gpumf::training::train(&problem, &params, &backend, |_| {}).err().map(|e| e.to_string());
        let e = e.unwrap_or_else(|| panic!("{threads} threads, SVD++ {svdpp}: trained on a corrupt block"));
        assert!(e.contains("checksum") && e.contains(&s(&path)), "{threads} threads, SVD++ {svdpp}: {e}");
        std::fs::remove_file(&path).unwrap();
    }
}

/// An input that fails to read names the file and the system's reason once (the reason used to
/// be both the message and its source, and the binary prints both).
#[test]
fn a_read_error_names_the_file_and_its_reason_once() {
    let out = gpumf(&["train", "--train", "/proc/self/mem", "--epochs", "1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim(), "error: /proc/self/mem: Input/output error (os error 5)");
}

/// /dev/zero or /dev/urandom as any input is a clear error at once, not memory without end.
#[cfg(unix)]
#[test]
fn an_endless_input_is_a_clear_error_not_all_of_memory() {
    let limit = Duration::from_secs(20);
    for format in ["auto", "tab", "csv", "binary", "dense"] {
        let o = gpumf_within(&["train", "--train", "/dev/zero", "--format", format, "--epochs", "1"], limit);
        fails_with(&o, "/dev/zero");
    }
    fails_with(&gpumf_within(&["train", "--train", "/dev/zero", "--memory", "64MiB", "--epochs", "1"], limit), "/dev/zero");
    fails_with(&gpumf_within(&["train", "--train", &shipped(), "--test", "/dev/zero", "--epochs", "1"], limit), "/dev/zero");
    fails_with(&gpumf_within(&["eval", "--model", "/dev/zero", "--test", &shipped()], limit), "not a gpumf model");
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gpumf");
    assert!(gpumf(&["train", "--train", &shipped(), "--epochs", "1", "--rank", "4", "--save", &s(&model)]).status.success());
    fails_with(&gpumf_within(&["predict", "--model", &s(&model), "--pairs", "/dev/zero"], limit), "/dev/zero");
    fails_with(&gpumf_within(&["train", "--train", &shipped(), "--workers", "1", "--hosts", "/dev/zero", "--process", "0"], limit), "/dev/zero");
    // Random bytes: neither text nor records, refused from their first 64 KiB (they had been
    // read until memory's cap, tens of GiB).
    let random = "random bytes, from a device such as /dev/urandom";
    for format in ["auto", "csv", "binary"] {
        fails_with(&gpumf_within(&["train", "--train", "/dev/urandom", "--format", format, "--epochs", "1"], limit), random);
    }
    fails_with(&gpumf_within(&["train", "--train", &shipped(), "--test", "/dev/urandom", "--epochs", "1"], limit), random);
    for flag in ["--pairs", "--users", "--items"] {
        fails_with(&gpumf_within(&["predict", "--model", &s(&model), flag, "/dev/urandom"], limit), random);
    }
}

/// An endless pipe whose first lines are already bad is refused from its first 64 KiB, not
/// read to memory's cap first (tens of GiB); an endless pipe of good lines is read on.
#[cfg(unix)]
#[test]
fn an_endless_pipe_of_bad_lines_fails_at_its_start() {
    use std::io::Write;
    // `line` written over and over, `blocks` times of 4,096 (`usize::MAX`: until gpumf stops
    // reading, or a minute has passed).
    let run = |line: &'static [u8], args: &[&str], blocks: usize| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpumf")).args(["train", "--train", "/dev/stdin", "--epochs", "1"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("runs");
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let started = Instant::now();
            let block = line.repeat(4096);
            for _ in 0..blocks {
                if started.elapsed() > Duration::from_secs(60) || stdin.write_all(&block).is_err() {
                    break;
                }
            }
        });
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let done = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        writer.join().unwrap();
        (done, child.wait_with_output().unwrap())
    };
    let endless = usize::MAX;
    let (done, o) = run(b"1,2,three\n", &[], endless);
    assert!(done, "an endless pipe of bad lines ran on");
    fails_with(&o, "/dev/stdin:1: rating \"three\" is not a number");
    let (done, o) = run(b"-1\t2\t5\n", &["--format", "tab"], endless);
    assert!(done, "an endless pipe of bad lines ran on");
    fails_with(&o, "/dev/stdin:1: bad user id \"-1\"");
    // Good lines give no error at their start: the pipe is read on, to its end.
    let (done, o) = run(b"1,2,3\n7,8,4\n", &[], 16);
    assert!(done && o.status.success(), "{}", stderr(&o));
}

/// `--memory` reads what has no size to go by into the block cache: a gzip file (its cache
/// kept and reused, as a plain file's) and a pipe (a temporary cache in --cache-dir, gone after
/// training, since a pipe cannot be read again to check it). Each trains the model the plain
/// file trains.
#[cfg(unix)]
#[test]
fn memory_reads_gzip_and_pipes_into_the_block_cache() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read(shipped()).unwrap();
    let (plain, packed) = (dir.path().join("r.csv"), dir.path().join("r.csv.gz"));
    std::fs::write(&plain, &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&text).unwrap();
    std::fs::write(&packed, gz.finish().unwrap()).unwrap();
    let args = |train: &str, cache: &Path| -> Vec<String> {
        ["train", "--train", train, "--test", &shipped(), "--memory", "1MiB", "--cache-dir", &s(cache), "--rank", "8", "--epochs", "2", "--threads", "1", "--backend", "cpu"].map(String::from).to_vec()
    };
    let run = |args: Vec<String>, stdin: Option<Vec<u8>>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpumf")).args(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut pipe = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || drop(stdin.map(|bytes| pipe.write_all(&bytes))));
        let o = child.wait_with_output().unwrap();
        writer.join().unwrap();
        o
    };
    let rmse = |o: &Output| -> String {
        assert!(o.status.success(), "{}", stderr(o));
        String::from_utf8_lossy(&o.stdout).split("test RMSE ").nth(1).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let kept = dir.path().join("kept");
    let expected = rmse(&run(args(&s(&plain), &kept), None));
    let first = run(args(&s(&packed), &kept), None);
    assert!(stderr(&first).contains("writing the block cache"), "{}", stderr(&first));
    assert_eq!(rmse(&first), expected);
    let again = run(args(&s(&packed), &kept), None);
    assert!(stderr(&again).contains("reusing the block cache"), "{}", stderr(&again));
    assert_eq!(rmse(&again), expected);
    // A pipe: its cache goes with the run, and a --cache-dir made for it with it.
    let temporary = dir.path().join("made");
    let piped = run(args("/dev/stdin", &temporary), Some(text.clone()));
    assert!(stderr(&piped).contains("writing a temporary block cache"), "{}", stderr(&piped));
    assert_eq!(rmse(&piped), expected);
    assert!(!temporary.exists(), "the temporary cache's directory was left");
    std::fs::create_dir(&temporary).unwrap();
    assert_eq!(rmse(&run(args("/dev/stdin", &temporary), Some(text.clone()))), expected);
    assert_eq!(std::fs::read_dir(&temporary).unwrap().count(), 0, "the temporary cache was left");
    // Without --cache-dir it cannot go beside /dev/stdin: the flag is named.
    let beside = ["train", "--train", "/dev/stdin", "--memory", "1MiB", "--epochs", "1"].map(String::from).to_vec();
    let refused = run(beside, Some(text));
    fails_with(&refused, "give --cache-dir DIR");
    // /dev/zero into the cache is refused at its start, and leaves nothing.
    let limit = Duration::from_secs(20);
    fails_with(&gpumf_within(&["train", "--train", "/dev/zero", "--memory", "64MiB", "--cache-dir", &s(&temporary), "--epochs", "1"], limit), "/dev/zero");
    assert_eq!(std::fs::read_dir(&temporary).unwrap().count(), 0, "a failed build left files");
}

/// A line of 10 MB is an error naming the line, quoting a few dozen characters of it.
#[test]
fn a_huge_line_is_named_and_quoted_briefly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.tsv");
    let mut text = String::from("1\t1\t4\n2\t2\t3\n");
    text.push_str("3\t3\t");
    text.push_str(&"9".repeat(10_000_000));
    text.push_str("\n4\t4\t2\n");
    std::fs::write(&path, text).unwrap();
    for extra in [&[][..], &["--memory", "1MiB"][..], &["--skip-bad-lines"][..]] {
        let mut args = vec!["train", "--train", path.to_str().unwrap(), "--epochs", "1"];
        args.extend(extra);
        let o = gpumf(&args);
        fails_with(&o, "long.tsv:3");
        assert!(stderr(&o).contains("longer than any line of ratings"), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).len() < 1000, "{} bytes of stderr", stderr(&o).len());
    }
    // A whole field too long to be a number, within a line of ordinary length, is quoted short.
    std::fs::write(&path, format!("1\t1\t{}\n", "x".repeat(500_000))).unwrap();
    let o = gpumf(&["train", "--train", path.to_str().unwrap(), "--epochs", "1"]);
    fails_with(&o, "long.tsv:1");
    assert!(stderr(&o).len() < 1000, "{}", stderr(&o).len());
}

/// Checkpoints: the workers' files swapped (or one copied under another epoch) are refused by
/// name at once, not waited on until --timeout; a damaged, empty or missing latest file is
/// passed over saying which and why, and which epoch the run resumes from; and a directory of
/// another run's checkpoints is refused when training starts.
#[test]
fn misplaced_or_damaged_checkpoints_are_named_and_never_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    let common = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["train", "--train", &shipped(), "--test-fraction", "0.2", "--blocks", "4", "--rank", "8", "--workers", "2", "--timeout", "60", "--quiet"].iter().map(|s| s.to_string()).collect();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |args: Vec<String>| gpumf_within(&args.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(30));
    let written = run(common(&["--epochs", "4", "--checkpoint-every", "2", "--checkpoint-dir", &s(&ck)]));
    assert!(written.status.success(), "{}", stderr(&written));
    let file = |w: usize, e: usize| ck.join(format!("worker-{w}-of-2.epoch-{e}.ckpt"));
    // Swapped: both epochs hold the other worker's rows.
    for e in [2, 4] {
        let (a, b) = (std::fs::read(file(0, e)).unwrap(), std::fs::read(file(1, e)).unwrap());
        std::fs::write(file(0, e), &b).unwrap();
        std::fs::write(file(1, e), &a).unwrap();
    }
    let started = Instant::now();
    let swapped = run(common(&["--epochs", "6", "--resume", &s(&ck)]));
    fails_with(&swapped, "holds the rows of worker 1 of 2 after epoch 4");
    assert!(started.elapsed() < Duration::from_secs(20), "refused at once, not after --timeout");
    // Put back, then the latest of worker 0 damaged: resumes after epoch 2, saying why.
    for e in [2, 4] {
        let (a, b) = (std::fs::read(file(0, e)).unwrap(), std::fs::read(file(1, e)).unwrap());
        std::fs::write(file(0, e), &b).unwrap();
        std::fs::write(file(1, e), &a).unwrap();
    }
    let good = std::fs::read(file(0, 4)).unwrap();
    for (damage, why) in [(&good[..good.len() / 2], "damaged"), (&[][..], "is empty")] {
        std::fs::write(file(0, 4), damage).unwrap();
        let resumed = run(common(&["--epochs", "6", "--resume", &s(&ck)]));
        assert!(resumed.status.success(), "{}", stderr(&resumed));
        let err = stderr(&resumed);
        assert!(err.contains(&s(&file(0, 4))) && err.contains(why) && err.contains("resuming after epoch 2"), "{err}");
    }
    std::fs::remove_file(file(0, 4)).unwrap();
    let missing = run(common(&["--epochs", "6", "--resume", &s(&ck)]));
    assert!(stderr(&missing).contains("is missing") && stderr(&missing).contains("resuming after epoch 2"), "{}", stderr(&missing));
    // Another run's checkpoints (another rank) in the directory: refused before training.
    let other = run(common(&["--epochs", "6", "--seed", "7", "--checkpoint-every", "2", "--checkpoint-dir", &s(&ck)]));
    fails_with(&other, "is another run's checkpoint");
    assert!(other.stdout.is_empty(), "refused before training: {}", String::from_utf8_lossy(&other.stdout));
}

/// A --timeout too large for the clock trains (it is as good as forever), as threads and as
/// processes.
#[test]
fn a_huge_timeout_is_no_panic() {
    let o = gpumf(&["train", "--train", &shipped(), "--epochs", "2", "--rank", "4", "--workers", "2", "--timeout", "18446744073709551615"]);
    assert!(o.status.success() && !stderr(&o).contains("panicked"), "{}", stderr(&o));
}

/// An output that names one of the run's inputs is refused even with --force, before any work,
/// and the input is left as it was: a model saved over the training file, predictions over
/// the pairs they read, a model over itself.
#[test]
fn an_output_over_an_input_is_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ratings.csv");
    std::fs::copy(shipped(), &data).unwrap();
    let before = std::fs::read(&data).unwrap();
    let spelled = dir.path().join(".").join("ratings.csv");
    fails_with(&gpumf(&["train", "--train", &s(&data), "--epochs", "1", "--rank", "2", "--save", &s(&spelled), "--force"]), "the file --train reads");
    assert_eq!(std::fs::read(&data).unwrap(), before, "the training file is untouched");
    let model = dir.path().join("m.gpumf");
    assert!(gpumf(&["train", "--train", &s(&data), "--epochs", "1", "--rank", "2", "--save", &s(&model)]).status.success());
    let pairs = dir.path().join("pairs.txt");
    std::fs::write(&pairs, "1 1\n").unwrap();
    fails_with(&gpumf(&["predict", "--model", &s(&model), "--pairs", &s(&pairs), "--output", &s(&pairs), "--force"]), "the file --pairs reads");
    assert_eq!(std::fs::read_to_string(&pairs).unwrap(), "1 1\n");
    fails_with(&gpumf(&["predict", "--model", &s(&model), "--all-users", "--output", &s(&model), "--force"]), "the file --model reads");
}

/// --save to a dangling link or a loop of links is refused before training, not after.
#[cfg(unix)]
#[test]
fn a_save_to_a_broken_link_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let dangling = dir.path().join("model.gpumf");
    std::os::unix::fs::symlink(dir.path().join("gone/model"), &dangling).unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::os::unix::fs::symlink(&b, &a).unwrap();
    std::os::unix::fs::symlink(&a, &b).unwrap();
    for link in [&dangling, &a] {
        let o = gpumf(&["train", "--train", &shipped(), "--epochs", "1", "--rank", "4", "--save", &s(link)]);
        fails_with(&o, "symbolic link");
        assert!(!String::from_utf8_lossy(&o.stdout).contains("trained"), "refused before training");
    }
}

/// Ctrl-C while the block cache is written removes its partial files; partial files a killed
/// build left are removed by the next build.
#[cfg(unix)]
#[test]
fn an_interrupted_cache_build_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (train, _) = generate(dir.path(), "big.bin", "3000000", "4");
    let partials = || std::fs::read_dir(dir.path()).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial")).count();
    // One left by a killed build an hour ago, and one of a build still running now.
    let stale = dir.path().join(".big.bin.gpumf-blocks.spill.abcdef.partial");
    std::fs::write(&stale, b"left over").unwrap();
    set_mtime(&stale, std::time::SystemTime::now() - Duration::from_secs(3600));
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpumf"))
        .args(["train", "--train", &s(&train), "--memory", "4MiB", "--epochs", "1", "--rank", "4", "--backend", "cpu"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    assert!(lines.by_ref().map_while(Result::ok).any(|l| l.contains("writing the block cache")), "the build started");
    // Ctrl-C as soon as the build's own partial file is there: its handler is set by then, and
    // the build (0.4 s here) is under way, where a fixed sleep could end before the handler or
    // after the build.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    // (The next build removes the stale file first, so a partial file counted after it is gone
    // is the build's.)
    while stale.exists() || partials() == 0 {
        assert!(std::time::Instant::now() < deadline, "after 60 s: the stale partial file removed {}, partial files {}", !stale.exists(), partials());
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: sends SIGINT to the child, as Ctrl-C would.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(!status.success(), "interrupted");
    assert!(rest.iter().any(|l| l.contains("interrupted")), "{rest:?}");
    assert_eq!(partials(), 0, "no partial file is left");
}

/// The usual mistakes get a notice: a test set that is the training set, a fold given twice, a
/// model of other data, a GPU flag on the CPU, a byte-order mark, more workers than cores.
#[test]
fn the_usual_mistakes_get_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let same = gpumf(&["train", "--train", &shipped(), "--test", &shipped(), "--epochs", "1", "--rank", "4"]);
    assert!(stderr(&same).contains("warning: 100836 of the 100836 test ratings") && stderr(&same).contains("overlaps"), "{}", stderr(&same));
    let half: String = std::fs::read_to_string(shipped()).unwrap().lines().take(5001).map(|l| format!("{l}\n")).collect();
    let part = dir.path().join("part.csv");
    std::fs::write(&part, half).unwrap();
    let fold = format!("{},{}", s(&part), s(&part));
    let twice = gpumf(&["cv", "--fold", &fold, "--fold", &fold, "--epochs", "1", "--rank", "4"]);
    assert!(stderr(&twice).contains("fold 2 repeats fold 1") && stderr(&twice).contains("overlaps"), "{}", stderr(&twice));
    // A model of latest-small scored on generated data knows none of its users.
    let model = dir.path().join("m.gpumf");
    assert!(gpumf(&["train", "--train", &shipped(), "--epochs", "1", "--rank", "4", "--save", &s(&model)]).status.success());
    let (other, _) = generate(dir.path(), "other.bin", "20000", "5");
    let foreign = gpumf(&["eval", "--model", &s(&model), "--test", &s(&other)]);
    assert!(foreign.status.success() && stderr(&foreign).contains("may have been trained on other data"), "{}", stderr(&foreign));
    let cpu = gpumf(&["train", "--train", &shipped(), "--epochs", "1", "--rank", "4", "--backend", "cpu", "--gpu-memory", "1GiB"]);
    assert!(stderr(&cpu).contains("--gpu-memory has no effect"), "{}", stderr(&cpu));
    for delimiter in ["\t", " "] {
        let bom = dir.path().join("bom.txt");
        std::fs::write(&bom, format!("\u{feff}1{delimiter}2{delimiter}3\n1{delimiter}3{delimiter}4\n2{delimiter}2{delimiter}5\n")).unwrap();
        let o = gpumf(&["train", "--train", &s(&bom), "--epochs", "1", "--rank", "2"]);
        assert!(o.status.success(), "{:?}: {}", delimiter, stderr(&o));
    }
    let cores = std::thread::available_parallelism().unwrap().get();
    let many = (cores + 2).to_string();
    let workers = gpumf(&["train", "--train", &shipped(), "--epochs", "1", "--rank", "4", "--workers", &many, "--blocks", &many]);
    assert!(stderr(&workers).contains(&format!("--workers {many} is more than the {cores} cores")), "{}", stderr(&workers));
}
