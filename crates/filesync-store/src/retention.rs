//! How long the server keeps old versions: the retention policy and the thinning decision, as a
//! pure function of version timestamps and the current time (no clock, no database), so that
//! every store prunes exactly alike and the rule can be tested exhaustively.
//!
//! The schedule, like Dropbox's and Seafile's: a version that was overwritten or deleted is
//! kept whole for a day, then thinned to at most one version per hour for a week, then to at
//! most one per day until the retention period (default 30 days) ends, after which it is
//! dropped. Within an hour (or a day) the version kept is the newest one created in it — the
//! state the file had at the end of that hour. Buckets are aligned to UTC hours and days, so
//! running the pruner again at almost the same time decides the same.
//!
//! What this module does not decide: it is only ever given *non-current*, *live* versions.
//! A path's current version (live or a deletion) is never a candidate, history tombstones
//! are kept until the retention period ends, and the store additionally pins the last live
//! version of a deleted path for as long as it is within retention (that is what the trash
//! restores).

use std::collections::HashMap;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// How long history is kept, and how it is thinned on the way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Versions superseded longer ago than this are dropped (seconds).
    pub retention_secs: i64,
    /// Versions superseded more recently than this are all kept (seconds).
    pub keep_all_secs: i64,
    /// Until this age, at most one version per hour is kept; after it, one per day (seconds).
    pub hourly_secs: i64,
}

impl RetentionPolicy {
    /// The default schedule with a retention period of `days` days: everything for 24 hours,
    /// one per hour for 7 days, one per day until `days`.
    pub fn days(days: u32) -> RetentionPolicy {
        RetentionPolicy { retention_secs: i64::from(days) * DAY, keep_all_secs: DAY, hourly_secs: 7 * DAY }
    }
}

impl RetentionPolicy {
    /// Every version kept whole for `secs` seconds after it was replaced, then dropped, with no
    /// thinning on the way: for soak tests that want pruning to delete while they run.
    pub fn seconds(secs: u32) -> RetentionPolicy {
        let secs = i64::from(secs);
        RetentionPolicy { retention_secs: secs, keep_all_secs: secs, hourly_secs: secs }
    }
}

impl std::fmt::Display for RetentionPolicy {
    /// How the server's log says it: "30 days, thinned after a day and a week", or "20 s,
    /// unthinned" for a policy in seconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.retention_secs % DAY == 0 && self.keep_all_secs == DAY && self.hourly_secs == 7 * DAY {
            write!(f, "{} days, thinned after a day and a week", self.retention_secs / DAY)
        } else if self.keep_all_secs == self.retention_secs {
            write!(f, "{} s, unthinned", self.retention_secs)
        } else {
            write!(
                f,
                "{} s, every version for {} s, one an hour until {} s",
                self.retention_secs, self.keep_all_secs, self.hourly_secs
            )
        }
    }
}

impl Default for RetentionPolicy {
    /// 30 days.
    fn default() -> RetentionPolicy {
        RetentionPolicy::days(30)
    }
}

/// One non-current live version of a path, as the thinning rule sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OldVersion {
    /// When the version was committed (Unix seconds): decides its hour or day bucket.
    pub created_at: i64,
    /// When a later version replaced it (Unix seconds): its age counts from here, so a file
    /// written years ago and overwritten today is fresh history.
    pub superseded_at: i64,
}

/// Which age band a version is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Band {
    All,
    Hourly,
    Daily,
    Expired,
}

fn band(policy: &RetentionPolicy, now: i64, v: &OldVersion) -> Band {
    let age = now.saturating_sub(v.superseded_at);
    if age >= policy.retention_secs {
        Band::Expired
    } else if age < policy.keep_all_secs {
        Band::All
    } else if age < policy.hourly_secs {
        Band::Hourly
    } else {
        Band::Daily
    }
}

