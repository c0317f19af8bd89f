//! Windows path rules, end to end under Wine: files on the server whose names Windows cannot
//! hold (`aux.txt`, `a:b`, a name ending in a dot) are reported and skipped on the Windows
//! client and stay intact on Linux and on the server; two names that differ only in letter
//! case never overwrite each other on the Windows client. Built with `--features wine-tests`;
//! run by `scripts/windows-check`.

mod support;
mod wine;

use std::collections::BTreeMap;
use support::{TestClient, TestServer};
use wine::{WinClient, Wine};

/// Skipped path → reason, from a `sync --json` folder report.
fn skipped(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["skipped"]
        .as_array()
        .unwrap_or_else(|| panic!("no skipped list in {report}"))
        .iter()
        .map(|s| (s["path"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string()))
        .collect()
}

/// The files of a Linux-side folder: relative path → contents.
fn files(root: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    support::walk_files(root)
        .into_iter()
        .map(|p| (p.strip_prefix(root).unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn names_windows_cannot_hold_are_skipped_there_and_intact_elsewhere() {
    let server = TestServer::start();
    let linux = TestClient::register(&server, "ann", "linux");
    let forbidden = ["aux.txt", "a:b", "dots.", "sub/CON"];
    for name in forbidden {
        linux.write(name, format!("contents of {name}"));
    }
    linux.write("plain.txt", "plain");
    linux.write("sub/ok.txt", "ok");
    linux.sync();
    let on_linux = files(&linux.dir);

    let wine = Wine::start();
    let windows = WinClient::login(&wine, &server, "ann", "windows");
    let report = windows.sync_report();
    let skipped = skipped(&report);
    for name in forbidden {
        assert!(skipped.contains_key(name), "{name} is reported as skipped: {report}");
    }
    let got = files(&windows.dir);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        ["plain.txt", "sub/ok.txt"],
        "everything else arrived, nothing under a mangled name"
    );

    // An edit on Windows syncs; the skipped files stay intact on Linux and on the server.
    std::fs::write(windows.dir.join("plain.txt"), "edited on Windows").unwrap();
    let report = windows.sync_report();
    assert_eq!(report["errors"].as_array().map(Vec::len), Some(0), "{report}");
    linux.sync();
    let mut expected = on_linux.clone();
    expected.insert("plain.txt".into(), b"edited on Windows".to_vec());
    assert_eq!(files(&linux.dir), expected);
    let fresh = TestClient::login(&server, "ann", "fresh-linux");
    fresh.sync();
    assert_eq!(files(&fresh.dir), expected, "the server still has every file");
}

#[test]
fn names_differing_only_in_case_do_not_overwrite_each_other_on_windows() {
    let server = TestServer::start();
    let linux = TestClient::register(&server, "ann", "linux");
    linux.write("Report.txt", "upper");
    linux.write("report.txt", "lower");
    linux.write("Dir/a.txt", "in Dir");
    linux.write("dir/b.txt", "in dir");
    linux.sync();
    let on_linux = files(&linux.dir);

    let wine = Wine::start();
    let windows = WinClient::login(&wine, &server, "ann", "windows");
    let report = windows.sync_report();
    let skipped = skipped(&report);
    let got = files(&windows.dir);

    // Of each pair exactly one arrived, with its own contents; the other is reported.
    let held: Vec<&String> = got.keys().collect();
    assert_eq!(held.len(), 2, "one file of each clashing pair: {got:?} {report}");
    for (path, contents) in &got {
        assert_eq!(Some(contents), on_linux.get(path), "{path} holds its own contents, not its twin's");
    }
    let twins = |a: &str, b: &str| {
        let (ha, hb) = (got.contains_key(a), got.contains_key(b));
        assert!(ha != hb, "exactly one of {a}, {b} is here: {got:?}");
        let missing = if ha { b } else { a };
        let reported = missing.split('/').next().unwrap();
        assert!(skipped.keys().any(|k| k == missing || k == reported), "{missing} is reported as skipped: {skipped:?}");
    };
    twins("Report.txt", "report.txt");
    twins("Dir/a.txt", "dir/b.txt");

    // A second pass changes nothing, and Linux and the server still have all four.
    let again = windows.sync_report();
    assert_eq!(files(&windows.dir), got, "{again}");
    linux.sync();
    assert_eq!(files(&linux.dir), on_linux);
    let fresh = TestClient::login(&server, "ann", "fresh-linux");
    fresh.sync();
    assert_eq!(files(&fresh.dir), on_linux);
}
