//! Conflict-copy names: `report (conflicted copy from laptop 2026-11-24 230105).txt`.
//!
//! The time is passed in (seconds since the Unix epoch, UTC): this module never reads a clock.

use crate::RelPath;

/// A UTC calendar time, computed from a Unix timestamp without consulting any clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CivilTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl CivilTime {
    pub fn from_unix(secs: i64) -> CivilTime {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        CivilTime {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
        }
    }
}

/// The marker every conflict copy carries in its name.
pub const CONFLICT_MARKER: &str = " (conflicted copy from ";

/// Builds the conflict-copy path for `path`, made by `device` at `unix_secs`. `attempt` > 0
/// appends a counter so that a name already taken can be avoided.
pub fn conflict_copy_path(path: &RelPath, device: &str, unix_secs: i64, attempt: u32) -> RelPath {
    copy_path(path, device, unix_secs, attempt)
        .or_else(|| copy_path(path, "", unix_secs, attempt))
        .expect("a conflict name without a device name is a valid path")
}

/// [`conflict_copy_path`] with `device` as given, or `None` if the name is not a valid path.
fn copy_path(path: &RelPath, device: &str, unix_secs: i64, attempt: u32) -> Option<RelPath> {
    use unicode_normalization::UnicodeNormalization;
    let t = CivilTime::from_unix(unix_secs);
    // Device names come from other computers: any text. Paths are NFC, without separators.
    let mut device: String = device.nfc().filter(|c| !c.is_control() && !"/\\<>:\"|?*".contains(*c)).collect();
    truncate_bytes(&mut device, MAX_DEVICE_BYTES);
    let device = if device.trim().is_empty() { "unknown device".to_string() } else { device };
    let name = path.file_name();
    // The extension starts at the last dot that is not the first character.
    // A very long "extension" is no extension: keep it in the stem, where it may be shortened.
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 && name.len() - i <= MAX_EXT_BYTES => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    let counter = if attempt > 0 { format!(" {}", attempt + 1) } else { String::new() };
    let suffix = format!(
        "{CONFLICT_MARKER}{device} {:04}-{:02}-{:02} {:02}{:02}{:02}{counter}){ext}",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    );
    // Keep the component within limits by shortening the stem, never the marker.
    let budget = crate::path::MAX_COMPONENT_BYTES.saturating_sub(suffix.len());
    let mut stem = stem.to_string();
    truncate_bytes(&mut stem, budget);
    let new_name: String = format!("{stem}{suffix}").nfc().collect();
    path.with_file_name(&new_name).ok()
}

/// Longest device name, in bytes, that goes into a conflict-copy name.
const MAX_DEVICE_BYTES: usize = 64;
/// Longest extension, in bytes, kept as an extension after the marker.
const MAX_EXT_BYTES: usize = 32;

/// Shortens `s` to at most `max` bytes without splitting a character.
fn truncate_bytes(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// What a conflict-copy name says: the path it is a copy of, the device whose version it
/// holds, and when the conflict happened (as written in the name, UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictName {
    pub original: RelPath,
    pub device: String,
    pub when: String,
}

/// Parses a conflict-copy name made by [`conflict_copy_path`]; `None` for any other name.
pub fn parse_conflict_copy(path: &RelPath) -> Option<ConflictName> {
    let name = path.file_name();
    let start = name.find(CONFLICT_MARKER)?;
    let after = &name[start + CONFLICT_MARKER.len()..];
    let close = after.rfind(')')?;
    let inner = &after[..close];
    let ext = &after[close + 1..];
    // inner = "DEVICE YYYY-MM-DD HHMMSS", optionally followed by " N" (a counter).
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let (mut rest, mut time) = inner.rsplit_once(' ')?;
    if time.len() != 6 {
        if !digits(time) {
            return None;
        }
        (rest, time) = rest.rsplit_once(' ')?;
    }
    let (device, date) = rest.rsplit_once(' ')?;
    if !digits(time) || time.len() != 6 || date.len() != 10 || date.as_bytes()[4] != b'-' {
        return None;
    }
    let original = path.with_file_name(&format!("{}{ext}", &name[..start])).ok()?;
    Some(ConflictName {
        original,
        device: device.to_string(),
        when: format!("{date} {}:{}:{} UTC", &time[..2], &time[2..4], &time[4..]),
    })
}

