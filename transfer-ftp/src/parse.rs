//! Listing parsers: MLSD (RFC 3659 §7), `ls -l` style LIST (POSIX), DOS/IIS style LIST.
//!
//! Each works on one raw line (bytes, as the data connection delivered them, without the line
//! end) so that names are checked byte for byte by [`coord_core::check_name`] and nothing
//! of a big listing is kept but the entries. [`DirParser`] strings lines together: it checks
//! names, counts what it skips, and drops what a name with a line break may have forged
//! (pieces of a CRLF-framed record, names listed twice, neighbours of unparsable lines).
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
/// A listing line names what the server wrote into it, and a file name may contain line
/// breaks: `evil⏎type=file;size=5;modify=20200101000000; victim.txt` arrives as a line for
/// `evil` and a line, written by whoever named the file, for a second `victim.txt` that does
/// not exist. No entry of a listing is taken on trust when the listing shows such a trace
/// (issue 12):
///
/// - **Framing.** proftpd and vsftpd end every line with CRLF and pass a name's bare LF
///   through. Once a line ended with CRLF, lines that end with a bare LF are pieces of one
///   record that the next CRLF ends; the record is parsed as one line, so its name contains a
///   newline and is skipped as hostile, and none of its pieces becomes an entry. Until the
///   first CRLF, bare-LF lines are held back (up to [`MAX_FRAGMENT`] bytes); a listing that
///   never uses CRLF is read line by line.
/// - **Duplicates.** A name that appears twice in one directory's listing is dropped, every
///   copy, for this listing: one of them is forged and nothing tells which (a name with a
///   CR LF in it, or a server that ends lines with bare LF, splits records exactly like
///   real line ends do).
/// - **Neighbours of unparsable lines.** The entry just before an unparsable line (the first
///   half of a name whose second half does not parse) and the entry just after it (the second
///   half of a name whose first half did not parse, e.g. one that begins with a line break)
///   are dropped. Ignored lines (`.`, `..`, `total N`) do not separate neighbours.
///
/// Everything dropped is logged at WARN and counted in [`Listing::skipped`]; the next listing
/// decides again. What is left: a forged line under a name that exists nowhere else in the
/// directory (and the line before it) can still become an entry; it names a file that does
/// not exist (its read fails with not found), or is the first half of a hostile name. The
/// listener also checks the bytes it reads against the listed size.
#[derive(Debug)]
pub(crate) struct DirParser<'d> {
    dir: &'d str,
    format: ListFormat,
    framing: Framing,
    /// Lines ending with a bare LF, not yet known to be records or pieces of one.
    fragment: Vec<Vec<u8>>,
    fragment_bytes: usize,
    /// This directory's records so far, in order (entries are kept back until
    /// [`DirParser::finish`], which alone can see duplicates).
    records: Vec<Record>,
    /// Directories found, for recursion.
    pub(crate) subdirs: Vec<String>,
    /// The regular files accepted from LIST lines: their index in `Listing::entries` and
    /// their line's date stamp.
    pub(crate) stamps: Vec<(usize, ListStamp)>,
}

/// How many bytes of bare-LF lines are held back before the listing is taken to end its lines
/// with bare LF (before the first CRLF), or the record is given up as garbage (after it). A
/// name is at most 255 bytes on the servers we know; facts and columns add a few hundred.
pub(crate) const MAX_FRAGMENT: usize = 16 * 1024;

/// How the server ends listing lines, as far as seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No line ended with CRLF yet.
    Unknown,
    /// A line ended with CRLF: a bare LF is part of a name.
    Crlf,
    /// Bare LF lines went past [`MAX_FRAGMENT`] before any CRLF: every `\n` ends a line.
    Lf,
}

/// One record of a directory listing, as classified when it was read.
#[derive(Debug)]
enum Record {
    /// An entry with a checked name, kept back until the listing ends.
    Entry(RemoteEntry, Option<ListStamp>),
    /// A line that no parser understands (already counted and logged): its neighbours are
    /// suspect.
    Garbage,
    /// A record skipped for its name (already counted and logged): a hostile name, or the
    /// pieces of a name with a line break. Exactly delimited, so its neighbours are not
    /// suspect.
    Skipped,
}

