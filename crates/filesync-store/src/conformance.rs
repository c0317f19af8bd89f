//! The conformance suite every [`MetaStore`] and [`ChunkStore`] implementation must pass,
//! written against the traits only so that SQLite, PostgreSQL, local-disk and S3 backends are
//! held to the same behaviour.
//!
//! ```no_run
//! # async fn example() {
//! use filesync_store::{conformance, sqlite::SqliteMeta};
//! conformance::run_meta_suite(&SqliteMeta::memory().await.unwrap()).await;
//! # }
//! ```
//!
//! Each check is a function named after what it proves; it panics with a message saying what
//! went wrong, and the runner prints the check's name first (visible on failure). The suites
//! expect a FRESH store: they create users and folders of their own (`conformance-…` names,
//! user ids from 1_000_001 for chunk stores) and assume nothing else is there.

use crate::{ChunkStore, MetaStore};

mod chunks;
mod history;
mod locks;
mod meta;
mod operators;

/// Runs every metadata check against `store`, which must be empty.
pub async fn run_meta_suite<S: MetaStore>(store: &S) {
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("meta store conformance: {}", stringify!($check));
            meta::$check(store).await;
        )*};
    }
    run!(
        users_are_created_and_found_by_name_and_id,
        user_names_are_unique,
        password_hash_can_be_replaced,
        devices_are_found_by_token_hash,
        devices_are_revoked_renamed_and_touched,
        revoked_devices_are_reissued_or_removed_and_live_ones_never,
        devices_are_scoped_to_their_user,
        folders_are_created_on_first_use_only,
        folders_are_isolated_between_users,
        folders_have_independent_seqs,
        commit_to_unknown_folder_is_folder_not_found,
        commit_of_new_file_gets_next_rev,
        commit_based_on_current_rev_is_applied,
        commit_based_on_stale_rev_conflicts_with_current,
        creating_an_existing_path_from_scratch_conflicts,
        edit_beats_concurrent_delete,
        deleting_a_deleted_or_unknown_path_changes_nothing,
        identical_proposal_is_already_current_without_new_rev,
        empty_commit_changes_nothing,
        batch_sees_its_own_earlier_changes,
        a_file_where_a_directory_has_live_entries_conflicts,
        nothing_is_put_below_a_live_file,
        missing_chunks_roll_back_the_whole_batch,
        conflicting_changes_need_no_chunks,
        metadata_round_trips_exactly,
        changes_since_orders_by_rev_and_limits,
        changes_since_returns_latest_version_and_tombstones,
        versions_are_newest_first,
        chunk_presence_is_per_user,
        forgotten_chunks_are_missing_until_added_again,
        chunk_queries_handle_thousands_of_hashes,
        large_batch_commits_in_order,
    );
    macro_rules! run_operators {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("meta store conformance: {}", stringify!($check));
            operators::$check(store).await;
        )*};
    }
    run_operators!(
        new_users_are_enabled_without_a_quota,
        users_are_disabled_and_enabled_again,
        quotas_are_set_and_removed,
        stored_bytes_count_each_chunk_once_per_user,
        other_devices_are_revoked_and_this_one_kept,
        invites_are_used_once_and_expire,
    );
    macro_rules! run_locks {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("meta store conformance: {}", stringify!($check));
            locks::$check(store).await;
        )*};
    }
    run_locks!(a_sweep_waits_for_uploads_and_uploads_for_a_sweep, the_maintenance_lease_has_one_holder);
    macro_rules! run_history {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("meta store conformance: {}", stringify!($check));
            history::$check(store).await;
        )*};
    }
    run_history!(
        users_are_listed,
        version_is_found_by_rev_while_stored,
        version_history_pages_newest_first,
        trash_lists_deleted_paths_with_their_last_live_version,
        restore_of_an_old_version_is_a_new_version_for_every_device,
        restore_brings_a_deleted_path_back,
        restore_to_a_free_path_copies_the_version,
        restore_onto_another_live_path_is_refused,
        restore_of_the_current_content_changes_nothing,
        restore_recreates_deleted_directories_and_respects_files_in_the_way,
        a_file_is_not_restored_where_entries_live_below_it,
        restore_of_a_missing_version_is_version_not_found,
        restore_is_scoped_to_the_user,
        usage_counts_current_files_history_and_stored_chunks,
        gc_marks_only_unreferenced_chunks_added_before_the_cutoff,
        gc_sweep_spares_chunks_referenced_since_the_mark,
        // Pruning is global and uses clocks far ahead: these run last.
        prune_thins_history_and_keeps_current_versions_and_the_trash,
        pruned_versions_release_their_chunks,
    );
}

/// Runs every chunk-store check against `store`, which must be empty.
pub async fn run_chunk_suite<C: ChunkStore>(store: &C) {
    macro_rules! run {
        ($($check:ident),* $(,)?) => {$(
            eprintln!("chunk store conformance: {}", stringify!($check));
            chunks::$check(store).await;
        )*};
    }
    run!(
        put_chunks_are_returned_by_get,
        absent_chunk_is_none,
        put_is_idempotent,
        delete_removes_and_is_idempotent,
        chunks_are_separate_per_user,
        empty_chunk_round_trips,
        batches_of_many_chunks_round_trip,
    );
}
