//! What a preview shows, decided from a file's name and bytes (pure): whether it is text, an
//! image the page may show, or something to download; the side-by-side rows of two texts with
//! the differences marked (a line diff by `similar`, long unchanged stretches folded); and the
//! `Content-Type` and `Content-Disposition` a file is served with. Only a few raster image
//! types are ever served for showing (never HTML or SVG, which can carry script), and every
//! other type is served as an attachment.

use serde::Serialize;
use std::time::Duration;

/// Bytes of text a preview reads per side; a bigger file says so instead.
pub const TEXT_CAP: u64 = 1 << 20;
/// Bytes of an image a preview shows; a bigger image says so instead.
pub const IMAGE_CAP: u64 = 16 << 20;
/// Unchanged lines kept around each change; longer unchanged stretches are folded.
const CONTEXT: usize = 3;
/// How long the diff may search for the smallest difference before it settles for a larger one.
const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// The image types a page may show: raster formats browsers decode without running anything.
const IMAGES: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
];

/// Types for downloads (always attachments), by extension.
const DOWNLOADS: &[(&str, &str)] = &[
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/plain; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("log", "text/plain; charset=utf-8"),
    ("json", "application/json"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
];

fn extension(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// The image type of `name` when it is one a page may show.
pub fn image_type(name: &str) -> Option<&'static str> {
    let ext = extension(name);
    IMAGES.iter().find(|(e, _)| *e == ext).map(|(_, t)| *t)
}

/// The `Content-Type` of `name` served for showing (`inline`) or saving.
pub fn content_type(name: &str, inline: bool) -> &'static str {
    if let Some(t) = image_type(name) {
        return t;
    }
    if inline {
        return "application/octet-stream";
    }
    let ext = extension(name);
    DOWNLOADS.iter().find(|(e, _)| *e == ext).map_or("application/octet-stream", |(_, t)| *t)
}

/// `Content-Disposition` for `name`: `inline` only for a showable image, otherwise an
/// attachment; the name as a plain ASCII fallback and in full (RFC 6266, RFC 8187).
pub fn disposition(name: &str, inline: bool) -> String {
    let how = if inline && image_type(name).is_some() { "inline" } else { "attachment" };
    let ascii: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{how}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// What a side of a preview is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Image,
    /// Neither text nor a showable image: download it.
    Binary,
    /// Too big to preview: download it.
    TooLarge,
}

/// The kind of `name` of `size` bytes, given its first bytes (`None`: not read, too large).
pub fn kind(name: &str, size: u64, bytes: Option<&[u8]>) -> Kind {
    if image_type(name).is_some() {
        return if size > IMAGE_CAP { Kind::TooLarge } else { Kind::Image };
    }
    match bytes {
        None => Kind::TooLarge,
        Some(b) if b.contains(&0) || std::str::from_utf8(b).is_err() => Kind::Binary,
        Some(_) => Kind::Text,
    }
}

/// One line of one side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Line {
    /// 1-based line number.
    pub n: usize,
    pub text: String,
}

/// One row of a side-by-side view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "tag", rename_all = "snake_case")]
pub enum Row {
    /// The same line on both sides.
    Equal { left: Line, right: Line },
    /// A line only the left side has.
    Delete { left: Line },
    /// A line only the right side has.
    Insert { right: Line },
    /// A line on each side that differs.
    Replace { left: Line, right: Line },
    /// This many unchanged lines, folded.
    Skip { count: usize },
}

fn line(n: usize, s: &str) -> Line {
    Line { n: n + 1, text: s.trim_end_matches(['\n', '\r']).to_string() }
}

/// The rows that show `old` beside `new`, changed lines paired where they replace each other,
/// unchanged stretches longer than the context around changes folded into `Skip`.
pub fn side_by_side(old: &str, new: &str) -> Vec<Row> {
    let diff = similar::TextDiff::configure().timeout(DIFF_TIMEOUT).diff_lines(old, new);
    let (a, b) = (diff.old_slices(), diff.new_slices());
    let mut rows = Vec::new();
    for op in diff.ops() {
        let (o, n) = (op.old_range(), op.new_range());
        match op.tag() {
            similar::DiffTag::Equal => {
                rows.extend(o.zip(n).map(|(i, j)| Row::Equal { left: line(i, a[i]), right: line(j, b[j]) }))
            }
            similar::DiffTag::Delete => rows.extend(o.map(|i| Row::Delete { left: line(i, a[i]) })),
            similar::DiffTag::Insert => rows.extend(n.map(|j| Row::Insert { right: line(j, b[j]) })),
            similar::DiffTag::Replace => {
                let (o, n): (Vec<usize>, Vec<usize>) = (o.collect(), n.collect());
                for k in 0..o.len().max(n.len()) {
                    rows.push(match (o.get(k), n.get(k)) {
                        (Some(&i), Some(&j)) => Row::Replace { left: line(i, a[i]), right: line(j, b[j]) },
                        (Some(&i), None) => Row::Delete { left: line(i, a[i]) },
                        (None, Some(&j)) => Row::Insert { right: line(j, b[j]) },
                        (None, None) => unreachable!("k is below one of the lengths"),
                    });
                }
            }
        }
    }
    fold(rows)
}

