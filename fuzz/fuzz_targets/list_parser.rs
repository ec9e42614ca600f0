//! transfer-ftp's LIST parser (POSIX `ls -l` and DOS/IIS lines): arbitrary bytes as the whole
//! listing of one directory. See common/listing.rs for what is asserted.
#![no_main]

#[path = "common/listing.rs"]
mod listing;

use libfuzzer_sys::fuzz_target;
use transfer_ftp::fuzzing::Format;

fuzz_target!(|data: &[u8]| listing::check(Format::List, data));
