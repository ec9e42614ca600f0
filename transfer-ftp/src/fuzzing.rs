//! Entry points of the private listing parsers for the fuzz targets in `fuzz/` (feature
//! `fuzzing`, hidden from the docs; not a stable API, nothing else may use it).
//!
//! Thin wrappers only: [`parse_listing`] feeds bytes to `parse::DirParser` exactly as
//! `FtpFs` feeds it from the data connection (one line per `read_until(b'\n')`, the last one
//! possibly without a line end, then `finish`), so what a fuzz target asserts of the result
//! holds for real listings too.

use coord_core::Listing;

use crate::parse::{DirParser, ListFormat, parse_mdtm_reply};

/// Which listing command the bytes answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `MLSD` facts lines.
    Mlsd,
    /// `LIST` lines (POSIX `ls -l` or DOS/IIS, detected per line).
    List,
}

/// What one directory's listing parsed to.
#[derive(Debug, Default)]
pub struct ParsedListing {
    /// The accepted entries and the count of skipped records.
    pub listing: Listing,
    /// The directories found (what `FtpFs` would recurse into).
    pub subdirs: Vec<String>,
    /// The indexes into `listing.entries` of the regular files that carry a LIST date stamp
    /// (what `FtpFs` would ask MDTM about).
    pub stamped: Vec<usize>,
}

/// Parses `data` as the whole listing of the remote directory `dir`.
pub fn parse_listing(format: Format, dir: &str, data: &[u8]) -> ParsedListing {
    let format = match format {
        Format::Mlsd => ListFormat::Mlsd,
        Format::List => ListFormat::List,
    };
    let mut listing = Listing::default();
    let mut parser = DirParser::new(dir, format);
    for line in data.split_inclusive(|&b| b == b'\n') {
        parser.push_line(line, &mut listing);
    }
    parser.finish(&mut listing);
    ParsedListing {
        listing,
        subdirs: std::mem::take(&mut parser.subdirs),
        stamped: parser.stamps.iter().map(|&(i, _)| i).collect(),
    }
}

/// Parses an `MDTM` reply (`213 YYYYMMDDHHMMSS[.sss]`) into a time, as `FtpFs` does.
pub fn mdtm_reply(body: &[u8]) -> Option<std::time::SystemTime> {
    parse_mdtm_reply(body)
}
