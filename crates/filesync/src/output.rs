//! Formatting helpers for people: sizes, times, tables.

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// Local time is not knowable without the tz database; show UTC, explicitly.
pub fn human_time(unix: i64) -> String {
    if unix <= 0 {
        return "never".into();
    }
    let t = filesync_core::conflict::CivilTime::from_unix(unix);
    format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(human_time(0), "never");
        assert_eq!(human_time(1_795_561_265), "2026-11-24 23:01:05 UTC");
    }
}
