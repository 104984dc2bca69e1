//! Reading and writing the files of the TLS layer, with errors that name them.

use std::io::Write;
use std::path::Path;

use super::TlsError;

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Certificates and configuration: readable by anyone (mode 0644).
    Public,
    /// Private keys: readable by the owner only (mode 0600).
    Private,
}

impl Access {
    #[cfg(unix)]
    fn mode(self) -> u32 {
        match self {
            Access::Public => 0o644,
            Access::Private => 0o600,
        }
    }
}

/// Reads a UTF-8 file.
pub(super) fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Creates a directory and its parents.
pub(super) fn create_dir(path: &Path) -> Result<(), TlsError> {
    std::fs::create_dir_all(path).map_err(|source| TlsError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes `contents` to `path` atomically: into a temporary file in the same directory, created
/// with its final mode so a key is never readable by others, then renamed over `path`.
pub(super) fn write_file(path: &Path, contents: &str, access: Access) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path has no file name",
        ))
    })?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(".tmp");
    let temp = path.with_file_name(temp_name);

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(access.mode());
    }
    let result = (|| {
        let mut file = options.open(&temp)?;
        // A leftover temporary file keeps its old mode; set it explicitly.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(access.mode()))?;
        }
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        // Best effort: the write already failed, and that is the error worth reporting.
        let _ = std::fs::remove_file(&temp);
    }
    result.map_err(error)
}