/// Decides, for each of `versions` (the non-current live versions of ONE path, in any order),
/// whether to keep it at time `now`. The answer has one flag per version, in the same order.
///
/// Guarantees (tested below): a version superseded less than `keep_all_secs` ago (or in the
/// future, after a clock step) is kept; one superseded `retention_secs` ago or more is dropped;
/// among those in the hourly band at most one per UTC hour of creation is kept and in the daily
/// band at most one per UTC day, always the newest of its bucket; so the newest version within
/// retention is always kept; and deciding again on the kept versions keeps them all.
pub fn keep(policy: &RetentionPolicy, now: i64, versions: &[OldVersion]) -> Vec<bool> {
    // (band, bucket) → index of the newest version in it (ties: the later in the input).
    let mut newest: HashMap<(Band, i64), usize> = HashMap::new();
    let mut out = vec![false; versions.len()];
    for (i, v) in versions.iter().enumerate() {
        let b = band(policy, now, v);
        let width = match b {
            Band::All => {
                out[i] = true;
                continue;
            }
            Band::Expired => continue,
            Band::Hourly => HOUR,
            Band::Daily => DAY,
        };
        let slot = newest.entry((b, v.created_at.div_euclid(width))).or_insert(i);
        if versions[*slot].created_at <= v.created_at {
            *slot = i;
        }
    }
    for i in newest.into_values() {
        out[i] = true;
    }
    out
}

/// One stored version of a path, as the pruner sees it (no content needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathVersion {
    pub rev: u64,
    /// False for a tombstone (a deletion).
    pub live: bool,
    pub committed_at: i64,
}

