//! Every supported format, format detection, and a clear error for every kind of bad input.

use gpumf::data::{load_ratings, Format, LoadOptions, RatingSet};
use gpumf::Error;
use std::io::Write;
use std::path::{Path, PathBuf};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn load(path: &Path) -> gpumf::Result<gpumf::data::Loaded> {
    load_ratings(path, LoadOptions::default())
}

/// Each id of `ids` as the user wrote it, in index order.
fn shown(ids: &gpumf::data::IdMap) -> Vec<String> {
    (0..ids.len() as u32).map(|i| ids.shown(i).to_string()).collect()
}

fn triplets(set: &RatingSet) -> Vec<(u64, u64, f32)> {
    set.entries.iter().map(|r| (set.users.external_id(r.user), set.items.external_id(r.item), r.value)).collect()
}

const EXPECTED: [(u64, u64, f32); 3] = [(196, 242, 3.0), (186, 302, 3.5), (22, 377, 1.0)];

#[test]
fn every_format_is_detected_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("u.data", "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n22\t377\t1\t878887116\n", Format::Tab),
        ("ratings.dat", "196::242::3::881250949\n186::302::3.5::891717742\n22::377::1::878887116\n", Format::Dat),
        ("ratings.csv", "userId,movieId,rating,timestamp\n196,242,3.0,1\n186,302,3.5,2\n22,377,1.0,3\n", Format::Csv),
        ("header.dat", "userId::movieId::rating\n196::242::3\n186::302::3.5\n22::377::1\n", Format::Csv),
        ("reordered.csv", "timestamp,rating,itemId,user\n1,3,242,196\n2,3.5,302,186\n3,1,377,22\n", Format::Csv),
        ("libmf.txt", "196 242 3\n186 302 3.5\n22 377 1\n", Format::Space),
        ("plain.csv", "196,242,3\n186,302,3.5\n22,377,1\n", Format::Comma),
        ("crlf.tsv", "196\t242\t3\r\n186\t302\t3.5\r\n\r\n22\t377\t1\r\n", Format::Tab),
        (
            "m.mtx",
            "%%MatrixMarket matrix coordinate real general\n% comment\n200 400 3\n196 242 3\n186 302 3.5\n22 377 1\n",
            Format::Mtx,
        ),
    ];
    for (name, text, format) in cases {
        let path = write(dir.path(), name, text);
        let loaded = load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(loaded.format, format, "{name}");
        assert_eq!(triplets(&loaded.ratings), EXPECTED, "{name}");
        assert_eq!(loaded.ratings.users.len(), 3);
    }
}

#[test]
fn gzip_is_detected_from_the_bytes_not_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ratings.data"); // no .gz suffix on purpose
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
    gz.write_all(b"userId,movieId,rating\n196,242,3\n186,302,3.5\n22,377,1\n").unwrap();
    gz.finish().unwrap();
    let loaded = load(&path).unwrap();
    assert_eq!(triplets(&loaded.ratings), EXPECTED);
    assert_eq!(loaded.format, Format::Csv);

    let bad = dir.path().join("bad.gz");
    std::fs::write(&bad, b"\x1f\x8b\x08garbage").unwrap();
    let e = load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("gzip"), "{e}");
}

#[test]
fn a_format_flag_overrides_detection() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x", "1 2 3\n4 5 6\n");
    let e = load_ratings(&path, LoadOptions { format: Format::Tab, ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains(":1:") && e.contains("inconsistent delimiter"), "{e}");
    assert!(load_ratings(&path, LoadOptions { format: Format::Space, ..Default::default() }).is_ok());
}

