//! listener::Config::load: TOML text and FTPL_ environment variables must load or give a clean
//! error, never panic; what loads has passed validation.
//!
//! The input is the TOML file's text, then optionally a NUL byte and environment variables,
//! one `NAME=VALUE` a line (`FTPL_` is put before a name that does not start with it, in any
//! case). An empty TOML part loads without a file (environment and defaults only). Built with
//! the `ftp` source only: other backends and sources are refused as not built (a clean error).
#![no_main]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use listener::Config;

const MAX_VARS: usize = 16;

fn toml_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("ha-listener-fuzz-{}.toml", std::process::id()))
    })
}

/// Removes every FTPL_ variable (ours from the last run, and any the shell had).
fn clear_ftpl() {
    let names: Vec<OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| {
            name.as_bytes()
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"FTPL_"))
        })
        .collect();
    for name in names {
        std::env::remove_var(name);
    }
}

fuzz_target!(|data: &[u8]| {
    let (toml, env) = match data.iter().position(|&b| b == 0) {
        Some(nul) => (&data[..nul], &data[nul + 1..]),
        None => (data, &b""[..]),
    };
    clear_ftpl();
    for line in env.split(|&b| b == b'\n').take(MAX_VARS) {
        let Some(eq) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&line[..eq], &line[eq + 1..]);
        if name.is_empty() || name.contains(&0) || value.contains(&0) {
            continue;
        }
        let mut full = Vec::with_capacity(name.len() + 5);
        if !name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"FTPL_"))
        {
            full.extend_from_slice(b"FTPL_");
        }
        full.extend_from_slice(name);
        std::env::set_var(OsStr::from_bytes(&full), OsStr::from_bytes(value));
    }
    let result = if toml.is_empty() {
        Config::load(None)
    } else {
        std::fs::write(toml_path(), toml).expect("write the fuzz TOML file");
        Config::load(Some(toml_path()))
    };
    match result {
        Ok(config) => {
            config.validate().expect("a loaded config validates");
            let _ = config.to_redacted_toml();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    clear_ftpl();
});
