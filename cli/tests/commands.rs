//! `rdio cp` and `rdio bench` end to end, through the binary.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// `rdio` with an isolated HOME (no credential or state of the user's).
fn rdio_command() -> Command {
    common::rdio_in(concat!(env!("CARGO_TARGET_TMPDIR"), "/home-commands"))
}

fn rdio(args: &[&str]) -> std::process::Output {
    rdio_command().args(args).output().expect("run rdio")
}

/// Every name in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect()
}

#[test]
fn cp_round_trips_through_the_server_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    for (size, extra) in [
        (0usize, &[][..]),
        (1, &["--polling"][..]),
        (
            (1 << 20) + 1,
            &["--io-size", "64K", "--queue-depth", "3"][..],
        ),
        // The server on threads of its own instead of inline.
        (
            (1 << 20) + 2,
            &["--io-size", "64K", "--polling", "--server-threads"][..],
        ),
    ] {
        let src = dir.path().join(format!("src_{size}"));
        let dst = dir.path().join(format!("dst_{size}"));
        let data = pattern(size);
        fs::write(&src, &data).expect("write src");
        let mut args = vec![
            "cp",
            src.to_str().expect("utf-8"),
            dst.to_str().expect("utf-8"),
            "--root",
            root.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let out = rdio(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "size {size}: {stderr}");
        // The summary on standard error, nothing on standard output.
        assert!(
            stderr.starts_with("copied ") && stderr.contains("verified xxh3-128 "),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
        assert_eq!(fs::read(&dst).expect("dst"), data, "size {size}: DST");
        assert_eq!(
            fs::read(root.join(format!("src_{size}"))).expect("server copy"),
            data,
            "size {size}: server root"
        );
    }
}

/// The default `cp`: a download of SRC from a read-only server exporting
/// its directory, verified against the server's XXH3-128 of SRC. DST is
/// the only file written: no temporary server root (TMPDIR stays empty),
/// no copy beside SRC, SRC's bytes, inode and modification time as they
/// were. A SRC named through a symlink into another directory is served
/// from that directory.
#[test]
fn cp_is_a_verified_download_that_writes_only_dst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tmp, from, to) = (
        dir.path().join("tmp"),
        dir.path().join("from"),
        dir.path().join("to"),
    );
    for made in [&tmp, &from, &to] {
        fs::create_dir(made).expect("mkdir");
    }
    fs::write(from.join("neighbour"), b"left alone").expect("write");
    std::os::unix::fs::symlink(from.join("src_link_target"), dir.path().join("link"))
        .expect("symlink");
    for (size, extra) in [
        (0usize, &[][..]),
        ((1 << 20) + 3, &[][..]),
        (
            (1 << 20) + 5,
            &["--io-size", "64K", "--queue-depth", "3", "--polling"][..],
        ),
        ((1 << 20) + 7, &["--server-threads"][..]),
    ] {
        let data = pattern(size);
        let src = from.join("src");
        fs::write(&src, &data).expect("write src");
        let before = fs::metadata(&src).expect("stat src");
        let dst = to.join("dst");
        let mut args = vec![
            "--json",
            "cp",
            src.to_str().expect("utf-8"),
            dst.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        let out = rdio_command()
            .args(&args)
            .env("TMPDIR", &tmp)
            .output()
            .expect("run rdio");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "size {size}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&data));
        assert!(
            stdout.contains("\"command\":\"cp\"")
                && stdout.contains("\"round_trip\":false")
                && stdout.contains(&format!(
                    "\"checksum\":{{\"algorithm\":\"xxh3-128\",\"value\":\"{digest}\",\"verified\":true}}"
                )),
            "size {size}: {stdout}"
        );
        assert_eq!(fs::read(&dst).expect("dst"), data, "size {size}: DST");
        assert_eq!(names(&to), ["dst"], "size {size}: DST alone");
        assert!(names(&tmp).is_empty(), "size {size}: {:?}", names(&tmp));
        assert_eq!(names(&from), ["neighbour", "src"], "size {size}");
        let after = fs::metadata(&src).expect("stat src");
        assert_eq!(fs::read(&src).expect("src"), data, "size {size}: SRC");
        assert_eq!(
            (after.ino(), after.mtime(), after.mtime_nsec()),
            (before.ino(), before.mtime(), before.mtime_nsec()),
            "size {size}: SRC untouched"
        );
        fs::remove_file(&dst).expect("rm dst");
    }
    // Through a symlink in another directory: the file it names is copied.
    let data = pattern(4099);
    fs::write(from.join("src_link_target"), &data).expect("write");
    let dst = to.join("via-link");
    let out = rdio(&[
        "cp",
        dir.path().join("link").to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(&dst).expect("dst"), data);
}

/// `cp --round-trip` takes the long way through a temporary server root
/// (under TMPDIR, removed afterwards): put and get in the summary, both
/// directions compared.
#[test]
fn cp_round_trip_goes_through_a_temporary_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    fs::create_dir(&tmp).expect("mkdir");
    let data = pattern((1 << 20) + 11);
    let src = dir.path().join("src");
    fs::write(&src, &data).expect("write");
    let dst = dir.path().join("dst");
    let out = rdio_command()
        .args([
            "cp",
            "--round-trip",
            src.to_str().expect("utf-8"),
            dst.to_str().expect("utf-8"),
        ])
        .env("TMPDIR", &tmp)
        .output()
        .expect("run rdio");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("copied ")
            && stderr.contains("via a temporary server root: put ")
            && stderr.contains(&format!(
                "verified xxh3-128 {:032x}",
                xxhash_rust::xxh3::xxh3_128(&data)
            )),
        "{stderr}"
    );
    assert_eq!(fs::read(&dst).expect("dst"), data);
    assert!(names(&tmp).is_empty(), "{:?}", names(&tmp));
}

