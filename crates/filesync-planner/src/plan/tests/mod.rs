//! Tests of the planner: named scenarios, an exhaustive table of single-path cases, and
//! randomized folder states run through an in-memory executor until both sides agree.

mod directions;
mod exhaustive;
mod props;
mod scenarios;
mod sim;

/// Every source file of this crate opens with a `//!` comment saying what it is for.
#[test]
fn every_source_file_starts_with_a_doc_comment() {
    fn visit(dir: &std::path::Path, missing: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, missing);
            } else if path.extension().is_some_and(|e| e == "rs")
                && !std::fs::read_to_string(&path).unwrap().starts_with("//!")
            {
                missing.push(path.display().to_string());
            }
        }
    }
    let mut missing = Vec::new();
    visit(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut missing);
    assert!(missing.is_empty(), "files without a //! doc comment: {missing:?}");
}