/// True when the file name is a conflict copy made by FileSync.
pub fn is_conflict_copy(path: &RelPath) -> bool {
    path.file_name().contains(CONFLICT_MARKER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time() {
        assert_eq!(CivilTime::from_unix(0), CivilTime { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0 });
        // 2026-11-24 23:01:05 UTC
        assert_eq!(
            CivilTime::from_unix(1_795_561_265),
            CivilTime { year: 2026, month: 11, day: 24, hour: 23, minute: 1, second: 5 }
        );
        assert_eq!(CivilTime::from_unix(951_782_400).month, 2); // 2000-02-29
        assert_eq!(CivilTime::from_unix(951_782_400).day, 29);
    }

    #[test]
    fn parses_what_it_makes() {
        for (orig, dev, attempt) in
            [("docs/report.final.txt", "laptop", 0), (".bashrc", "my pc", 1), ("a b/c", "x 2026-01-01 000000", 3)]
        {
            let p = RelPath::new(orig).unwrap();
            let c = conflict_copy_path(&p, dev, 1_795_561_265, attempt);
            let parsed = parse_conflict_copy(&c).unwrap_or_else(|| panic!("{c}"));
            assert_eq!(parsed.original, p, "{c}");
            assert_eq!(parsed.device, dev, "{c}");
            assert_eq!(parsed.when, "2026-11-24 23:01:05 UTC");
        }
        assert_eq!(parse_conflict_copy(&RelPath::new("plain.txt").unwrap()), None);
        assert_eq!(parse_conflict_copy(&RelPath::new("x (conflicted copy from y).txt").unwrap()), None);
    }

    #[test]
    fn names() {
        let p = RelPath::new("docs/report.final.txt").unwrap();
        let c = conflict_copy_path(&p, "laptop", 1_795_561_265, 0);
        assert_eq!(c.as_str(), "docs/report.final (conflicted copy from laptop 2026-11-24 230105).txt");
        assert!(is_conflict_copy(&c));
        let c2 = conflict_copy_path(&RelPath::new(".bashrc").unwrap(), "pc/1", 1_795_561_265, 1);
        assert_eq!(c2.as_str(), ".bashrc (conflicted copy from pc1 2026-11-24 230105 2)");
        let long = RelPath::new("a".repeat(250) + ".txt").unwrap();
        assert!(conflict_copy_path(&long, "x", 0, 0).file_name().len() <= 255);
        // Regression: a long "extension" or a long multi-byte device name used to panic.
        let long_ext = RelPath::new("a.".to_string() + &"x".repeat(250)).unwrap();
        assert!(conflict_copy_path(&long_ext, "pc", 0, 0).file_name().len() <= 255);
        let c = conflict_copy_path(&RelPath::new("é".repeat(120)).unwrap(), &"😀".repeat(64), 0, 3);
        assert!(c.file_name().len() <= 255 && is_conflict_copy(&c));
        // Regression: a device name not in NFC (`Cafe` + a combining acute) used to panic.
        let c = conflict_copy_path(&RelPath::new("notes.txt").unwrap(), "Cafe\u{301}", 0, 0);
        assert_eq!(c.as_str(), "notes (conflicted copy from Caf\u{e9} 1970-01-01 000000).txt");
        for device in ["\u{301}", "\u{301}\u{301}x", " ", "a/b\\c", "..", "\u{0}"] {
            let c = conflict_copy_path(&RelPath::new("d/x.txt").unwrap(), device, 0, 0);
            assert!(is_conflict_copy(&c) && c.as_str().starts_with("d/x ("), "{device:?}: {c}");
        }
    }
}
