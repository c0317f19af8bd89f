//! Conflicts are visible and resolvable: `filesync conflicts` lists each conflict copy with
//! both versions' device and time, and `conflicts resolve --keep mine|theirs|both` settles one
//! on every computer.

mod support;

use support::*;

#[test]
fn conflicts_are_listed_and_resolved_mine_theirs_or_both() {
    let server = TestServer::start();
    let a = TestClient::register(&server, "ann", "laptop");
    let b = TestClient::login(&server, "ann", "desktop");
    for f in ["mine.txt", "theirs.txt", "both.txt"] {
        a.write(f, "original");
    }
    a.sync();
    b.sync();
    for f in ["mine.txt", "theirs.txt", "both.txt"] {
        a.write(f, format!("laptop's {f}"));
        b.write(f, format!("desktop's {f}"));
    }
    a.sync();
    b.sync(); // desktop loses the race: its versions become conflict copies
    a.sync();
    assert_eq!(a.tree(), b.tree());

    let json = b.ok(&["conflicts", "list", "--json"], None);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{json}");
    for c in list {
        assert_eq!(c["copy_device"], "desktop", "{c}");
        assert_eq!(c["original_device"], "laptop", "{c}");
        assert!(c["copy_time"].as_str().unwrap().ends_with("UTC"));
        assert!(c["original_time"].as_i64().unwrap() > 1_700_000_000, "Unix seconds: {c}");
        assert_eq!((c["copy_here"].as_bool(), c["mine"].as_str()), (Some(true), Some("copy")), "{c}");
    }
    let text = b.ok(&["conflicts"], None);
    assert!(text.contains("version from desktop") && text.contains("version from laptop"), "{text}");

    // On the desktop, "mine" is the copy; on the laptop, the original.
    b.ok(&["conflicts", "resolve", b.path("mine.txt").to_str().unwrap(), "--keep", "mine"], None);
    b.ok(&["conflicts", "resolve", b.path("theirs.txt").to_str().unwrap(), "--keep", "theirs"], None);
    let both_copy = list.iter().find(|c| c["original"] == "both.txt").unwrap()["copy"].as_str().unwrap().to_string();
    b.ok(&["conflicts", "resolve", b.path(&both_copy).to_str().unwrap(), "--keep", "both"], None);
    a.sync();
    for c in [&a, &b] {
        assert_eq!(c.read("mine.txt"), b"desktop's mine.txt", "{}", c.name);
        assert_eq!(c.read("theirs.txt"), b"laptop's theirs.txt", "{}", c.name);
        assert_eq!(c.read("both.txt"), b"laptop's both.txt", "{}", c.name);
        assert_eq!(c.read("both (desktop's version).txt"), b"desktop's both.txt", "{}", c.name);
        assert!(conflict_copies(&c.tree()).is_empty(), "{}: {:?}", c.name, c.tree());
    }
    assert_eq!(a.ok(&["conflicts"], None).trim(), "No conflicts.");
    // Asking about a file without conflicts says so.
    let err = a.fails(&["conflicts", "resolve", a.path("mine.txt").to_str().unwrap(), "--keep", "mine"], None);
    assert!(err.contains("not a conflict copy"), "{err}");
}
