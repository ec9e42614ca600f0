//! listener: placeholder.
