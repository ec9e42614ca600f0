//! Listing parsers: MLSD (RFC 3659 §7), `ls -l` style LIST (POSIX), DOS/IIS style LIST.
//!
//! Each works on one raw line (bytes, as the data connection delivered them, without the line
//! end) so that names are checked byte for byte by [`coord_core::check_name`] and nothing
//! of a big listing is kept but the entries. [`DirParser`] strings lines together: it checks
//! names, counts what it skips, and drops an entry whose line is followed by an unparsable
//! one (the usual trace of a name with an embedded newline, see `push_line`).
//!
//! Times: MLSD `modify` facts and MDTM replies are exact UTC times and become the entry's
//! mtime. A POSIX LIST line's date (`Mon DD HH:MM` for recent files, `Mon DD  YYYY` for older
//! ones) is never turned into an mtime: the recent form has no year (only the reader's clock
//! could supply one) and the server switches forms as the file ages, so any time made from it
//! would change a file's identity `(path, size, mtime)` with no change to the file. It is kept
//! as a [`ListStamp`] instead, which only says whether the line's date text changed; `fs.rs`
//! asks the exact time with MDTM once per `(path, size, stamp)`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use coord_core::{EntryKind, Listing, RemoteEntry, check_name, escape_for_log, join_remote};

/// Which listing command produced the lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListFormat {
    /// `MLSD` facts.
    Mlsd,
    /// `LIST`: POSIX or DOS lines, detected per line.
    List,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// An entry with its raw (unchecked) name.
    Entry(RawEntry<'a>),
    /// Nothing to report: an empty line, `total N`, the `.`/`..` entries.
    Ignore,
    /// A line none of the parsers understands.
    Garbage,
}

/// An entry before its name was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawEntry<'a> {
    pub(crate) name: &'a [u8],
    pub(crate) size: u64,
    /// An exact time: MLSD's `modify`, or a DOS line's date and time (which has a year and does
    /// not change form with age). `None` for POSIX LIST lines, see [`ListStamp`].
    pub(crate) mtime: Option<SystemTime>,
    pub(crate) kind: EntryKind,
    /// The LIST line's date as written (LIST only).
    pub(crate) stamp: Option<ListStamp>,
}

/// The date columns of a LIST line, as the server wrote them (parsed only to be compared
/// without regard to column padding). Two listings of an unchanged file give equal stamps as
/// long as the server keeps the same form; when a POSIX server switches from the recent form
/// to the year form (about six months after the mtime) the stamp changes, once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListStamp {
    /// POSIX `Mon DD HH:MM` (no year).
    Recent {
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
    },
    /// POSIX `Mon DD  YYYY` (no time of day).
    Dated { month: u8, day: u8, year: u16 },
    /// A DOS line's date and time, as seconds since the epoch.
    Dos(u64),
}

/// Parses one line of `format`.
pub(crate) fn parse_line(format: ListFormat, line: &[u8]) -> Parsed<'_> {
    let line = trim_line_end(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Parsed::Ignore;
    }
    match format {
        ListFormat::Mlsd => parse_mlsd(line),
        ListFormat::List => match parse_posix(line) {
            Parsed::Garbage => parse_dos(line),
            other => other,
        },
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

/// `type=file;size=3;modify=20261127122348; name`
pub(crate) fn parse_mlsd(line: &[u8]) -> Parsed<'_> {
    let Some(space) = line.iter().position(|&b| b == b' ') else {
        return Parsed::Garbage;
    };
    let (facts, name) = (&line[..space], &line[space + 1..]);
    if facts.is_empty() || !facts.ends_with(b";") || name.is_empty() {
        return Parsed::Garbage;
    }
    let mut kind = None;
    let mut size = None;
    let mut mtime = None;
    for fact in facts.split(|&b| b == b';').filter(|f| !f.is_empty()) {
        let Some(eq) = fact.iter().position(|&b| b == b'=') else {
            return Parsed::Garbage;
        };
        let key = fact[..eq].to_ascii_lowercase();
        let value = &fact[eq + 1..];
        match key.as_slice() {
            b"type" => {
                let value = value.to_ascii_lowercase();
                kind = Some(match value.as_slice() {
                    b"file" => Some(EntryKind::File),
                    b"dir" => Some(EntryKind::Dir),
                    b"cdir" | b"pdir" => None,
                    v if v.starts_with(b"os.unix=slink") || v.starts_with(b"os.unix=symlink") => {
                        Some(EntryKind::Symlink)
                    }
                    _ => Some(EntryKind::Other),
                });
            }
            b"size" | b"sizd" => match ascii_u64(value) {
                Some(v) => size = Some(v),
                None => return Parsed::Garbage,
            },
            b"modify" => mtime = parse_mlsd_time(value),
            _ => {}
        }
    }
    match kind {
        Some(None) => Parsed::Ignore,
        _ if is_dot(name) => Parsed::Ignore,
        kind => Parsed::Entry(RawEntry {
            name,
            size: size.unwrap_or(0),
            mtime,
            kind: kind.flatten().unwrap_or(EntryKind::Other),
            stamp: None,
        }),
    }
}

