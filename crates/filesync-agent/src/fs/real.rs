//! The real filesystem, rooted at a synced folder.
