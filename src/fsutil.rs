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

/// Whether `path` holds an image of the kind its name says: the format's signature and, for
/// PNG, a header chunk first and an end chunk last; for JPEG, start and end markers.
pub fn is_readable_image(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if name.ends_with(".png") {
        bytes.len() >= 8 + 25 + 12
            && bytes.starts_with(b"\x89PNG\r\n\x1a\n")
            && &bytes[12..16] == b"IHDR"
            && bytes.ends_with(&[0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82])
    } else if name.ends_with(".jpg") || name.ends_with(".jpeg") {
        bytes.starts_with(&[0xff, 0xd8, 0xff]) && bytes.ends_with(&[0xff, 0xd9])
    } else if name.ends_with(".pdf") {
        bytes.starts_with(b"%PDF-")
    } else {
        // SVG: text that holds an svg element.
        std::str::from_utf8(&bytes).is_ok_and(|text| text.contains("<svg"))
    }
}