/// The reply to `MDTM path` (RFC 3659 §3): `213 YYYYMMDDHHMMSS[.sss]`, UTC, as suppaftp hands
/// it over (code and line end included). `None` for any other reply.
pub(crate) fn parse_mdtm_reply(body: &[u8]) -> Option<SystemTime> {
    let line = trim_line_end(body);
    let value = line.strip_prefix(b"213 ")?;
    parse_mlsd_time(value.trim_ascii())
}

/// `YYYYMMDDHHMMSS[.sss]`, UTC (MLSD `modify` facts and MDTM replies).
fn parse_mlsd_time(value: &[u8]) -> Option<SystemTime> {
    let (main, frac) = match value.iter().position(|&b| b == b'.') {
        Some(dot) => (&value[..dot], &value[dot + 1..]),
        None => (value, &b""[..]),
    };
    if main.len() != 14 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| ascii_u64(&main[r]);
    let millis = if frac.is_empty() {
        0
    } else {
        let digits = &frac[..frac.len().min(3)];
        ascii_u64(digits)? * 10u64.pow(3 - digits.len() as u32)
    };
    utc(
        n(0..4)? as i64,
        n(4..6)?,
        n(6..8)?,
        n(8..10)?,
        n(10..12)?,
        n(12..14)?,
        millis,
    )
}

