//! The `gpumf` binary as a user runs it: clear errors for bad flags and files, JSON output,
//! and no file of the user's overwritten.

use std::path::PathBuf;
use std::process::{Command, Output};

fn gpumf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).env("GPUMF_ADAPTER", "").output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn shipped() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv").display().to_string()
}

#[test]
fn bad_flags_get_clear_errors_not_panics() {
    let data = shipped();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--train", &data, "--rank", "0"], "--rank must be at least 1"),
        (&["train", "--train", &data, "--epochs", "0"], "--epochs must be at least 1"),
        (&["train", "--train", &data, "--epochs", "-3"], "-3"),
        (&["train", "--train", &data, "--lr", "-0.1"], "--lr"),
        (&["train", "--train", &data, "--init-std", "1e30", "--epochs", "1", "--rank", "4"], "); lower --init-std (now 1e30) or --lr"),
        (&["train", "--train", &data, "--backend", "tpu"], "tpu"),
        (&["train", "--train", &data, "--test-fraction", "1.5"], "--test-fraction"),
        (&["train", "--train", &data, "--threads", "0"], "--threads"),
        (&["train", "--train", &data, "--test-fraction", "0.000001"], "--test-fraction 0.000001 of 100836 ratings holds out none"),
        (&["train", "--train", &data, "--test-fraction", "0.9999999"], "holds out every one of them, leaving none to train on"),
        (&["train", "--train", &data, "--models", "0"], "--models must be at least 1"),
        (&["train", "--train", &data, "--models", "2", "--workers", "2"], "--models"),
        // A setting that nothing in this run would read is named, not ignored.
        (&["train", "--train", &data, "--alpha", "3"], "--alpha is a setting of the ials loss alone, and this run trains the squared loss"),
        (&["train", "--train", &data, "--timeout", "5"], "--timeout belongs to distributed training"),
        (&["train", "--train", "/no/such/file.csv"], "/no/such/file.csv: no such file"),
        (&["train", "--train", "/"], "is a directory"),
        (&["lab", "--rank", "7"], "--rank"),
        (&["generate", "--ratings", "10", "--zipf", "-1", "--train-out", "/tmp/never-written.bin"], "--zipf"),
        (&["generate", "--ratings", "10", "--train-out", "/nonexistent/dir/x.bin"], "cannot write"),
        (&["generate", "--ratings", "10", "--train-out", "/tmp/never-written.bin", "--test-out", "/tmp/./never-written.bin"], "the test ratings would overwrite the training ratings"),
        (&["generate", "--ratings", "10", "--hidden-rank", "0", "--train-out", "/tmp/never-written.bin"], "--hidden-rank must be at least 1"),
        (&["validate", "--no-gpu", "--noise", "nan"], "--noise and --noises must be finite non-negative numbers, got NaN"),
        (&["bench", "--ratings", "1000", "--backends", "foo"], "unknown backend"),
        (&["bench", "--ratings", "1000", "--epochs", "0"], "error: invalid setting: --epochs must be at least 1"),
        (&["bench", "--ratings", "1000", "--ranks", "8,0"], "error: --ranks 0: invalid setting: --rank must be at least 1"),
        (&["eval", "--model", "/", "--test", &data], "is a directory"),
    ];
    for (args, expected) in cases {
        let o = gpumf(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn train_prints_json_with_the_promised_fields_and_saves_a_usable_model() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gpumf");
    let model_s = model.display().to_string();
    let data = shipped();
    let o = gpumf(&["train", "--train", &data, "--test-fraction", "0.2", "--backend", "cpu", "--epochs", "5", "--rank", "16", "--json", "--save", &model_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON on stdout");
    for key in ["test_rmse", "test_mae", "train_seconds", "settings", "history"] {
        assert!(!v[key].is_null(), "missing {key}: {v}");
    }
    assert_eq!(v["settings"]["params"]["rank"], 16);
    assert_eq!(v["history"].as_array().unwrap().len(), 5);

    // eval on a file of known ratings, predict pairs and a user's top items.
    let pairs = dir.path().join("pairs.txt");
    std::fs::write(&pairs, "userId,movieId\n1,1\n1,3\n999999,1\n").unwrap();
    let o = gpumf(&["predict", "--model", &model_s, "--pairs", &pairs.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().nth(2).unwrap().ends_with("cold"));
    let o = gpumf(&["predict", "--model", &model_s, "--user", "1", "--top", "4"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 4);
    let o = gpumf(&["eval", "--model", &model_s, "--test", &data, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["test_rmse"].as_f64().unwrap() < 1.0);

    // Nothing of the user's is overwritten without --force.
    let before = std::fs::read(&model).unwrap();
    let o = gpumf(&["train", "--train", &data, "--backend", "cpu", "--epochs", "1", "--save", &model_s]);
    assert!(!o.status.success() && stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&model).unwrap(), before);
    let mine = dir.path().join("mine.txt");
    std::fs::write(&mine, "mine").unwrap();
    let o = gpumf(&["predict", "--model", &model_s, "--user", "1", "--output", &mine.display().to_string()]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "mine");
    let o = gpumf(&["predict", "--model", &model_s, "--user", "1", "--output", &model_s]);
    assert!(!o.status.success() && stderr(&o).contains("the file --model reads"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&model).unwrap(), before);
    let o = gpumf(&["eval", "--model", &data, "--test", &data]);
    assert!(stderr(&o).contains("not a gpumf model"), "{}", stderr(&o));
}

#[test]
fn bad_lines_stop_with_file_and_line_or_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.tsv");
    let mut text = String::new();
    for u in 0..50 {
        for i in 0..20 {
            text.push_str(&format!("{u}\t{i}\t{}\n", 1 + (u + i) % 5));
        }
    }
    text.push_str("7\t8\tbad\n");
    std::fs::write(&path, text).unwrap();
    let p = path.display().to_string();
    let o = gpumf(&["train", "--train", &p, "--backend", "cpu", "--epochs", "1"]);
    assert!(stderr(&o).contains(&format!("{p}:1001: rating \"bad\" is not a number")), "{}", stderr(&o));
    let o = gpumf(&["train", "--train", &p, "--backend", "cpu", "--epochs", "1", "--skip-bad-lines"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 malformed lines skipped"), "{}", stderr(&o));
}

#[test]
fn lab_prints_the_exercise() {
    let o = gpumf(&["lab"]);
    assert!(o.status.success());
    let out = String::from_utf8(o.stdout).unwrap();
    for s in ["Truncated SVD", "0.1219", "Masked SGD", "true 3.3359", "true 0.5301"] {
        assert!(out.contains(s), "lab output lacks {s}: {out}");
    }
}

#[test]
fn without_any_adapter_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    let data = shipped();
    // Point the Vulkan loader at no driver: wgpu then finds no adapter at all.
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gpumf")).args(args).env("VK_DRIVER_FILES", "/nonexistent/icd.json").output().unwrap()
    };
    let o = run(&["train", "--train", &data, "--backend", "gpu", "--epochs", "1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no GPU adapter found"), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    let o = run(&["train", "--train", &data, "--epochs", "1", "--rank", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("training on the CPU"), "{}", stderr(&o));
    let o = run(&["info"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("no GPU adapters found"));
}

/// A note each fold's run gives (on a machine whose only adapter is software, as CI's: the
/// adapter's) is shown once, not once a fold. (`--train`, as `gpumf train` names its file, is
/// `--data` here.)
#[test]
fn cv_shows_a_note_once_not_once_a_fold() {
    let o = Command::new(env!("CARGO_BIN_EXE_gpumf")).args(["cv", "--train", &shipped(), "--folds", "3", "--epochs", "1", "--rank", "4"]).output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let notes: Vec<&str> = err.lines().filter(|l| l.starts_with("note:")).collect();
    let distinct: std::collections::BTreeSet<&str> = notes.iter().copied().collect();
    assert_eq!(notes.len(), distinct.len(), "{err}");
}

#[test]
fn cv_reports_each_fold_and_the_spread_reproducibly() {
    let data = shipped();
    let run = || {
        let o = gpumf(&["cv", "--data", &data, "--folds", "3", "--epochs", "2", "--rank", "4", "--backend", "cpu", "--threads", "1", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON")
    };
    let v = run();
    let folds = v["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3);
    let sizes: Vec<u64> = folds.iter().map(|f| f["test_ratings"].as_u64().unwrap()).collect();
    assert_eq!(sizes.iter().sum::<u64>(), 100836, "every rating is tested once");
    assert!(sizes.iter().all(|&n| n.abs_diff(100836 / 3) <= 1), "{sizes:?}");
    let rmses: Vec<f64> = folds.iter().map(|f| f["rmse"].as_f64().unwrap()).collect();
    let mean = rmses.iter().sum::<f64>() / 3.0;
    assert!((v["rmse"]["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(v["rmse"]["std"].as_f64().unwrap() > 0.0 && v["mae"]["mean"].as_f64().unwrap() > 0.0);
    assert_eq!(run()["rmse"], v["rmse"], "seeded folds and the sequential trainer repeat exactly");

    // Given fold files, each pair trains and tests once, under its own names.
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = Vec::new();
    for f in 0..2 {
        let (train, test) = (dir.path().join(format!("u{f}.base")), dir.path().join(format!("u{f}.test")));
        let (mut a, mut b) = (String::new(), String::new());
        for u in 0..60 {
            for i in 0..20 {
                let line = format!("{u}\t{i}\t{}\n", 1 + (u * 3 + i) % 5);
                if (u + i + f) % 5 == 0 { b.push_str(&line) } else { a.push_str(&line) }
            }
        }
        std::fs::write(&train, a).unwrap();
        std::fs::write(&test, b).unwrap();
        pairs.push(format!("{},{}", train.display(), test.display()));
    }
    let o = gpumf(&["cv", "--fold", &pairs[0], "--fold", &pairs[1], "--epochs", "2", "--rank", "4", "--backend", "cpu", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["folds"].as_array().unwrap().len(), 2);
    assert!(v["folds"][1]["test"].as_str().unwrap().ends_with("u1.test"));

    for (args, expected) in [
        (vec!["cv", "--data", data.as_str(), "--folds", "1"], "--folds must lie between 2"),
        (vec!["cv", "--fold", "u1.base"], "expected TRAIN,TEST"),
        (vec!["cv", "--fold", "/no/such.base,/no/such.test"], "/no/such.base: no such file"),
    ] {
        let o = gpumf(&args);
        assert!(!o.status.success() && stderr(&o).contains(expected), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn validation_stops_early_keeps_the_best_epoch_and_refits() {
    let data = shipped();
    let base = ["train", "--train", data.as_str(), "--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--rank", "16", "--epochs", "200", "--lr", "0.05", "--lr-decay", "0", "--reg", "0.02", "--json"];
    let run = |extra: &[&str]| {
        let o = gpumf(&[&base[..], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON")
    };
    let v = run(&["--validation", "0.1", "--patience", "3"]);
    let val = &v["validation"];
    let best = val["best_epoch"].as_u64().unwrap();
    assert!(val["stopped_early"].as_bool().unwrap() && val["epochs_run"].as_u64().unwrap() == best + 3, "{val}");
    assert!(v["history"][0]["validation_rmse"].is_number() && v["history"][0]["test_rmse"].is_null());
    assert_eq!(v["data"]["train_ratings"].as_u64().unwrap() + val["ratings"].as_u64().unwrap(), 80669);
    let refit = run(&["--validation", "0.1", "--patience", "3", "--refit"]);
    assert_eq!(refit["history"].as_array().unwrap().len() as u64, best, "refit trains for the best epoch count");
    assert_eq!(refit["data"]["train_ratings"], 80669, "on every training rating");
    // Held-out ratings can only make test users or items cold for the kept model.
    let cold = |v: &serde_json::Value| v["data"]["cold_start"]["entries"].as_u64().unwrap();
    assert!(cold(&v) >= cold(&refit), "{} < {}", cold(&v), cold(&refit));
    assert!(refit["test_rmse"].as_f64().unwrap() > 0.0);
    for (extra, expected) in [(vec!["--validation", "1.5"], "--validation must lie strictly between 0 and 1"), (vec!["--patience", "3"], "--validation")] {
        let o = gpumf(&[&base[..], &extra[..]].concat());
        assert!(!o.status.success() && stderr(&o).contains(expected), "{extra:?}: {}", stderr(&o));
    }
}

#[test]
fn auto_searches_on_held_out_ratings_and_trains_with_its_choice() {
    let data = shipped();
    let base = ["train", "--train", data.as_str(), "--test-fraction", "0.2", "--backend", "cpu", "--threads", "1", "--rank", "16", "--epochs", "9", "--json", "--auto"];
    let run = |extra: &[&str]| {
        let o = gpumf(&[&base[..], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON")
    };
    let v = run(&["--budget", "300"]);
    let auto = &v["auto"];
    // 4 ranks x 3 λ x 3 learning rates for a ninth of the epochs, the best third for a third,
    // the best third of those for all of them, the given setting always among them.
    assert_eq!(auto["rungs"], serde_json::json!([1, 3, 9]), "{auto}");
    let trials = auto["trials"].as_array().unwrap();
    let at = |epochs: u64| trials.iter().filter(|t| t["epochs"] == epochs).collect::<Vec<_>>();
    assert_eq!(at(1).len(), 36);
    assert!((12..=13).contains(&at(3).len()) && (4..=5).contains(&at(9).len()), "{auto}");
    assert!(at(9).iter().any(|t| t["rank"] == 16 && t["reg"].as_f64().unwrap() == 0.09f32 as f64), "the given setting reaches the last rung: {auto}");
    let best = &auto["best"];
    let rmse = |t: &serde_json::Value| t["score"].as_f64().unwrap_or(f64::INFINITY);
    assert!(at(9).iter().all(|t| rmse(best) <= rmse(t)), "{auto}");
    // Trained afterwards with the choice, on every training rating, for the given epochs.
    let params = &v["settings"]["params"];
    assert_eq!((&params["rank"], &params["reg"], &params["learning_rate"]), (&best["rank"], &best["reg"], &best["learning_rate"]));
    assert_eq!(v["history"].as_array().unwrap().len(), 9);
    assert_eq!(v["data"]["train_ratings"], 80669);
    assert!(v["test_rmse"].as_f64().unwrap() < 1.0);
    // A budget too short for a second trial keeps the given settings, and says it was cut.
    let short = run(&["--budget", "0.001"]);
    assert_eq!(short["auto"]["trials"].as_array().unwrap().len(), 1);
    assert_eq!(short["auto"]["cut_short"], true);
    assert_eq!(short["settings"]["params"]["rank"], 16);
    for (extra, expected) in [(vec!["--budget", "-1"], "--budget must be a positive"), (vec!["--validation", "0.1"], "--validation")] {
        let o = gpumf(&[&base[..], &extra[..]].concat());
        assert!(!o.status.success() && stderr(&o).contains(expected), "{extra:?}: {}", stderr(&o));
    }
}

#[test]
fn top_n_lists_similar_items_and_ranking_metrics_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, model) = (dir.path().join("train.tsv"), dir.path().join("test.tsv"), dir.path().join("m.gpumf"));
    // 60 users × 40 items: each user rates items of their kind ((u + i) % 4 == 0) 5 and half of
    // the others 1; a fifth of the 5s are held out.
    let (mut tr, mut te) = (String::new(), String::new());
    for u in 0..60 {
        for i in 0..40 {
            let line = |r| format!("{}\t{}\t{r}\n", u + 100, i + 500);
            if (u + i) % 4 == 0 {
                if (u * 7 + i) % 5 == 0 { te.push_str(&line(5)) } else { tr.push_str(&line(5)) }
            } else if (u * 3 + i) % 2 == 0 {
                tr.push_str(&line(1));
            }
        }
    }
    std::fs::write(&train, tr).unwrap();
    std::fs::write(&test, te).unwrap();
    let s = |p: &PathBuf| p.display().to_string();
    let o = gpumf(&["train", "--train", &s(&train), "--backend", "cpu", "--epochs", "30", "--rank", "8", "--no-biases", "--save", &s(&model)]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = gpumf(&["predict", "--model", &s(&model), "--all-users", "--top", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = String::from_utf8(o.stdout).unwrap();
    assert_eq!(all.lines().count(), 60 * 3, "{all}");
    // Each list leaves out the user's training items: user 100 trained on items 500, 504, ...
    // except its test items.
    let trained = std::fs::read_to_string(&train).unwrap();
    for line in all.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "{line}");
        assert!(!trained.contains(&format!("{}\t{}\t", f[0], f[1])), "a training item listed: {line}");
    }
    // --users gives the same lines for the users it names, in its order.
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "user\n105\n100\n").unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--users", &s(&users), "--top", "3"]);
    let listed = String::from_utf8(o.stdout).unwrap();
    let of = |u: &str| all.lines().filter(|l| l.starts_with(&format!("{u}\t"))).map(|l| format!("{l}\n")).collect::<String>();
    assert_eq!(listed, of("105") + &of("100"));

    // Items most like item 500 are of its kind (500 + 4j) by the cosine of their factors.
    let o = gpumf(&["predict", "--model", &s(&model), "--similar", "500", "--top", "5"]);
    let similar = String::from_utf8(o.stdout).unwrap();
    assert_eq!(similar.lines().count(), 5, "{similar}");
    for line in similar.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let other: u32 = f[1].parse().unwrap();
        assert!(f[0] == "500" && other != 500 && other.is_multiple_of(4), "{line}");
    }
    let o = gpumf(&["predict", "--model", &s(&model), "--similar-user", "100", "--top", "2"]);
    assert_eq!(String::from_utf8(o.stdout).unwrap().lines().count(), 2);

    // A new user who rated three items of kind 0 highly gets the rest of that kind (fold-in).
    let items = dir.path().join("items.txt");
    std::fs::write(&items, "500\t5\n504\n508\t5\n501\t1\n").unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--items", &s(&items), "--top", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = String::from_utf8(o.stdout).unwrap();
    assert_eq!(new.lines().count(), 4, "{new}");
    for line in new.lines() {
        let item: u32 = line.split('\t').next().unwrap().parse().unwrap();
        assert!(item.is_multiple_of(4) && ![500, 504, 508].contains(&item), "{new}");
    }

    // Ranking metrics: the held-out plays are the user's kind, so the lists find them.
    let o = gpumf(&["eval", "--model", &s(&model), "--test", &s(&test), "--metrics", "ndcg@5,recall@5,precision@5,map@5,auc,mpr", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["test_ndcg@5"].as_f64().unwrap() > 0.5, "{v}");
    assert!(v["test_auc"].as_f64().unwrap() > 0.9 && v["test_mpr"].as_f64().unwrap() < 0.1, "{v}");
    assert_eq!(v["ranking"]["users"], 60);
    // train and cv report them too.
    let o = gpumf(&["train", "--train", &s(&train), "--test", &s(&test), "--backend", "cpu", "--epochs", "30", "--rank", "8", "--no-biases", "--metrics", "ndcg@5", "--json"]);
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!((t["test_ndcg@5"].as_f64().unwrap() - v["test_ndcg@5"].as_f64().unwrap()).abs() < 1e-9, "{t}");
    // Early stopping keeps a model of its own indices: the metrics are still those of the model.
    let kept = dir.path().join("kept.gpumf");
    let o = gpumf(&["train", "--train", &s(&train), "--test", &s(&test), "--backend", "cpu", "--threads", "1", "--epochs", "20", "--rank", "8", "--validation", "0.2", "--metrics", "ndcg@5", "--json", "--save", &s(&kept)]);
    let t: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let o = gpumf(&["eval", "--model", &s(&kept), "--test", &s(&test), "--metrics", "ndcg@5", "--json"]);
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(t["test_ndcg@5"], e["test_ndcg@5"], "{t} against {e}");
    let o = gpumf(&["cv", "--data", &s(&train), "--folds", "2", "--backend", "cpu", "--epochs", "3", "--rank", "8", "--metrics", "ndcg@5,auc", "--json"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(c["folds"][1]["ndcg@5"].as_f64().is_some() && c["auc"]["mean"].as_f64().is_some(), "{c}");

    // Bad requests are refused before anything is written.
    std::fs::write(&users, "100\n77\n").unwrap();
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["--users".into(), s(&users)], format!("{}:2: the model has no user 77", s(&users))),
        (vec!["--all-users".into(), "--top".into(), "0".into()], "--top".into()),
        (vec!["--similar".into(), "9".into()], "--similar-item 9: the model has no such item".into()),
        (vec!["--pairs".into(), s(&users), "--top".into(), "3".into()], "--top sets the length of a list".into()),
        (vec!["--all-users".into(), "--user".into(), "100".into()], "cannot be used with".into()),
        (vec!["--items".into(), s(&users)], format!("{}:1: the model has no item 100", s(&users))),
    ];
    for (extra, says) in cases {
        let args: Vec<String> = ["predict", "--model", &s(&model)].iter().map(|a| a.to_string()).chain(extra.clone()).collect();
        let o = gpumf(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!o.status.success() && stderr(&o).contains(&says), "{extra:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "{extra:?} wrote before refusing");
    }
    for (metrics, says) in [("ndcg@0", "at least 1"), ("hits@3", "unknown ranking metric")] {
        let o = gpumf(&["eval", "--model", &s(&model), "--test", &s(&test), "--metrics", metrics]);
        assert!(!o.status.success() && stderr(&o).contains("--metrics") && stderr(&o).contains(says), "{metrics}: {}", stderr(&o));
    }
}

#[test]
fn events_train_the_one_class_loss_and_bad_input_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    // 60 users × 40 items: each user plays items of their kind ((u + i) % 4 == 0), a fifth
    // held out; `user item` lines only.
    let (mut tr, mut te) = (String::new(), String::new());
    for u in 0..60 {
        for i in (0..40).filter(|i| (u + i) % 4 == 0) {
            let line = format!("{}\t{}\n", u + 100, i + 500);
            if (u * 7 + i) % 5 == 0 { te.push_str(&line) } else { tr.push_str(&line) }
        }
    }
    std::fs::write(path("train.tsv"), tr).unwrap();
    std::fs::write(path("test.tsv"), te).unwrap();
    let o = gpumf(&["train", "--train", &path("train.tsv"), "--test", &path("test.tsv"), "--loss", "ials", "--rank", "8", "--save", &path("m.gpumf"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(v["metric"], "ndcg@20");
    assert_eq!(v["settings"]["params"]["epochs"], 15, "the one-class loss's own default");
    assert!(v["test_ndcg@20"].as_f64().unwrap() > 0.8, "{v}");
    assert!(v["backend"].as_str().unwrap().contains("alternating least squares"), "{v}");
    // The saved model scored on the held-out events: by its lists, NDCG@20 as training said.
    let o = gpumf(&["eval", "--model", &path("m.gpumf"), "--test", &path("test.tsv"), "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let scored: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!((scored["test_ndcg@20"].as_f64().unwrap() - v["test_ndcg@20"].as_f64().unwrap()).abs() < 1e-9, "{scored} against {v}");
    // In words, with the users and events it took; on the training events none counts, and it says why.
    let o = gpumf(&["eval", "--model", &path("m.gpumf"), "--test", &path("test.tsv")]);
    let words = String::from_utf8(o.stdout).unwrap();
    assert!(words.starts_with(&format!("test ndcg@20 {:.4} (60 users, ", v["test_ndcg@20"].as_f64().unwrap())), "{words}");
    let o = gpumf(&["eval", "--model", &path("m.gpumf"), "--test", &path("train.tsv")]);
    let words = String::from_utf8(o.stdout).unwrap();
    assert!(words.contains("(0 users, 0 held-out positives)") && words.contains("a training item"), "{words}");
    // Trained and tested on the same events, it says there was nothing to measure.
    let o = gpumf(&["train", "--train", &path("train.tsv"), "--test", &path("train.tsv"), "--loss", "ials", "--rank", "8", "--epochs", "1"]);
    let words = String::from_utf8(o.stdout).unwrap();
    assert!(o.status.success() && words.contains("test NDCG@20: none to measure (of "), "{words}");
    // A new user who played three items of kind 0 is recommended the rest of that kind.
    std::fs::write(path("items.txt"), "500\n504\t3\n508\n").unwrap();
    let o = gpumf(&["predict", "--model", &path("m.gpumf"), "--items", &path("items.txt"), "--top", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let new = String::from_utf8(o.stdout).unwrap();
    assert_eq!(new.lines().count(), 4, "{new}");
    for line in new.lines() {
        let item: u32 = line.split('\t').next().unwrap().parse().unwrap();
        assert!(item.is_multiple_of(4) && ![500, 504, 508].contains(&item), "{new}");
    }

    // The pairwise loss: the same lists, and one thread repeats its draws exactly.
    let bpr = |threads: &str| {
        let o = gpumf(&["train", "--train", &path("train.tsv"), "--test", &path("test.tsv"), "--loss", "bpr", "--rank", "8", "--threads", threads, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("JSON")
    };
    let (once, again) = (bpr("1"), bpr("1"));
    assert!(once["test_ndcg@20"].as_f64().unwrap() > 0.8, "{once}");
    // By columns (each event against users without one on its item) it ranks the kinds too.
    let o = gpumf(&["train", "--train", &path("train.tsv"), "--test", &path("test.tsv"), "--loss", "bpr-columns", "--rank", "8", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let columns: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(columns["test_ndcg@20"].as_f64().unwrap() > 0.5, "{columns}");
    let figures = |v: &serde_json::Value| v["history"].as_array().unwrap().iter().map(|e| (e["train_loss"].clone(), e["test_ndcg@20"].clone())).collect::<Vec<_>>();
    assert_eq!(figures(&once), figures(&again));

    std::fs::write(path("ratings.tsv"), "1\t1\t5\n1\t2\t3\n2\t1\t4\n").unwrap();
    std::fs::write(path("negative.tsv"), "1\t1\t5\n1\t2\t-3\n2\t1\t4\n").unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (&["train", "--train", &path("train.tsv")], &["train.tsv:1:", "no rating", "--loss ials"]),
        (&["train", "--train", &path("ratings.tsv"), "--loss", "ials"], &["ratings.tsv", "holds the value 5", "--positive-threshold", "--counts"]),
        (&["train", "--train", &path("negative.tsv"), "--loss", "ials", "--counts"], &["-3", "cannot be negative"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "ials", "--nonneg"], &["--nonneg", "alternating least squares"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "ials", "--unobserved-weight", "-1"], &["--unobserved-weight"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "ials", "--cg-steps", "0"], &["--cg-steps"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "ials", "--devices", "0"], &["--loss ials", "CPU threads", "--devices"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "bpr", "--workers", "1", "--devices", "0"], &["--loss bpr", "CPU workers", "--devices"]),
        (&["train", "--train", &path("ratings.tsv"), "--counts"], &["--counts", "one-class"]),
        (&["train", "--train", &path("train.tsv"), "--loss", "bpr", "--nonneg"], &["--nonneg", "sampled pairs"]),
    ];
    for (args, words) in cases {
        let o = gpumf(args);
        let e = stderr(&o);
        assert!(!o.status.success() && !e.contains("panicked"), "{args:?}: {e}");
        for w in *words {
            assert!(e.contains(w), "{args:?}: {e:?} lacks {w:?}");
        }
    }
}

#[test]
fn labelled_ids_train_and_come_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (train, test, model, cached) = (dir.path().join("train.csv"), dir.path().join("test.csv"), dir.path().join("m.gpumf"), dir.path().join("c.gpumf"));
    // Amazon's shape: users as hashes, items as ISBNs with a leading zero; each user rates
    // items of its kind 5 and some others 1.
    let (user, item) = (|u: usize| format!("A{:X}Z", u * 7919 + 3), |i: usize| format!("0{:09}", i * 37));
    let (mut tr, mut te) = (String::new(), String::new());
    for u in 0..80 {
        for i in 0..40 {
            let line = |r| format!("{},{},{r}\n", user(u), item(i));
            if (u + i) % 3 == 0 {
                if (u + i) % 7 == 0 { te.push_str(&line(5)) } else { tr.push_str(&line(5)) }
            } else if (u * 5 + i) % 2 == 0 {
                tr.push_str(&line(1));
            }
        }
    }
    std::fs::write(&train, tr).unwrap();
    std::fs::write(&test, te).unwrap();
    let s = |p: &PathBuf| p.display().to_string();
    // In memory, and from a block cache (--memory under 4 bytes a byte of the file).
    for (saved, extra) in [(&model, vec![]), (&cached, vec!["--memory", "100K", "--cache-dir", dir.path().to_str().unwrap()])] {
        let (train, test) = (s(&train), s(&test));
        let mut args = vec!["train", "--train", &train, "--test", &test, "--backend", "cpu", "--threads", "1", "--epochs", "20", "--rank", "8", "--save", saved.to_str().unwrap()];
        let on_disk = !extra.is_empty();
        args.extend(extra);
        let o = gpumf(&args);
        assert!(o.status.success() && stderr(&o).contains("blocks on disk") == on_disk, "{}", stderr(&o));
        assert!(!stderr(&o).contains("unseen in training"), "the test file's labels meet the training file's: {}", stderr(&o));
    }
    for saved in [&model, &cached] {
        let o = gpumf(&["predict", "--model", &s(saved), "--user", &user(4), "--top", "2"]);
        let listed = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(o.status.success() && listed.lines().count() == 2, "{listed}{}", stderr(&o));
        for line in listed.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f[0], user(4), "{line}");
            assert!(f[1].len() == 10 && f[1].starts_with('0'), "an item as the file wrote it: {line}");
        }
    }
    let o = gpumf(&["predict", "--model", &s(&model), "--similar-item", &item(3), "--top", "3"]);
    let similar = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success() && similar.lines().all(|l| l.starts_with(&format!("{}\t0", item(3)))), "{similar}{}", stderr(&o));
    // Pairs: a known one, and a user the model lacks, written back as given.
    let pairs = dir.path().join("pairs.csv");
    std::fs::write(&pairs, format!("user,item\n{},{}\nnewcomer,{}\n", user(1), item(2), item(2))).unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--pairs", &s(&pairs)]);
    let predicted = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = predicted.lines().collect();
    assert!(lines.len() == 2 && lines[0].starts_with(&format!("{}\t{}\t", user(1), item(2))) && lines[1].starts_with(&format!("newcomer\t{}\t", item(2))) && lines[1].ends_with("cold"), "{predicted}");
    // A new user's items, and a list naming a user the model lacks.
    let items = dir.path().join("items.txt");
    std::fs::write(&items, format!("{} 5\n{}\n", item(0), item(3))).unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--items", &s(&items), "--top", "2"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).into_owned().lines().all(|l| l.starts_with('0')), "{}", stderr(&o));
    let users = dir.path().join("users.txt");
    std::fs::write(&users, format!("{}\nB4DUSER\n", user(2))).unwrap();
    let o = gpumf(&["predict", "--model", &s(&model), "--users", &s(&users)]);
    assert!(!o.status.success() && stderr(&o).contains("users.txt:2: the model has no user B4DUSER"), "{}", stderr(&o));
    let o = gpumf(&["predict", "--model", &s(&model), "--user=-5"]);
    assert!(!o.status.success() && stderr(&o).contains("labels that are not numbers"), "{}", stderr(&o));
}

#[test]
fn a_block_cache_built_for_other_columns_is_not_trained_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("two.tsv");
    // Two rating columns: --columns 1,2,3 and 1,2,4 are different data from one file.
    let text: String = (0..3000).map(|n| format!("{}\t{}\t{}\t{}\n", n % 97, n % 89, n % 5 + 1, (n * 7) % 5 + 1)).collect();
    std::fs::write(&data, text).unwrap();
    let s = |p: &PathBuf| p.display().to_string();
    let cache = dir.path().join("cache");
    let run = |columns: &str, memory: bool| {
        let mut args = vec!["train", "--train", data.to_str().unwrap(), "--columns", columns, "--backend", "cpu", "--threads", "1", "--epochs", "3", "--rank", "4"];
        let cache = s(&cache);
        if memory {
            // Below 4 bytes a byte of the file: its ratings go to a block cache.
            args.extend(["--memory", "100K", "--cache-dir", &cache]);
        }
        let o = gpumf(&args);
        assert!(o.status.success() && stderr(&o).contains("blocks on disk"), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines().find(|l| l.starts_with("train RMSE")).expect("the train RMSE line").to_string()
    };
    let third = run("1,2,3", true);
    let fourth = run("1,2,4", true);
    assert_ne!(third, fourth, "the cache of column 3 was trained on for column 4");
    assert_eq!(run("1,2,4", true), fourth, "the cache built for column 4 is reused for it");
}

#[test]
fn a_file_read_into_the_block_cache_is_checked_against_the_loss_as_one_loaded_whole() {
    // The cache's path read its file piece by piece and skipped the loader's checks: a file of
    // events trained the squared loss, and star ratings trained bpr and ials as weights.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let events: String = (0..30000).map(|i| format!("{}\t{}\n", i % 300, (i * 7) % 200)).collect();
    let stars: String = (0..30000).map(|i| format!("{}\t{}\t{}\n", i % 300, (i * 7) % 200, 1 + i % 5)).collect();
    std::fs::write(path("events.tsv"), events).unwrap();
    std::fs::write(path("stars.tsv"), stars).unwrap();
    let cache = path("cache");
    let cases: [(&str, &[&str], &str); 3] = [
        ("events.tsv", &[], "a user and an item but no rating (30000 such lines)"),
        ("stars.tsv", &["--loss", "bpr"], "holds values from 1 to 5, but --loss bpr trains on events"),
        ("stars.tsv", &["--loss", "ials"], "holds values from 1 to 5, but --loss ials trains on events"),
    ];
    // Twice: the cache built, then reused.
    for round in 0..2 {
        for (file, flags, said) in cases {
            let file = path(file);
            let mut args = vec!["train", "--train", &file, "--epochs", "1", "--rank", "4", "--memory", "200K", "--cache-dir", &cache];
            args.extend(flags);
            let o = gpumf(&args);
            assert!(!o.status.success() && stderr(&o).contains(said), "round {round}, {args:?}: {}", stderr(&o));
        }
    }
    // What the loss does train on still trains.
    let o = gpumf(&["train", "--train", &path("events.tsv"), "--loss", "ials", "--epochs", "1", "--rank", "4", "--memory", "200K", "--cache-dir", &cache]);
    assert!(o.status.success() && stderr(&o).contains("reusing the block cache"), "{}", stderr(&o));
}