/// (file text, the line the error must name, words the message must hold)
const BAD: &[(&str, u64, &[&str])] = &[
    ("1\t2\t3\n4\t5\n", 2, &["missing field", "found 2"]),
    ("1\t2\t3\n4\t5\tfive\n", 2, &["rating \"five\" is not a number"]),
    ("1\t2\t3\n4\t5\tNaN\n", 2, &["not a finite number"]),
    ("1\t2\t3\n\n4\t5\tinf\n", 3, &["not a finite number"]),
    ("1\t2\t3\n-4\t5\t3\n", 2, &["bad user id \"-4\""]),
    ("1\t2\t3\n4\t7.5\t3\n", 2, &["bad item id \"7.5\"", "labels that are not numbers"]),
    // Matrix Market's indices are numbers, never labels.
    ("%%MatrixMarket matrix coordinate real general\n2 2 1\nx 2 3\n", 3, &["bad user index \"x\"", "integers from 1"]),
    ("1\t2\t3\n4,5,3\n", 2, &["inconsistent delimiter", "comma"]),
    ("1\t2\t3\n4\t5\t3\t1\t9\n", 2, &["too many fields"]),
    ("userId,movieId,rating\n1,2,3\n1,2\n", 3, &["missing field"]),
    ("1\t2\n3\t4\t5\n", 2, &["too many fields", "expected 2"]),
    ("%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 x\n", 3, &["not a number"]),
    // A headerless file whose first line is bad: its fault, not "header has no user column".
    ("1,2,abc\n3,4,5\n", 1, &["rating \"abc\" is not a number"]),
    // A decimal comma (a European spreadsheet's) is named, with the rating as it must be written.
    ("1;2;3\n4;5;3,5\n", 2, &["rating \"3,5\" is not a number", "decimal point, not a comma: write 3.5"]),
    ("1\t2\t3\n4\t5\t1,000,5\n", 2, &["rating \"1,000,5\" is not a number"]),
];

#[test]
fn every_bad_line_is_named_by_file_line_and_fault() {
    let dir = tempfile::tempdir().unwrap();
    for (i, (text, line, words)) in BAD.iter().enumerate() {
        let name = format!("bad{i}.txt");
        let path = write(dir.path(), &name, text);
        let err = load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{name}:{line}:")), "case {i}: {msg}");
        for w in *words {
            assert!(msg.contains(w), "case {i}: {msg:?} lacks {w:?}");
        }
    }
}

#[test]
fn labelled_ids_are_read_with_their_texts_in_every_delimited_format() {
    let dir = tempfile::tempdir().unwrap();
    // Headerless files whose ids are labels (ASINs, names, hashes) are data, not a header;
    // a header names its columns; a number among labels keeps its own key.
    let files = [
        ("a.csv", "AH2L9G3DQHHAJ,0439023483,4.0,1355011200\nA2IIIDRK3PRRZY,0439023483,5.0,1355011200\n77,B00X,1\n"),
        ("b.tsv", "AH2L9G3DQHHAJ\t0439023483\t4\nA2IIIDRK3PRRZY\t0439023483\t5\n77\tB00X\t1\n"),
        ("c.txt", "AH2L9G3DQHHAJ 0439023483 4\nA2IIIDRK3PRRZY 0439023483 5\n77 B00X 1\n"),
        ("d.csv", "userId,itemId,rating\nAH2L9G3DQHHAJ,0439023483,4\nA2IIIDRK3PRRZY,0439023483,5\n77,B00X,1\n"),
    ];
    for (name, text) in files {
        let set = load(&write(dir.path(), name, text)).unwrap().ratings;
        assert_eq!(shown(&set.users), ["AH2L9G3DQHHAJ", "A2IIIDRK3PRRZY", "77"], "{name}");
        assert_eq!(shown(&set.items), ["0439023483", "B00X"], "{name}: an ISBN keeps its leading zero");
        assert_eq!(set.users.external_id(2), 77, "{name}");
        assert!(set.users.external_id(0) >= 1 << 63, "{name}: a label's key is out of the numbers' way");
    }
    // The same label in two files has the same key, so a test file's users meet the training
    // file's.
    let (train, test) = (load(&write(dir.path(), "t1", files[0].1)).unwrap().ratings, load(&write(dir.path(), "t2", "A2IIIDRK3PRRZY,B00X,2\n")).unwrap().ratings);
    assert_eq!(train.users.index_of(test.users.external_id(0)), Some(1));
    // A word that is a column's name still makes a header: "user item" events.
    let events = load(&write(dir.path(), "e.csv", "user,item\nAH2,B1\nAH3,B1\n")).unwrap();
    assert_eq!((events.ratings.len(), events.format), (2, Format::Csv));
}