#[test]
fn cp_into_a_missing_directory_fails_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::write(&src, b"data").expect("write");
    let dst = dir.path().join("missing/dst");
    let out = rdio(&[
        "cp",
        src.to_str().expect("utf-8"),
        dst.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A usage error, found before the server starts.
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("rdio: error: cannot write") && stderr.contains("does not exist"),
        "{stderr}"
    );
}

#[test]
fn bench_prints_one_row_per_measurement() {
    for (in_place, server_threads) in [(false, false), (true, false), (false, true)] {
        let mut extra = Vec::new();
        if in_place {
            extra.push("--in-place");
        }
        if server_threads {
            extra.push("--server-threads");
        }
        let out = bench_quick(&extra);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let reads = if in_place {
            "reads and writes in place"
        } else {
            "reads copied out, writes copied in (the protocol-shaped loops' too)"
        };
        let server = if server_threads {
            "over loopback (server threads)"
        } else {
            "over loopback (server inline)"
        };
        assert!(
            stdout
                .lines()
                .next()
                .is_some_and(|l| l.contains(reads) && l.contains(server)),
            "{stdout}"
        );
        check_bench_table(&stdout, false);
    }
}

/// `--file-baseline DIR` adds the file-backed protocol-shaped loops: a row
/// each after the shaped one, their ratio in the `w/file` column, their
/// file gone afterwards; a directory that cannot take the file is a clear
/// error.
#[test]
fn bench_file_baseline_adds_the_file_backed_loops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bench_quick(&["--file-baseline", dir.path().to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("file-backed protocol-shaped loops")),
        "{stdout}"
    );
    let table: String = stdout
        .lines()
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    check_bench_table(&table, true);
    assert_eq!(
        fs::read_dir(dir.path()).expect("read_dir").count(),
        0,
        "the loops' file is removed"
    );
    let out = bench_quick(&["--file-baseline", "/no/such/dir"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot create the file-backed baseline's file under /no/such/dir"),
        "{stderr}"
    );
}

