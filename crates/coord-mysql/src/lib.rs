//! coord-mysql: placeholder, see the issue that builds it.