#[test]
fn a_quoted_field_holds_the_delimiter() {
    // Spreadsheets quote a field with the delimiter in it; a doubled quote is a quote. Read as
    // split at every comma, `"a,b",5,4` was user a, item b, rating 5.
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("q.csv", "\"Smith, J\",\"Book, The\",4\n\"a,b\",5,3\n \"say \"\"hi,\"\"\" ,5,2\nplain,\"x\",1\n"),
        ("q.ssv", "\"Smith; J\";\"Book; The\";4\n\"a;b\";5;3\n \"say \"\"hi;\"\"\" ;5;2\nplain;\"x\";1\n"),
    ];
    for (name, text) in files {
        let set = load(&write(dir.path(), name, text)).unwrap().ratings;
        let sep = if name.ends_with("csv") { "," } else { ";" };
        let users: Vec<String> = ["Smith, J", "a,b", "say \"\"hi,\"\"", "plain"].iter().map(|u| u.replace(',', sep)).collect();
        assert_eq!(shown(&set.users), users, "{name}");
        assert_eq!(shown(&set.items), [&"Book, The".replace(',', sep), "5", "x"], "{name}");
        assert_eq!(set.entries.iter().map(|r| r.value).collect::<Vec<_>>(), [4.0, 3.0, 2.0, 1.0], "{name}");
    }
    // A quote that never closes is text: the line splits at every delimiter.
    let open = load(&write(dir.path(), "open.csv", "\"a,b,5\n")).unwrap().ratings;
    assert_eq!((open.users.shown(0).to_string(), open.items.shown(0).to_string(), open.entries[0].value), ("\"a".into(), "b".into(), 5.0));
}

/// cuMF_SGD's 12-byte records of (user, item, rating).
fn binary_records(records: &[(i32, i32, f32)]) -> Vec<u8> {
    records.iter().flat_map(|&(u, i, r)| [u.to_le_bytes(), i.to_le_bytes(), r.to_le_bytes()].concat()).collect()
}

#[test]
fn columns_name_where_the_user_item_and_rating_are() {
    let dir = tempfile::tempdir().unwrap();
    let with = |spec: &str| LoadOptions { columns: Some(spec.parse().unwrap()), ..Default::default() };
    // Book-Crossing: quoted, semicolons, a header whose names are its own.
    let bx = write(dir.path(), "bx.csv", "\"User-ID\";\"ISBN\";\"Book-Rating\"\n\"276725\";\"034545104X\";\"0\"\n\"276726\";\"0155061224\";\"5\"\n");
    let e = load(&bx).unwrap_err().to_string();
    assert!(e.contains("header has no user column") && e.contains("--columns USER,ITEM[,RATING]"), "{e}");
    let set = load_ratings(&bx, with("user-id,ISBN,Book-Rating")).unwrap().ratings;
    assert_eq!(set.items.shown(0).to_string(), "034545104X");
    assert_eq!(set.entries.iter().map(|r| r.value).collect::<Vec<_>>(), [0.0, 5.0]);
    assert_eq!(triplets(&load_ratings(&bx, with("1,2,3")).unwrap().ratings), triplets(&set));
    // Last.fm 360K: tab-separated user hash, artist id, artist name, plays; no header, and
    // the name column holds text. By number; further columns ignored; as events without a
    // rating column.
    let lfm = write(dir.path(), "lfm.tsv", "00000c28\t3bd73256-39\tbetty blowtorch\t2137\t\n00000c28\tf2fb0ff0-56\tdie Ärzte\t1099\n00001411\t3bd73256-39\tbetty blowtorch\t12\n");
    let set = load_ratings(&lfm, with("1,2,4")).unwrap().ratings;
    assert_eq!((set.users.len(), set.items.len()), (2, 2));
    assert_eq!(set.entries.iter().map(|r| r.value).collect::<Vec<_>>(), [2137.0, 1099.0, 12.0]);
    let events = load_ratings(&lfm, with("1,2")).unwrap();
    assert_eq!((events.ratings.len(), events.events.map(|e| e.0)), (3, Some(3)));
    // Streamed piece by piece (--memory), the same.
    let mut streamed = Vec::new();
    gpumf::data::stream_ratings(&lfm, &with("1,2,4"), |rs| {
        streamed.extend_from_slice(rs);
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed, set.entries);
    // What cannot be: a name without a header, a column past the header's, a rating column
    // of text, columns of another format, and specs that are no columns.
    for (file, spec, words) in [(&lfm, "user,2", "has no column \"user\" (it has 00000c28, 3bd73256-39"), (&bx, "1,2,9", "bx.csv:1: missing field: expected 9 to 16 semicolon-separated fields, found 3"), (&bx, "1,2,Rating", "no column \"Rating\""), (&lfm, "1,2,3", "lfm.tsv:2: rating \"die Ärzte\" is not a number")] {
        let e = load_ratings(file, with(spec)).unwrap_err().to_string();
        assert!(e.contains(words), "{spec}: {e}");
    }
    let told = LoadOptions { format: Format::Tab, ..with("user,2") };
    assert!(load_ratings(&lfm, told).unwrap_err().to_string().contains("has no header line to name columns; give their numbers"));
    let numbers = write(dir.path(), "n.csv", "1,2,4\n2,1,5\n");
    let e = load_ratings(&numbers, with("user,item,rating")).unwrap_err().to_string();
    assert!(e.contains("n.csv has no header line to name columns; give their numbers"), "{e}");
    let mtx = write(dir.path(), "m.mtx", "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 3\n");
    assert!(load_ratings(&mtx, with("1,2,3")).unwrap_err().to_string().contains("--columns applies to delimited text"));
    let records = dir.path().join("r.bin");
    std::fs::write(&records, binary_records(&[(1, 2, 3.0), (2, 1, 4.0)])).unwrap();
    let e = load_ratings(&records, with("1,2,3")).unwrap_err().to_string();
    assert!(e.contains("--columns applies to delimited text") && e.contains("binary"), "{e}");
    let e = gpumf::data::stream_ratings(&records, &with("1,2,3"), |_| Ok(())).unwrap_err().to_string();
    assert!(e.contains("--columns applies to delimited text"), "{e}");
    for (spec, words) in [("0,1,2", "from 1"), ("1", "USER,ITEM[,RATING]"), ("1,2,3,4", "USER,ITEM[,RATING]"), ("1,1,3", "named twice"), ("1,,3", "empty"), ("1,2,17", "more than 16")] {
        let e = spec.parse::<gpumf::data::Columns>().unwrap_err();
        assert!(e.contains(words), "{spec}: {e}");
    }
}

#[test]
fn files_of_events_load_as_ones_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("plays.tsv", "7\t1\n7\t2\n9\t1\n"),
        ("plays.txt", "7 1\n7 2\n9 1\n"),
        ("plays.csv", "user,item\n7,1\n7,2\n9,1\n"),
        ("plays.mtx", "%%MatrixMarket matrix coordinate pattern general\n9 2 3\n7 1\n7 2\n9 1\n"),
    ] {
        let path = write(dir.path(), name, text);
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.ratings.len(), 3, "{name}");
        assert!(loaded.ratings.entries.iter().all(|r| r.value == 1.0), "{name}");
        let first = match &name[name.len() - 3..] {
            "csv" => 2,
            "mtx" => 3,
            _ => 1,
        };
        assert_eq!(loaded.events, Some((3, first)), "{name}");
        assert!(loaded.summary(&path).contains("3 lines of a user and an item only"), "{name}");
    }
}

