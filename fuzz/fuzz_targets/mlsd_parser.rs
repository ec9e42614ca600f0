//! transfer-ftp's MLSD parser (RFC 3659 facts lines): arbitrary bytes as the whole listing of
//! one directory, and as an MDTM reply (the same time parser as the `modify` fact). See
//! common/listing.rs for what is asserted.
#![no_main]

#[path = "common/listing.rs"]
mod listing;

use libfuzzer_sys::fuzz_target;
use transfer_ftp::fuzzing::{mdtm_reply, Format};

fuzz_target!(|data: &[u8]| {
    listing::check(Format::Mlsd, data);
    let _ = mdtm_reply(data);
});
