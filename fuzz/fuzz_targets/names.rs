//! coord_core::check_name and coord_core::local_target (names.rs): a name accepted is one plain
//! segment; a relative path accepted maps, segment for segment, to a path under the base
//! directory and never escapes it.
#![no_main]

use std::path::{Component, Path};

use coord_core::{check_name, local_target};
use libfuzzer_sys::fuzz_target;

const BASES: [&str; 3] = ["/data/in", "relative/base", "/"];

fuzz_target!(|data: &[u8]| {
    // One listed name, raw bytes.
    if let Ok(name) = check_name(data) {
        assert_eq!(name.as_bytes(), data, "check_name changed the name");
        assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
        assert!(!name.contains('/') && !name.contains('\\'), "{name:?}");
        assert!(!name.chars().any(char::is_control), "{name:?}");
        for base in BASES {
            if let Ok(p) = local_target(Path::new(base), name) {
                assert_eq!(p.parent(), Some(Path::new(base)), "{name:?} -> {p:?}");
            }
        }
    }

    // A relative path, as the poller hands it to a local download.
    let Ok(relative) = std::str::from_utf8(data) else {
        return;
    };
    for base in BASES {
        let base = Path::new(base);
        let Ok(p) = local_target(base, relative) else {
            continue;
        };
        let rest = p
            .strip_prefix(base)
            .unwrap_or_else(|_| panic!("{relative:?} -> {p:?} is not under {base:?}"));
        let segments: Vec<&str> = relative.split('/').collect();
        let parts: Vec<Component<'_>> = rest.components().collect();
        assert_eq!(parts.len(), segments.len(), "{relative:?} -> {p:?}");
        for (part, segment) in parts.iter().zip(&segments) {
            assert_eq!(
                *part,
                Component::Normal(segment.as_ref()),
                "{relative:?} -> {p:?}: a segment changed or is not a plain name"
            );
            assert!(check_name(segment.as_bytes()).is_ok(), "{relative:?}");
        }
    }
});