/// The revs to drop from the history of one path at time `now`.
///
/// `versions` are all stored versions of the path, ascending by rev; `current_rev` is its
/// current version. Never dropped: the current version and the highest rev (whatever
/// `current_rev` says), and, when the current version is a deletion, the last live version
/// while it is within retention (that is what the trash restores). History tombstones are
/// kept until retention ends; live versions are thinned by [`keep`]. A version's age counts
/// from the commit of the next stored version.
pub fn prune_path(policy: &RetentionPolicy, now: i64, versions: &[PathVersion], current_rev: u64) -> Vec<u64> {
    let Some(newest) = versions.iter().map(|v| v.rev).max() else { return Vec::new() };
    let protected = |v: &PathVersion| v.rev == current_rev || v.rev == newest;
    // Each old version with the time the next one replaced it.
    let old: Vec<(PathVersion, i64)> =
        versions.windows(2).map(|w| (w[0], w[1].committed_at)).filter(|(v, _)| !protected(v)).collect();
    let live: Vec<&(PathVersion, i64)> = old.iter().filter(|(v, _)| v.live).collect();
    let thin: Vec<OldVersion> =
        live.iter().map(|(v, s)| OldVersion { created_at: v.committed_at, superseded_at: *s }).collect();
    let mut keep_live = keep(policy, now, &thin);
    let current_is_deletion = versions.iter().any(|v| v.rev == current_rev && !v.live);
    if current_is_deletion && let Some((i, (_, superseded))) = live.iter().enumerate().max_by_key(|(_, (v, _))| v.rev) {
        // Pinned: the trash entry of the deleted path. `keep` already keeps the newest
        // version within retention; this says so where a reader looks for it.
        if now.saturating_sub(*superseded) < policy.retention_secs {
            keep_live[i] = true;
        }
    }
    let mut drop: Vec<u64> = live.iter().zip(keep_live).filter(|(_, k)| !k).map(|((v, _), _)| v.rev).collect();
    drop.extend(
        old.iter().filter(|(v, s)| !v.live && now.saturating_sub(*s) >= policy.retention_secs).map(|(v, _)| v.rev),
    );
    drop.sort_unstable();
    drop
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const NOW: i64 = 1_800_000_000 - 1_800_000_000 % DAY + 12 * HOUR; // noon UTC

    fn v(created_at: i64, superseded_at: i64) -> OldVersion {
        OldVersion { created_at, superseded_at }
    }

    /// A version created and superseded `age` seconds before NOW.
    fn aged(age: i64) -> OldVersion {
        v(NOW - age, NOW - age)
    }

    fn kept(policy: &RetentionPolicy, now: i64, vs: &[OldVersion]) -> Vec<OldVersion> {
        vs.iter().zip(keep(policy, now, vs)).filter(|(_, k)| *k).map(|(v, _)| *v).collect()
    }

    #[test]
    fn default_is_thirty_days_with_the_day_week_schedule() {
        let p = RetentionPolicy::default();
        assert_eq!(p, RetentionPolicy::days(30));
        assert_eq!((p.retention_secs, p.keep_all_secs, p.hourly_secs), (30 * DAY, DAY, 7 * DAY));
    }

    #[test]
    fn the_log_says_the_policy_in_words() {
        assert_eq!(RetentionPolicy::days(30).to_string(), "30 days, thinned after a day and a week");
        assert_eq!(RetentionPolicy::seconds(20).to_string(), "20 s, unthinned");
        let odd = RetentionPolicy { retention_secs: 90, keep_all_secs: 10, hourly_secs: 50 };
        assert_eq!(odd.to_string(), "90 s, every version for 10 s, one an hour until 50 s");
    }

    #[test]
    fn nothing_to_decide_keeps_nothing() {
        assert_eq!(keep(&RetentionPolicy::default(), NOW, &[]), Vec::<bool>::new());
    }

    #[test]
    fn everything_superseded_within_a_day_is_kept() {
        let p = RetentionPolicy::default();
        // 500 versions within the last day, many in the same minute.
        let vs: Vec<_> = (0..500).map(|i| aged(i * 170)).collect();
        assert!(keep(&p, NOW, &vs).iter().all(|k| *k));
        assert_eq!(keep(&p, NOW, &[aged(DAY - 1)]), vec![true], "one second before the day ends");
    }

    #[test]
    fn age_counts_from_when_a_version_was_replaced_not_created() {
        let p = RetentionPolicy::default();
        let two_years_old_overwritten_now = v(NOW - 730 * DAY, NOW - 60);
        assert_eq!(keep(&p, NOW, &[two_years_old_overwritten_now]), vec![true]);
    }

    #[test]
    fn a_version_from_the_future_is_kept() {
        // The server clock stepped back: negative ages are young, not expired.
        let p = RetentionPolicy::default();
        assert_eq!(keep(&p, NOW, &[v(NOW + 5000, NOW + 9000), v(NOW + 100, NOW + 200)]), vec![true, true]);
    }

    #[test]
    fn retention_boundary_is_exclusive() {
        let p = RetentionPolicy::default();
        assert_eq!(keep(&p, NOW, &[aged(30 * DAY - 1)]), vec![true]);
        assert_eq!(keep(&p, NOW, &[aged(30 * DAY)]), vec![false]);
        assert_eq!(keep(&p, NOW, &[aged(400 * DAY)]), vec![false]);
    }

    #[test]
    fn hourly_band_keeps_the_newest_per_utc_hour() {
        let p = RetentionPolicy::default();
        // Two days ago, hour-aligned: four versions in one hour, one in the next hour.
        let base = NOW - 2 * DAY - (NOW - 2 * DAY).rem_euclid(HOUR);
        let vs = [v(base + 10, base + 20), v(base + 3599, base + 3599), v(base + 100, base + 200), v(base, base + 5)];
        let next = v(base + HOUR, base + HOUR + 1);
        let all: Vec<_> = vs.iter().copied().chain([next]).collect();
        assert_eq!(keep(&p, NOW, &all), vec![false, true, false, false, true]);
    }

    #[test]
    fn daily_band_keeps_the_newest_per_utc_day() {
        let p = RetentionPolicy::default();
        let day = (NOW - 10 * DAY).div_euclid(DAY) * DAY; // midnight UTC ten days ago
        let vs = [v(day + HOUR, day + 2 * HOUR), v(day + 23 * HOUR, day + 23 * HOUR), v(day + 5 * HOUR, day + DAY + 1)];
        let other_day = v(day - 1, day - 1);
        let all: Vec<_> = vs.iter().copied().chain([other_day]).collect();
        assert_eq!(keep(&p, NOW, &all), vec![false, true, false, true]);
    }

    #[test]
    fn ties_keep_exactly_one() {
        let p = RetentionPolicy::default();
        let t = NOW - 3 * DAY;
        assert_eq!(keep(&p, NOW, &[v(t, t), v(t, t), v(t, t)]).iter().filter(|k| **k).count(), 1);
    }

    #[test]
    fn bands_do_not_share_buckets() {
        // The same creation hour, but one copy superseded long ago (daily band) and one
        // recently (all band): both kept, each by its band's rule.
        let p = RetentionPolicy::default();
        let created = NOW - 20 * DAY;
        let vs = [v(created, created + 10), v(created + 1, NOW - 10)];
        assert_eq!(keep(&p, NOW, &vs), vec![true, true]);
    }

    #[test]
    fn a_short_retention_caps_every_band() {
        let p = RetentionPolicy::days(1);
        assert_eq!(
            keep(&p, NOW, &[aged(HOUR), aged(DAY - 1), aged(DAY), aged(3 * DAY)]),
            vec![true, true, false, false]
        );
    }

    /// A deterministic pseudo-random history: versions written at random moments over `span`
    /// seconds, each superseded by the next.
    fn history(seed: u64, n: usize, span: i64) -> Vec<OldVersion> {
        let mut x = seed | 1;
        let mut times: Vec<i64> = (0..=n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                NOW - (x % span as u64) as i64
            })
            .collect();
        times.sort_unstable();
        times.windows(2).map(|w| v(w[0], w[1])).collect()
    }

    #[test]
    fn random_histories_respect_every_guarantee() {
        let policies = [1, 3, 30, 365].map(RetentionPolicy::days);
        for policy in policies {
            for seed in 1..200u64 {
                let n = (seed as usize * 7) % 400 + 1;
                let span = [HOUR, DAY, 10 * DAY, 60 * DAY, 400 * DAY][seed as usize % 5];
                let vs = history(seed, n, span);
                let flags = keep(&policy, NOW, &vs);
                let k = kept(&policy, NOW, &vs);
                let mut hours = BTreeSet::new();
                let mut days = BTreeSet::new();
                for (v, keep) in vs.iter().zip(&flags) {
                    let age = NOW - v.superseded_at;
                    if age >= policy.retention_secs {
                        assert!(!keep, "expired version kept: {v:?}");
                    } else if age < policy.keep_all_secs {
                        assert!(keep, "young version dropped: {v:?}");
                    } else if *keep && age < policy.hourly_secs {
                        assert!(hours.insert(v.created_at.div_euclid(HOUR)), "two kept in one hour: {v:?}");
                    } else if *keep {
                        assert!(days.insert(v.created_at.div_euclid(DAY)), "two kept in one day: {v:?}");
                    }
                }
                // The newest version within retention survives (the trash relies on it).
                if let Some(newest) = vs.iter().rfind(|v| NOW - v.superseded_at < policy.retention_secs) {
                    assert!(k.contains(newest), "the newest version within retention must be kept");
                }
                // Idempotent: pruning what was kept keeps it all.
                assert!(keep(&policy, NOW, &k).iter().all(|x| *x), "a second run must drop nothing");
                // Later runs never bring anything back.
                let later = kept(&policy, NOW + 5 * HOUR, &k);
                assert!(later.iter().all(|v| k.contains(v)));
            }
        }
    }

    #[test]
    fn a_file_saved_every_minute_for_forty_days_keeps_a_bounded_history() {
        let p = RetentionPolicy::default();
        let start = NOW - 40 * DAY;
        let vs: Vec<_> = (0..40 * 24 * 60).map(|m| v(start + m * 60, start + (m + 1) * 60)).collect();
        let k = kept(&p, NOW, &vs);
        // 1 day of minutes + 6 days of hours + 23 days of days (± the partial buckets at the edges).
        let expected = 24 * 60 + 6 * 24 + 23;
        assert!((expected - 3..=expected + 3).contains(&(k.len() as i64)), "kept {} versions", k.len());
    }

    fn pv(rev: u64, live: bool, committed_at: i64) -> PathVersion {
        PathVersion { rev, live, committed_at }
    }

    #[test]
    fn the_current_version_is_never_dropped_however_old() {
        let p = RetentionPolicy::default();
        let ancient = NOW - 1000 * DAY;
        assert_eq!(prune_path(&p, NOW, &[pv(1, true, ancient)], 1), Vec::<u64>::new());
        assert_eq!(prune_path(&p, NOW, &[pv(1, true, ancient), pv(2, false, ancient + 1)], 2), vec![1]);
        assert_eq!(prune_path(&p, NOW, &[], 0), Vec::<u64>::new());
    }

    #[test]
    fn the_highest_rev_is_protected_even_if_current_disagrees() {
        let p = RetentionPolicy::days(1);
        let old = NOW - 100 * DAY;
        let vs = [pv(1, true, old), pv(2, true, old + 1), pv(3, true, old + 2)];
        assert_eq!(prune_path(&p, NOW, &vs, 2), vec![1], "rev 3 is the newest, rev 2 claims to be current");
    }

    #[test]
    fn the_last_live_version_of_a_deleted_file_stays_for_the_retention_period() {
        let p = RetentionPolicy::default();
        for deleted_ago in [HOUR, 3 * DAY, 29 * DAY, 30 * DAY - 1] {
            let deleted = NOW - deleted_ago;
            let vs = [pv(1, true, deleted - 2 * DAY), pv(2, true, deleted - 60), pv(3, false, deleted)];
            let dropped = prune_path(&p, NOW, &vs, 3);
            assert!(!dropped.contains(&2), "deleted {deleted_ago} s ago: the trash entry must stay");
            assert!(!dropped.contains(&3), "the tombstone is current");
        }
        let deleted = NOW - 30 * DAY;
        let vs = [pv(1, true, deleted - 60), pv(2, false, deleted)];
        assert_eq!(prune_path(&p, NOW, &vs, 2), vec![1], "after retention the trash entry goes");
    }

    #[test]
    fn history_tombstones_are_kept_until_retention_ends() {
        let p = RetentionPolicy::default();
        // Created, deleted, re-created 3 days later, edited today.
        let t = NOW - 10 * DAY;
        let vs = [pv(1, true, t), pv(2, false, t + 60), pv(3, true, t + 3 * DAY), pv(4, true, NOW - 60)];
        assert_eq!(prune_path(&p, NOW, &vs, 4), Vec::<u64>::new());
        // Deleted 45 days ago, re-created 31 days ago, edited today: the deletion has left
        // retention along with the version before it.
        let vs = [
            pv(1, true, NOW - 50 * DAY),
            pv(2, false, NOW - 45 * DAY),
            pv(3, true, NOW - 31 * DAY),
            pv(4, true, NOW - 60),
        ];
        assert_eq!(prune_path(&p, NOW, &vs, 4), vec![1, 2]);
    }

    #[test]
    fn a_path_edited_every_ten_minutes_is_thinned_by_age() {
        let p = RetentionPolicy::default();
        let start = NOW - 3 * DAY;
        let vs: Vec<_> = (0..3 * 24 * 6).map(|i| pv(i as u64 + 1, true, start + i * 600)).collect();
        let current = vs.len() as u64;
        let dropped: BTreeSet<u64> = prune_path(&p, NOW, &vs, current).into_iter().collect();
        let kept: Vec<&PathVersion> = vs.iter().filter(|v| !dropped.contains(&v.rev)).collect();
        // The last day whole (6 an hour), the two days before one per hour.
        let young = kept.iter().filter(|v| NOW - v.committed_at <= DAY).count();
        let old = kept.len() - young;
        assert!((143..=145).contains(&young), "{young} versions of the last day");
        assert!((47..=49).contains(&old), "{old} older versions, one per hour");
        assert!(!dropped.contains(&current));
    }
}