/// Splits on runs of spaces and tabs, keeping each token's byte range.
fn tokens(line: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in line.iter().enumerate() {
        let blank = b == b' ' || b == b'\t';
        match (blank, start) {
            (false, None) => start = Some(i),
            (true, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
        // Only the fields before the name matter; the name is taken as the rest of the line.
        if out.len() >= 9 {
            break;
        }
    }
    if let Some(s) = start {
        out.push((s, line.len()));
    }
    out
}

fn month(token: &[u8]) -> Option<u64> {
    const MONTHS: [&[u8]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    let lower = token.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower.as_slice())
        .map(|i| i as u64 + 1)
}

/// `-rw-r--r--    1 1000     1000         5 Nov 27 12:22 name` (group optional; `HH:MM` or a
/// year; `name -> target` for symlinks; `total N` ignored). The date becomes a [`ListStamp`],
/// not an mtime.
pub(crate) fn parse_posix(line: &[u8]) -> Parsed<'_> {
    let toks = tokens(line);
    let field = |i: usize| toks.get(i).map(|&(s, e)| &line[s..e]);
    if field(0).is_some_and(|t| t.eq_ignore_ascii_case(b"total")) && toks.len() == 2 {
        return Parsed::Ignore;
    }
    let Some(perms) = field(0) else {
        return Parsed::Garbage;
    };
    if perms.len() < 10 || !b"-dlbcpsD".contains(&perms[0]) {
        return Parsed::Garbage;
    }
    // The month is field 5 normally, 4 without a group column, 3 without owner and group.
    for k in [5usize, 4, 3] {
        let (Some(mon), Some(day), Some(time), Some(size)) =
            (field(k), field(k + 1), field(k + 2), field(k - 1))
        else {
            continue;
        };
        let (Some(mon), Some(day), Some(size)) = (month(mon), ascii_u64(day), ascii_u64(size))
        else {
            continue;
        };
        let Some(stamp) = posix_stamp(mon, day, time) else {
            continue;
        };
        // The name starts one space after the time-or-year column.
        let name_start = toks[k + 2].1 + 1;
        if name_start >= line.len() {
            return Parsed::Garbage;
        }
        let mut name = &line[name_start..];
        let kind = match perms[0] {
            b'-' => EntryKind::File,
            b'd' | b'D' => EntryKind::Dir,
            b'l' => {
                if let Some(arrow) = find(name, b" -> ") {
                    name = &name[..arrow];
                }
                EntryKind::Symlink
            }
            _ => EntryKind::Other,
        };
        if is_dot(name) {
            return Parsed::Ignore;
        }
        return Parsed::Entry(RawEntry {
            name,
            size,
            mtime: None,
            kind,
            stamp: Some(stamp),
        });
    }
    Parsed::Garbage
}

/// `HH:MM` or `YYYY` after the month and day, checked as a date would be.
fn posix_stamp(month: u64, day: u64, time: &[u8]) -> Option<ListStamp> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (month, day) = (month as u8, day as u8);
    if let Some(colon) = time.iter().position(|&b| b == b':') {
        let (h, m) = (ascii_u64(&time[..colon])?, ascii_u64(&time[colon + 1..])?);
        if h > 23 || m > 59 {
            return None;
        }
        Some(ListStamp::Recent {
            month,
            day,
            hour: h as u8,
            minute: m as u8,
        })
    } else if time.len() == 4 {
        Some(ListStamp::Dated {
            month,
            day,
            year: u16::try_from(ascii_u64(time)?).ok()?,
        })
    } else {
        None
    }
}

/// `11-27-26  12:22PM       <DIR>          name` or `... 1234 name` (IIS, FileZilla Server
/// in DOS mode). Leading blanks of a name are lost to the column padding.
pub(crate) fn parse_dos(line: &[u8]) -> Parsed<'_> {
    let toks = tokens(line);
    if toks.len() < 4 {
        return Parsed::Garbage;
    }
    let field = |i: usize| &line[toks[i].0..toks[i].1];
    let Some((mon, day, year)) = dos_date(field(0)) else {
        return Parsed::Garbage;
    };
    let Some((hour, minute)) = dos_clock(field(1)) else {
        return Parsed::Garbage;
    };
    let size_field = field(2);
    let (kind, size) = if size_field.eq_ignore_ascii_case(b"<DIR>") {
        (EntryKind::Dir, 0)
    } else {
        let digits: Vec<u8> = size_field.iter().copied().filter(|&b| b != b',').collect();
        match ascii_u64(&digits) {
            Some(size) => (EntryKind::File, size),
            None => return Parsed::Garbage,
        }
    };
    let name = &line[toks[3].0..];
    if is_dot(name) {
        return Parsed::Ignore;
    }
    let Some(mtime) = utc(year, mon, day, hour, minute, 0, 0) else {
        return Parsed::Garbage;
    };
    let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Parsed::Entry(RawEntry {
        name,
        size,
        mtime: Some(mtime),
        kind,
        stamp: Some(ListStamp::Dos(secs)),
    })
}

/// `MM-DD-YY` or `MM-DD-YYYY`.
fn dos_date(t: &[u8]) -> Option<(u64, u64, i64)> {
    let mut parts = t.split(|&b| b == b'-');
    let (m, d, y) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let year = ascii_u64(y)? as i64;
    let year = match y.len() {
        2 if year < 70 => 2000 + year,
        2 => 1900 + year,
        4 => year,
        _ => return None,
    };
    Some((ascii_u64(m)?, ascii_u64(d)?, year))
}

