//! Parsing speed of the rating loaders. `GPUMF_BENCH_RATINGS` sets the size (default 10M; CI
//! keeps it small). Run: `cargo bench --bench load`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpumf::data::{parse_ratings, Format, LoadOptions};
use std::fmt::Write;
use std::path::Path;

/// `n` ratings in Amazon's shape: users and items as labels (A…, B00…), read through their
/// hashes and texts.
fn labelled_text(n: usize) -> Vec<u8> {
    let numbers = String::from_utf8(ratings_text(n, ",", None)).expect("text");
    let mut s = String::with_capacity(n * 32);
    for line in numbers.lines() {
        let f: Vec<&str> = line.split(',').collect();
        let (u, i): (u64, u64) = (f[0].parse().expect("a user"), f[1].parse().expect("an item"));
        let _ = writeln!(s, "A{:012X},B00{:07X},{},{}", u * 2_654_435_761 % (1 << 47), i * 40_503, f[2], f[3]);
    }
    s.into_bytes()
}

/// `n` events in Last.fm's or a click log's shape: a user and an item a line, no rating.
fn events_text(n: usize) -> Vec<u8> {
    let numbers = String::from_utf8(ratings_text(n, "\t", None)).expect("text");
    let mut s = String::with_capacity(n * 14);
    for line in numbers.lines() {
        let mut f = line.split('\t');
        let _ = writeln!(s, "{}\t{}", f.next().expect("a user"), f.next().expect("an item"));
    }
    s.into_bytes()
}

fn ratings_text(n: usize, delimiter: &str, header: Option<&str>) -> Vec<u8> {
    let mut s = String::with_capacity(n * 24);
    if let Some(h) = header {
        s.push_str(h);
        s.push('\n');
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (u, i, r) = (x % 480_189 + 1, (x >> 20) % 17_770 + 1, (x >> 40) % 9 + 2);
        let _ = writeln!(s, "{u}{delimiter}{i}{delimiter}{}.{}{delimiter}{}", r / 2, (r % 2) * 5, 978_300_760 + (x >> 50));
    }
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("GPUMF_BENCH_RATINGS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let mut group = c.benchmark_group("load");
    group.sample_size(10).throughput(Throughput::Elements(n as u64));
    for (name, text) in [
        ("tab (u.data)", ratings_text(n, "\t", None)),
        ("csv with header (ratings.csv)", ratings_text(n, ",", Some("userId,movieId,rating,timestamp"))),
        ("comma, labelled ids (Amazon's ASINs)", labelled_text(n)),
        ("tab, events (a user and an item)", events_text(n)),
    ] {
        group.bench_function(format!("{name}, {n} ratings"), |b| {
            b.iter(|| parse_ratings(&text, Path::new("bench"), LoadOptions { format: Format::Auto, ..Default::default() }).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