impl<'d> DirParser<'d> {
    pub(crate) fn new(dir: &'d str, format: ListFormat) -> DirParser<'d> {
        DirParser {
            dir,
            format,
            framing: Framing::Unknown,
            fragment: Vec::new(),
            fragment_bytes: 0,
            records: Vec::new(),
            subdirs: Vec::new(),
            stamps: Vec::new(),
        }
    }

    /// Feeds one raw line, as read up to and including its `\n` (the last line of a listing
    /// may have no line end).
    pub(crate) fn push_line(&mut self, line: &[u8], out: &mut Listing) {
        let crlf = line.ends_with(b"\r\n");
        let bare_lf = !crlf && line.ends_with(b"\n");
        if crlf && self.framing == Framing::Unknown {
            self.framing = Framing::Crlf;
        }
        if bare_lf && self.framing != Framing::Lf {
            self.fragment_bytes += line.len();
            self.fragment.push(line.to_vec());
            if self.fragment_bytes > MAX_FRAGMENT {
                self.fragment_overflow(out);
            }
            return;
        }
        if self.fragment.is_empty() {
            self.record(line, out);
        } else if self.framing != Framing::Crlf {
            // The last line, without a line end, and no CRLF seen: bare LF ends lines here.
            for piece in self.take_fragment() {
                self.record(&piece, out);
            }
            self.record(line, out);
        } else {
            // A bare-LF piece, then this line: one record whose name holds a line break.
            let mut joined = self.take_fragment().concat();
            joined.extend_from_slice(line);
            self.broken_record(&joined, out);
        }
    }

    /// Ends the listing of this directory: decides on the entries held back (see the type's
    /// doc) and moves the ones that stand into `out`.
    pub(crate) fn finish(&mut self, out: &mut Listing) {
        if !self.fragment.is_empty() {
            match self.framing {
                // The listing ended inside a record.
                Framing::Crlf => {
                    let joined = self.take_fragment().concat();
                    self.broken_record(&joined, out);
                }
                // No CRLF at all: a listing with bare LF line ends.
                _ => {
                    for piece in self.take_fragment() {
                        self.record(&piece, out);
                    }
                }
            }
        }
        let records = std::mem::take(&mut self.records);
        let copies = name_copies(&records);
        let garbage = |i: Option<usize>| {
            i.and_then(|i| records.get(i))
                .is_some_and(|r| matches!(r, Record::Garbage))
        };
        let mut keep = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let Record::Entry(e, _) = r else {
                keep.push(false);
                continue;
            };
            let copies = copies(i);
            let reason = if copies > 1 {
                Some("skipping a name listed more than once (a forged listing line?)")
            } else if garbage(i.checked_sub(1)) || garbage(Some(i + 1)) {
                Some("skipping an entry next to an unparsable line (a name with a line break?)")
            } else {
                None
            };
            if let Some(reason) = reason {
                out.skipped += 1;
                tracing::warn!(path = %e.path, size = e.size, copies, "{reason}");
            }
            keep.push(reason.is_none());
        }
        drop(copies);
        for (r, keep) in records.into_iter().zip(keep) {
            if let (Record::Entry(e, stamp), true) = (r, keep) {
                self.accept(e, stamp, out);
            }
        }
    }

    fn take_fragment(&mut self) -> Vec<Vec<u8>> {
        self.fragment_bytes = 0;
        std::mem::take(&mut self.fragment)
    }

    /// Too many bytes of bare-LF lines: before any CRLF the server ends lines with bare LF;
    /// after one, the record is given up.
    fn fragment_overflow(&mut self, out: &mut Listing) {
        let pieces = self.take_fragment();
        if self.framing == Framing::Unknown {
            self.framing = Framing::Lf;
            for piece in pieces {
                self.record(&piece, out);
            }
        } else {
            out.skipped += 1;
            tracing::warn!(
                dir = self.dir,
                bytes = pieces.iter().map(Vec::len).sum::<usize>(),
                "skipping an overlong listing record of bare-LF lines"
            );
            self.records.push(Record::Garbage);
        }
    }

    /// A record made of several lines: never an entry (its name holds a line break). Counted
    /// once per line, as if each had been skipped.
    fn broken_record(&mut self, joined: &[u8], out: &mut Listing) {
        out.skipped += trim_line_end(joined).split(|&b| b == b'\n').count() as u64;
        tracing::warn!(
            dir = self.dir,
            record = %escape_for_log(trim_line_end(joined)),
            "skipping a listing record with a line break in its name"
        );
        self.records.push(Record::Skipped);
    }

