//! FileSync agent: scans and watches local folders, keeps the local sync state, and executes sync plans.
