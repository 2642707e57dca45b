//! The disk check: the run folders' disk has room and may be written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Check, DISK, size, within};

/// Below this much free space for run folders, a warning: a run keeps every attempt's
/// outputs (up to 256 MiB each).
const LOW_DISK: u64 = 2 * 1024 * 1024 * 1024;

pub(super) async fn disk_check(runs_dir: PathBuf, deadline: Duration) -> Check {
    // statvfs can block on a dead network mount: off the async threads, under the deadline.
    let work = tokio::task::spawn_blocking(move || disk(&runs_dir));
    match within(deadline, work).await {
        Some(Ok(check)) => check,
        Some(Err(err)) => Check::fail(DISK, format!("the disk check crashed: {err}"), "df -h ."),
        None => Check::fail(
            DISK,
            format!("the file system did not answer within {deadline:?}"),
            "df -h .   (a hung network mount?)",
        ),
    }
}

fn disk(runs_dir: &Path) -> Check {
    if runs_dir.exists() && !runs_dir.is_dir() {
        return Check::fail(
            DISK,
            format!("{} is not a folder", runs_dir.display()),
            "--runs-dir DIR   (name a folder for run folders)",
        );
    }
    // The folder is created on the first run: measure the nearest folder that exists.
    let probe = runs_dir
        .ancestors()
        .find(|p| p.is_dir())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (free, writable) = match statvfs(probe) {
        Ok(found) => found,
        Err(err) => {
            return Check::fail(
                DISK,
                format!("cannot measure free space at {}: {err}", probe.display()),
                "--runs-dir DIR   (a folder on a local disk)",
            );
        }
    };
    let place = if probe == runs_dir {
        format!("{}", runs_dir.display())
    } else {
        format!("{} (measured at {})", runs_dir.display(), probe.display())
    };
    if !writable {
        return Check::fail(
            DISK,
            format!("{place} is not writable"),
            "--runs-dir DIR   (a folder this user may write)",
        );
    }
    let detail = format!("{} free for {place}", size(free));
    if free < LOW_DISK {
        Check::warn(
            DISK,
            format!(
                "{detail}: under {}; runs keep every attempt's files",
                size(LOW_DISK)
            ),
            format!(
                "du -sh {}/* | sort -h   (remove old runs), or --runs-dir DIR on a larger disk",
                runs_dir.display()
            ),
        )
    } else {
        Check::ok(DISK, detail)
    }
}

/// Free bytes for unprivileged users, and whether this process may write there.
fn statvfs(path: &Path) -> std::io::Result<(u64, bool)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer for the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // SAFETY: c_path is NUL-terminated. access() also reports a read-only file system.
    let writable = unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0;
    // The field types are narrower on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    Ok((free, writable))
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn a_missing_runs_folder_is_measured_at_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let check = disk(&dir.path().join("runs/deeper"));
        assert_ne!(check.status, Status::Fail, "{check:?}");
        assert!(
            check
                .detail
                .contains(&format!("(measured at {})", dir.path().display())),
            "{check:?}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(disk(&file).status, Status::Fail);
    }
}
