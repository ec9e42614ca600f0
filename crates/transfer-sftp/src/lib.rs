//! transfer-sftp: placeholder, see the issue that builds it.