/// The table `bench --sizes 4K,8K --queue-depths 1,2` prints (with
/// `file`, from a run with `--file-baseline`).
fn check_bench_table(stdout: &str, file: bool) {
    let rows: Vec<&str> = stdout.lines().skip(2).collect();
    let per_cell = if file { 4 } else { 3 };
    let per_shape = if file { 8 } else { 0 };
    // The batched file-backed loop: reads at depth 2, both sizes.
    let batched = if file { 2 } else { 0 };
    // 4 ops x 2 sizes x 2 depths, each after its memcpy and protocol-shaped
    // baselines (and file-backed ones).
    assert_eq!(rows.len(), 4 * 2 * 2 * per_cell + batched, "{stdout}");
    for (op, count) in [
        ("read", 4),
        ("write", 4),
        ("readv", 4),
        ("writev", 4),
        ("memcpy", 16),
        ("shape_rd", 8),
        ("shape_wr", 8),
        ("file_rd", per_shape),
        ("file_wr", per_shape),
        ("fbat_rd", batched),
    ] {
        assert_eq!(
            rows.iter()
                .filter(|row| row.split_whitespace().next() == Some(op))
                .count(),
            count,
            "{op}: {stdout}"
        );
    }
    // op, size (two words), qd, MB/s, IOPS, p50, p99, ratio, range,
    // shaped ratio, range, w/file ratio, MB/s range.
    let table: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.split_whitespace().collect())
        .collect();
    let range = |text: &str| -> (f64, f64) {
        let (min, max) = text.split_once('-').expect("a range");
        (min.parse().expect("min"), max.parse().expect("max"))
    };
    for (i, (row, columns)) in rows.iter().zip(&table).enumerate() {
        assert_eq!(columns.len(), 14, "{row}");
        let throughput: f64 = columns[4].parse().expect("MB/s");
        assert!(throughput > 0.0, "{row}");
        let (low, high) = range(columns[13]);
        assert!(
            low <= throughput.round() + 1.0 && throughput.round() <= high + 1.0,
            "{row}"
        );
        match columns[0] {
            "memcpy" | "shape_rd" | "shape_wr" | "file_rd" | "file_wr" | "fbat_rd" => {
                // Every baseline runs at its cell's depth (memcpy: that
                // many request buffers in turn).
                assert_ne!(columns[3], "-", "a baseline has a queue depth: {row}");
                assert_eq!(columns[8..13], ["-"; 5], "a baseline has no ratio: {row}");
            }
            _ => {
                // Right after its cell's baselines, same size (a read at
                // depth 2 with the file: the batched loop last).
                let extra = usize::from(table[i - 1][0] == "fbat_rd");
                if extra == 1 {
                    assert_eq!((columns[0], columns[3]), ("read", "2"), "{stdout}");
                    assert_eq!(table[i - 1][1..4], columns[1..4], "{stdout}");
                }
                let first = i + 1 - per_cell - extra;
                let (plain, shaped) = (&table[first], &table[first + 1]);
                if file {
                    let expected = if columns[0].starts_with("read") {
                        "file_rd"
                    } else {
                        "file_wr"
                    };
                    assert_eq!(table[i - 1 - extra][0], expected, "{stdout}");
                    let ratio: f64 = columns[12].parse().expect("w/file ratio");
                    assert!(ratio >= 0.0, "{row}");
                } else {
                    assert_eq!(columns[12], "-", "no file-backed baseline: {row}");
                }
                assert_eq!(plain[0], "memcpy", "{stdout}");
                let expected_shape = if columns[0].starts_with("read") {
                    "shape_rd"
                } else {
                    "shape_wr"
                };
                assert_eq!(shaped[0], expected_shape, "{stdout}");
                assert_eq!(
                    (&plain[1..4], &shaped[1..4]),
                    (&columns[1..4], &columns[1..4])
                );
                for (median, spread) in [(8, 9), (10, 11)] {
                    let ratio: f64 = columns[median].parse().expect("ratio");
                    let (min, max) = range(columns[spread]);
                    // Printed to 3 places: a ratio below 0.0005 (a
                    // starved run on a loaded machine) shows as 0.000.
                    assert!(
                        ratio >= 0.0 && min - 0.005 <= ratio && ratio <= max + 0.005,
                        "{row}"
                    );
                }
            }
        }
    }
}