/// `HH:MM`, `HH:MMAM`, `HH:MMPM`.
fn dos_clock(t: &[u8]) -> Option<(u64, u64)> {
    let upper = t.to_ascii_uppercase();
    let (clock, pm) = if let Some(c) = upper.strip_suffix(b"PM") {
        (c, Some(true))
    } else if let Some(c) = upper.strip_suffix(b"AM") {
        (c, Some(false))
    } else {
        (upper.as_slice(), None)
    };
    let colon = clock.iter().position(|&b| b == b':')?;
    let (mut h, m) = (ascii_u64(&clock[..colon])?, ascii_u64(&clock[colon + 1..])?);
    match pm {
        Some(_) if !(1..=12).contains(&h) => return None,
        Some(true) if h != 12 => h += 12,
        Some(false) if h == 12 => h = 0,
        _ => {}
    }
    Some((h, m))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn ascii_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn utc(y: i64, mo: u64, d: u64, h: u64, mi: u64, s: u64, ms: u64) -> Option<SystemTime> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h * 3600 + mi * 60 + s) as i64;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms))
}

/// Turns the lines of one directory's listing into checked entries of a [`Listing`].
///
/// A name with an embedded newline arrives as two lines: the first parses as an entry with a
/// truncated name, the second is garbage. So an entry is held back until the next line parses
/// (or the listing ends); when the next line is garbage, both are skipped. A crafted name can
/// still make its second half look like an entry of its own: a LIST or MLSD listing cannot
/// tell, and such an entry names a file that, if it exists, is a real one.
#[derive(Debug)]
pub(crate) struct DirParser<'d> {
    dir: &'d str,
    format: ListFormat,
    pending: Option<(RemoteEntry, Option<ListStamp>)>,
    /// Directories found, for recursion.
    pub(crate) subdirs: Vec<String>,
    /// The regular files accepted from LIST lines: their index in `Listing::entries` and
    /// their line's date stamp.
    pub(crate) stamps: Vec<(usize, ListStamp)>,
}

impl<'d> DirParser<'d> {
    pub(crate) fn new(dir: &'d str, format: ListFormat) -> DirParser<'d> {
        DirParser {
            dir,
            format,
            pending: None,
            subdirs: Vec::new(),
            stamps: Vec::new(),
        }
    }

    /// Feeds one raw line (with or without its line end).
    pub(crate) fn push_line(&mut self, line: &[u8], out: &mut Listing) {
        match parse_line(self.format, line) {
            Parsed::Ignore => {}
            Parsed::Garbage => {
                out.skipped += 1;
                tracing::warn!(
                    dir = self.dir,
                    line = %escape_for_log(trim_line_end(line)),
                    "skipping unparsable listing line"
                );
                if let Some((prev, _)) = self.pending.take() {
                    out.skipped += 1;
                    tracing::warn!(
                        path = %prev.path,
                        "skipping entry followed by an unparsable line (name with a newline?)"
                    );
                }
            }
            Parsed::Entry(raw) => match check_name(raw.name) {
                Ok(name) => {
                    let entry = RemoteEntry {
                        path: join_remote(self.dir, name),
                        name: name.to_string(),
                        size: raw.size,
                        mtime: raw.mtime,
                        kind: raw.kind,
                    };
                    if let Some(prev) = self.pending.replace((entry, raw.stamp)) {
                        self.accept(prev, out);
                    }
                }
                Err(e) => {
                    out.skipped += 1;
                    tracing::warn!(
                        dir = self.dir,
                        name = %escape_for_log(raw.name),
                        error = %e,
                        "skipping hostile name"
                    );
                    if let Some(prev) = self.pending.take() {
                        self.accept(prev, out);
                    }
                }
            },
        }
    }

    /// Ends the listing of this directory.
    pub(crate) fn finish(&mut self, out: &mut Listing) {
        if let Some(prev) = self.pending.take() {
            self.accept(prev, out);
        }
    }

    fn accept(&mut self, (entry, stamp): (RemoteEntry, Option<ListStamp>), out: &mut Listing) {
        match (entry.kind, stamp) {
            (EntryKind::Dir, _) => self.subdirs.push(entry.path.clone()),
            (EntryKind::File, Some(stamp)) => self.stamps.push((out.entries.len(), stamp)),
            _ => {}
        }
        out.entries.push(entry);
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
