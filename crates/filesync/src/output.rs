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

/// A time as this computer's clock shows it (its time zone, from `TZ` or the system's setting).
pub fn human_time(unix: i64) -> String {
    time_in(unix, &chrono::Local)
}

/// `YYYY-MM-DD HH:MM:SS` in the time zone `tz`; "never" for no time.
fn time_in<Tz: chrono::TimeZone>(unix: i64, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    if unix <= 0 {
        return "never".into();
    }
    match chrono::DateTime::from_timestamp(unix, 0) {
        Some(t) => t.with_timezone(tz).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "never".into(),
    }
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
        assert_eq!(time_in(1_795_561_265, &chrono::Utc), "2026-11-24 23:01:05");
        // Local time, never UTC: an hour east of Greenwich is an hour later.
        let cet = chrono::FixedOffset::east_opt(3600).unwrap();
        assert_eq!(time_in(1_795_561_265, &cet), "2026-11-25 00:01:05");
    }
}
