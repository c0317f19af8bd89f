//! The FileSync agent: keeps local folders in sync with the server. It scans and watches
//! folders, remembers what was last synced (the local state database), asks the planner what
//! to do, and executes the plan through the [`fs::Filesystem`] seam and a server connection.
//!
//! This crate refuses to make sync decisions itself (that is `filesync-planner`) and to know
//! the wire format beyond the client crate's API.

pub mod agent;
/// The clock the engine reads (defined in `filesync-core`).
pub use filesync_core::clock;
pub mod config;
pub mod engine;
pub mod filter;
pub mod fs;
pub mod kept;
pub mod live;
pub mod memfs;
pub mod names;
pub mod ops;
pub mod scan;
pub mod state;
pub mod status;
