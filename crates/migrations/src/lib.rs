//! migrations: placeholder, see the issue that builds it.
