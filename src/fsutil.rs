//! Small filesystem helpers: writes that a crash cannot leave half done.

use std::path::Path;

use crate::error::{Error, Result};

/// Write `bytes` to a temporary file beside `path`, then rename it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(Error::io(format!("writing {}", path.display())))?;
    file.persist(path).map_err(|err| Error::Io {
        context: format!("writing {}", path.display()),
        source: err.error,
    })?;
    Ok(())
}