/// Folds runs of `Equal` rows that lie further than [`CONTEXT`] from any change.
fn fold(rows: Vec<Row>) -> Vec<Row> {
    let changed: Vec<bool> = rows.iter().map(|r| !matches!(r, Row::Equal { .. })).collect();
    if !changed.contains(&true) {
        return rows; // identical: show it all
    }
    let near = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(changed.len());
        changed[lo..hi].contains(&true)
    };
    let mut out = Vec::new();
    let mut skipped = 0;
    for (i, r) in rows.into_iter().enumerate() {
        if near(i) {
            if skipped > 0 {
                out.push(Row::Skip { count: skipped });
                skipped = 0;
            }
            out.push(r);
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        out.push(Row::Skip { count: skipped });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(rows: &[Row]) -> Vec<&'static str> {
        rows.iter()
            .map(|r| match r {
                Row::Equal { .. } => "=",
                Row::Delete { .. } => "-",
                Row::Insert { .. } => "+",
                Row::Replace { .. } => "~",
                Row::Skip { .. } => "…",
            })
            .collect()
    }

    #[test]
    fn a_changed_line_is_paired_with_its_replacement_and_the_rest_is_equal() {
        let rows = side_by_side("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(tags(&rows), vec!["=", "~", "=", "+"]);
        assert_eq!(
            rows[1],
            Row::Replace { left: Line { n: 2, text: "b".into() }, right: Line { n: 2, text: "B".into() } }
        );
        assert_eq!(rows[3], Row::Insert { right: Line { n: 4, text: "d".into() } });
        assert_eq!(tags(&side_by_side("a\nb\n", "a\n")), vec!["=", "-"]);
    }

    #[test]
    fn long_unchanged_stretches_are_folded_around_the_changes() {
        let old: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let new = old.replace("line 50\n", "line fifty\n");
        let rows = side_by_side(&old, &new);
        assert_eq!(tags(&rows), vec!["…", "=", "=", "=", "~", "=", "=", "=", "…"]);
        assert_eq!(rows[0], Row::Skip { count: 47 });
        assert_eq!(rows[8], Row::Skip { count: 46 });
        // Identical texts are shown whole, not folded into nothing.
        assert_eq!(side_by_side("x\ny\n", "x\ny\n").len(), 2);
    }

    #[test]
    fn text_images_binary_and_too_large_are_told_apart() {
        assert_eq!(kind("a.txt", 5, Some(b"hello")), Kind::Text);
        assert_eq!(kind("a.txt", 5, Some(b"he\0lo")), Kind::Binary);
        assert_eq!(kind("a.bin", 2, Some(&[0xff, 0xfe])), Kind::Binary);
        assert_eq!(kind("big.log", TEXT_CAP + 1, None), Kind::TooLarge);
        assert_eq!(kind("Photo.JPG", 1000, None), Kind::Image);
        assert_eq!(kind("huge.png", IMAGE_CAP + 1, None), Kind::TooLarge);
    }

    #[test]
    fn only_raster_images_are_served_for_showing_and_everything_else_as_an_attachment() {
        assert_eq!(content_type("cat.png", true), "image/png");
        assert_eq!(content_type("page.html", true), "application/octet-stream");
        assert_eq!(content_type("drawing.svg", true), "application/octet-stream");
        assert_eq!(content_type("page.html", false), "application/octet-stream", "never text/html");
        assert_eq!(content_type("notes.txt", false), "text/plain; charset=utf-8");
        assert!(disposition("cat.png", true).starts_with("inline;"));
        assert!(disposition("cat.png", false).starts_with("attachment;"));
        assert!(disposition("page.html", true).starts_with("attachment;"));
        assert_eq!(
            disposition("Ünïcode \"q\".txt", false),
            "attachment; filename=\"_n_code _q_.txt\"; filename*=UTF-8''%C3%9Cn%C3%AFcode%20%22q%22.txt"
        );
    }
}
