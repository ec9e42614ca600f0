//! transfer-ftp: placeholder, see the issue that builds it.
