//! coord-sqlite: placeholder, see the issue that builds it.