    /// One record that is one line.
    fn record(&mut self, line: &[u8], out: &mut Listing) {
        match parse_line(self.format, line) {
            Parsed::Ignore => {}
            Parsed::Garbage => {
                out.skipped += 1;
                tracing::warn!(
                    dir = self.dir,
                    line = %escape_for_log(trim_line_end(line)),
                    "skipping unparsable listing line"
                );
                self.records.push(Record::Garbage);
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
                    self.records.push(Record::Entry(entry, raw.stamp));
                }
                Err(e) => {
                    out.skipped += 1;
                    tracing::warn!(
                        dir = self.dir,
                        name = %escape_for_log(raw.name),
                        error = %e,
                        "skipping hostile name"
                    );
                    self.records.push(Record::Skipped);
                }
            },
        }
    }

    fn accept(&mut self, entry: RemoteEntry, stamp: Option<ListStamp>, out: &mut Listing) {
        match (entry.kind, stamp) {
            (EntryKind::Dir, _) => self.subdirs.push(entry.path.clone()),
            (EntryKind::File, Some(stamp)) => self.stamps.push((out.entries.len(), stamp)),
            _ => {}
        }
        out.entries.push(entry);
    }
}

/// How many entries of `records` carry the name of entry `i`. Servers mostly list in name
/// order (vsftpd sorts), and then copies are neighbours: counted without hashing. Otherwise
/// every name is counted in a map.
fn name_copies(records: &[Record]) -> impl Fn(usize) -> u32 + '_ {
    fn name(r: &Record) -> Option<&str> {
        match r {
            Record::Entry(e, _) => Some(e.name.as_str()),
            _ => None,
        }
    }
    let mut names = records.iter().filter_map(name);
    let sorted = match names.next() {
        Some(first) => names
            .try_fold(first, |prev, n| (prev <= n).then_some(n))
            .is_some(),
        None => true,
    };
    let counts: Option<std::collections::HashMap<&str, u32>> = (!sorted).then(|| {
        let mut seen = std::collections::HashMap::new();
        for n in records.iter().filter_map(name) {
            *seen.entry(n).or_default() += 1;
        }
        seen
    });
    move |i| {
        let Some(n) = records.get(i).and_then(name) else {
            return 0;
        };
        if let Some(counts) = &counts {
            return counts.get(n).copied().unwrap_or(0);
        }
        // Sorted: the copies are the entries next to `i` (other records may lie between).
        let same = |r: &Record| name(r).is_none_or(|m| m == n);
        let entries_named = |r: &&Record| name(r) == Some(n);
        let before = records[..i]
            .iter()
            .rev()
            .take_while(|r| same(r))
            .filter(entries_named)
            .count();
        let after = records[i + 1..]
            .iter()
            .take_while(|r| same(r))
            .filter(entries_named)
            .count();
        1 + (before + after) as u32
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;

/// Issue 12: listing lines forged by names with line breaks.
#[cfg(test)]
mod forge_tests {
    use super::*;

    fn run(format: ListFormat, lines: &[&[u8]]) -> (Vec<(String, u64)>, u64) {
        let mut out = Listing::default();
        let mut p = DirParser::new("/in", format);
        for line in lines {
            p.push_line(line, &mut out);
        }
        p.finish(&mut out);
        let entries = out
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.size))
            .collect();
        (entries, out.skipped)
    }

    const REAL: &[u8] = b"modify=20261201091639;perm=adfr;size=20;type=file; victim.txt\r\n";

    #[test]
    fn a_bare_lf_in_a_crlf_listing_joins_the_record() {
        // proftpd's MLSD of `evil\ntype=file;size=5;modify=20200101000000; victim.txt`.
        let (entries, skipped) = run(
            ListFormat::Mlsd,
            &[
                b"modify=20261201091639;perm=adfr;size=5;type=file; evil\n",
                b"type=file;size=5;modify=20200101000000; victim.txt\r\n",
                REAL,
            ],
        );
        assert_eq!(entries, [("victim.txt".to_string(), 20)]);
        assert_eq!(skipped, 2);
        // The same with the hostile name first and the real file listed before it.
        let (entries, _) = run(
            ListFormat::Mlsd,
            &[
                REAL,
                b"modify=20261201091639;perm=adfr;size=5;type=file; evil\n",
                b"type=file;size=5;modify=20200101000000; victim.txt\r\n",
            ],
        );
        assert_eq!(entries, [("victim.txt".to_string(), 20)]);
        // vsftpd's LIST: a name holding a whole forged `ls -l` line, and one with two breaks.
        let (entries, skipped) = run(
            ListFormat::List,
            &[
                b"-rw-r--r--    1 0        0               2 Dec 01 09:16 name\n",
                b"-rw-r--r--    1 0 0 5 Jan 01  2020 victim.txt\r\n",
                b"-rw-r--r--    1 0        0               2 Dec 01 09:16 a\n",
                b"b\n",
                b"-rw-r--r--    1 0 0 5 Jan 01  2020 c.txt\r\n",
                b"-rw-r--r--    1 0        0              20 Dec 01 09:16 victim.txt\r\n",
            ],
        );
        assert_eq!(entries, [("victim.txt".to_string(), 20)]);
        assert_eq!(skipped, 5);
    }

    #[test]
    fn a_name_listed_twice_is_dropped_every_copy() {
        // A name with CR LF in it splits records as real line ends do: the forged copy parses.
        let (entries, skipped) = run(
            ListFormat::Mlsd,
            &[
                b"modify=20261201091639;size=1;type=file; a.txt\r\n",
                b"modify=20261201091639;size=5;type=file; evil\r\n",
                b"type=file;size=5;modify=20200101000000; victim.txt\r\n",
                REAL,
                b"modify=20261201091639;size=1;type=file; z.txt\r\n",
            ],
        );
        let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a.txt", "evil", "z.txt"]);
        assert_eq!(skipped, 2);
        // A forged directory line too: it would be listed (recursed into) twice.
        let mut out = Listing::default();
        let mut p = DirParser::new("/in", ListFormat::Mlsd);
        p.push_line(b"modify=20261201091639;type=dir; sub\r\n", &mut out);
        p.push_line(b"type=dir; sub\r\n", &mut out);
        p.finish(&mut out);
        assert!(out.entries.is_empty() && p.subdirs.is_empty());
    }

    #[test]
    fn copies_are_found_in_name_order_and_out_of_it() {
        let line = |name: &str| format!("modify=20261201091639;size=1;type=file; {name}\r\n");
        let names = |order: &[&str]| -> (Vec<String>, u64) {
            let lines: Vec<String> = order.iter().map(|n| line(n)).collect();
            let lines: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
            let (entries, skipped) = run(ListFormat::Mlsd, &lines);
            (entries.into_iter().map(|(n, _)| n).collect(), skipped)
        };
        // In name order (the copies are neighbours), three copies.
        assert_eq!(
            names(&["a", "b", "b", "b", "c"]),
            (vec!["a".into(), "c".into()], 3)
        );
        // Out of order: the copies are far apart.
        assert_eq!(
            names(&["c", "b", "a", "b", "d"]),
            (vec!["c".into(), "a".into(), "d".into()], 2)
        );
        // No copies either way.
        assert_eq!(names(&["a", "b", "c"]).1, 0);
        assert_eq!(names(&["c", "a", "b"]).1, 0);
    }

    #[test]
    fn entries_on_both_sides_of_an_unparsable_line_are_dropped() {
        // A name that begins with a line break (CR LF): the first half does not parse, the
        // second half does.
        let (entries, skipped) = run(
            ListFormat::Mlsd,
            &[
                b"modify=20261201091639;size=1;type=file; a.txt\r\n",
                b"modify=20261201091639;size=5;type=file; \r\n",
                b"type=file;size=5;modify=20200101000000; victim.txt\r\n",
                b"modify=20261201091639;type=cdir; .\r\n",
                b"modify=20261201091639;size=1;type=file; z.txt\r\n",
            ],
        );
        assert_eq!(entries, [("z.txt".to_string(), 1)]);
        // The garbage line, the entry before it, the forged one after it.
        assert_eq!(skipped, 3);
    }

    #[test]
    fn a_listing_with_bare_lf_line_ends_is_read_line_by_line() {
        let mut lines = Vec::new();
        for i in 0..2000 {
            lines.push(format!("-rw-r--r-- 1 0 0 {i} Nov 27 10:00 f{i}.txt\n").into_bytes());
        }
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let (entries, skipped) = run(ListFormat::List, &lines);
        assert_eq!(entries.len(), 2000);
        assert_eq!(skipped, 0);
        // Short ones too, and the last line without a line end.
        let (entries, _) = run(
            ListFormat::List,
            &[
                b"-rw-r--r-- 1 0 0 1 Nov 27 10:00 a\n",
                b"-rw-r--r-- 1 0 0 1 Nov 27 10:00 b",
            ],
        );
        assert_eq!(entries.len(), 2);
    }
}
