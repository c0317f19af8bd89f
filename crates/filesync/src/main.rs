//! The `filesync` binary.
fn main() {}