#[test]
fn bench_with_one_run_reports_the_plain_ratios_of_that_run() {
    let out = bench_quick(&["--repeat", "1", "--ops", "read,write"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .skip(2)
        .map(|r| r.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2 * 2 * 2 * 3, "{stdout}");
    for cell in rows.chunks(3) {
        let mbps = |row: &[&str]| -> f64 { row[4].parse().expect("MB/s") };
        let rdio = &cell[2];
        for (baseline, column) in [(&cell[0], 8), (&cell[1], 10)] {
            // One run: the ratio is this row's MB/s over its baseline's
            // (both printed rounded, hence the tolerance), and its range
            // is that one value.
            let ratio: f64 = rdio[column].parse().expect("ratio");
            let expected = mbps(rdio) / mbps(baseline);
            assert!(
                (ratio - expected).abs() <= 0.0006 + expected * 0.01,
                "ratio {ratio}, expected {expected}: {stdout}"
            );
            let (min, max) = rdio[column + 1].split_once('-').expect("a range");
            for bound in [min, max] {
                let bound: f64 = bound.parse().expect("a bound");
                // Printed to 2 places, the ratio to 3.
                assert!((bound - ratio).abs() <= 0.0051, "{stdout}");
            }
        }
    }
}

#[test]
fn bench_measures_only_the_ops_asked_for() {
    let out = bench_quick(&["--ops", "readv,read,readv"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let ops: Vec<&str> = stdout
        .lines()
        .skip(2)
        .filter_map(|row| row.split_whitespace().next())
        .filter(|op| !["memcpy", "shape_rd", "shape_wr"].contains(op))
        .collect();
    // In the order given, each once: 2 sizes x 2 depths.
    let expected: Vec<&str> = ["readv"; 4].into_iter().chain(["read"; 4]).collect();
    assert_eq!(ops, expected, "{stdout}");
}

fn bench_quick(extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "bench",
        "--sizes",
        "4K,8K",
        "--queue-depths",
        "1,2",
        "--bytes",
        "64K",
    ];
    args.extend_from_slice(extra);
    rdio(&args)
}

#[test]
fn bench_writes_csv_and_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bench.csv");
    let plot = dir.path().join("bench.png");
    let out = bench_quick(&[
        "--csv",
        csv.to_str().expect("utf-8"),
        "--plot",
        plot.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = fs::read_to_string(&csv).expect("csv written");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("transport,op,kind,size_bytes,queue_depth,mb_per_s"));
    assert!(lines[0].ends_with(
        "baseline,ratio,runs,mb_per_s_min,mb_per_s_max,ratio_min,ratio_max,\
         shaped_baseline,shaped_ratio,shaped_ratio_min,shaped_ratio_max,\
         file_baseline,file_ratio,file_ratio_min,file_ratio_max"
    ));
    // Same rows as the table: 16 rdio rows, each with a memcpy and a
    // protocol-shaped baseline.
    assert_eq!(lines.len(), 1 + 16 * 3, "{text}");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 24, "{line}");
        assert_eq!(fields[0], "loopback");
        assert_eq!(fields[11], "3", "three runs by default: {line}");
        let number = |i: usize| -> f64 { fields[i].parse().expect(line) };
        let mbps = number(5);
        assert!(mbps > 0.0, "{line}");
        assert!(number(12) <= mbps && mbps <= number(13), "{line}");
        match fields[2] {
            "baseline" => {
                assert!(
                    ["memcpy", "shape_rd", "shape_wr"].contains(&fields[1]),
                    "{line}"
                );
                assert!(fields[9..11].iter().all(|f| f.is_empty()), "{line}");
                assert!(fields[14..].iter().all(|f| f.is_empty()), "{line}");
            }
            "rdio" => {
                assert_eq!(fields[9], "memcpy", "{line}");
                assert!(["shape_rd", "shape_wr"].contains(&fields[16]), "{line}");
                assert!(fields[20..].iter().all(|f| f.is_empty()), "{line}");
                for (median, min, max) in [(10, 14, 15), (17, 18, 19)] {
                    assert!(number(median) >= 0.0, "{line}");
                    assert!(number(min) <= number(median), "{line}");
                    assert!(number(median) <= number(max), "{line}");
                }
            }
            other => panic!("kind {other}: {line}"),
        }
    }
    let png = fs::read(&plot).expect("plot written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name != "bench.csv" && name != "bench.png")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn bench_output_paths_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dir").join("bench.csv");
    let plot = dir.path().join("bench.png");
    let not_a_font = dir.path().join("font.ttf");
    fs::write(&not_a_font, b"not a font").expect("write");
    let cases: [(Vec<&str>, Option<&str>, &str); 3] = [
        (
            vec!["--csv", missing.to_str().expect("utf-8")],
            None,
            "rdio: error: cannot write --csv",
        ),
        (
            vec!["--plot", dir.path().to_str().expect("utf-8")],
            None,
            "is a directory",
        ),
        (
            vec!["--plot", plot.to_str().expect("utf-8")],
            Some(not_a_font.to_str().expect("utf-8")),
            "is not a readable TrueType font",
        ),
    ];
    for (extra, font, expected) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rdio"));
        command.args([
            "bench",
            "--sizes",
            "4K",
            "--queue-depths",
            "1",
            "--bytes",
            "16K",
        ]);
        command.args(&extra);
        if let Some(font) = font {
            command.env("RDIO_PLOT_FONT", font);
        }
        let out = command.output().expect("run rdio");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("rdio: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    // Nothing under a final name, no temporary files.
    let left: Vec<_> = fs::read_dir(dir.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|name| name != "font.ttf")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
