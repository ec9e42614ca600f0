//! coord-postgres: placeholder, see the issue that builds it.