#[test]
fn skip_bad_lines_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mixed.tsv", "1\t2\t3\n4\t5\n6\t7\tNaN\n8\t9\t4\n");
    let loaded = load_ratings(&path, LoadOptions { format: Format::Auto, skip_bad_lines: true, ..Default::default() }).unwrap();
    assert_eq!(loaded.ratings.len(), 2);
    assert_eq!(loaded.skipped_lines, 2);
    assert!(loaded.summary(&path).contains("2 malformed lines skipped"));
}

#[test]
fn empty_directory_missing_and_truncated_inputs_get_their_own_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.csv", "");
    assert!(matches!(load(&empty), Err(Error::EmptyFile { .. })));
    let blank = write(dir.path(), "blank.csv", "\n  \n");
    assert!(matches!(load(&blank), Err(Error::EmptyFile { .. })));
    let header_only = write(dir.path(), "header.csv", "userId,movieId,rating\n");
    assert!(load(&header_only).unwrap_err().to_string().contains("no ratings"));
    assert!(matches!(load(dir.path()), Err(Error::IsDirectory { .. })));
    let missing = dir.path().join("nope.csv");
    let e = load(&missing).unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }) && e.to_string().contains("nope.csv"), "{e}");
    let mtx = write(dir.path(), "short.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 4\n1 1 1\n2 2 2\n");
    let e = load(&mtx).unwrap_err().to_string();
    assert!(e.contains("declares 4 entries") && e.contains("has 2"), "{e}");
    let outside = write(dir.path(), "outside.mtx", "%%MatrixMarket matrix coordinate real general\n3 3 1\n4 1 1\n");
    assert!(load(&outside).unwrap_err().to_string().contains("outside the declared 3 x 3"));
    let binary = dir.path().join("bin");
    std::fs::write(&binary, [0u8, 159, 146, 150, b'\n', 1, 2]).unwrap();
    assert!(load(&binary).is_err());
}

#[test]
fn the_shipped_latest_small_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/ml-latest-small/ratings.csv");
    let loaded = load(&path).unwrap();
    assert_eq!((loaded.ratings.len(), loaded.ratings.users.len(), loaded.ratings.items.len()), (100836, 610, 9724));
    assert_eq!(loaded.format, Format::Csv);
}
