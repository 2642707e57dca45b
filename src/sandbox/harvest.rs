//! Copy a script's output folder to the host, trusting nothing in it: only regular files with
//! plain, bounded names become artifacts; a link, device, FIFO, odd name or size past the caps
//! rejects the whole harvest, and nothing of it is kept.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::Artifact;

/// Caps on what a harvest may bring back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Total bytes of all files.
    pub bytes: u64,
    /// Number of files.
    pub files: usize,
    /// Folder depth of any file (a file at the top has depth 1).
    pub depth: usize,
}

/// Why a harvest was refused.
pub type Rejection = String;

/// Check one archive path (the output folder's own name already stripped) and return it as
/// `/`-separated text. Refuses `..`, absolute paths, non-UTF-8, control characters and paths
/// deeper than `max_depth`.
pub fn checked_path(path: &Path, max_depth: usize) -> Result<String, Rejection> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                let Some(part) = part.to_str() else {
                    return Err(format!("non-UTF-8 name {}", path.display()));
                };
                if part.chars().any(char::is_control) {
                    return Err(format!("name with control characters {part:?}"));
                }
                parts.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "path escapes the output folder: {}",
                    path.display()
                ));
            }
        }
    }
    if parts.len() > max_depth {
        return Err(format!(
            "{} is nested deeper than {max_depth} levels",
            parts.join("/")
        ));
    }
    Ok(parts.join("/"))
}

/// Unpack a tar of the output folder (as the engine's archive API returns it, every path
/// under one top folder) into `dest`, which must not exist yet. On any rejection `dest` is
/// removed and the reason returned.
pub fn unpack(
    tar: impl Read,
    dest: &Path,
    caps: Caps,
) -> io::Result<Result<Vec<Artifact>, Rejection>> {
    fs::create_dir_all(dest)?;
    let outcome = unpack_into(tar, dest, caps);
    match outcome {
        Ok(Ok(mut artifacts)) => {
            artifacts.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(Ok(artifacts))
        }
        Ok(Err(rejection)) => {
            fs::remove_dir_all(dest)?;
            Ok(Err(rejection))
        }
        Err(err) => {
            let _ = fs::remove_dir_all(dest);
            Err(err)
        }
    }
}

fn unpack_into(
    tar: impl Read,
    dest: &Path,
    caps: Caps,
) -> io::Result<Result<Vec<Artifact>, Rejection>> {
    let mut archive = tar::Archive::new(tar);
    let mut artifacts = Vec::new();
    let mut total = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        // The archive API puts everything under the folder's own name (`out/...`).
        let inner: PathBuf = raw.components().skip(1).collect();
        let rel = match checked_path(&inner, caps.depth) {
            Ok(rel) => rel,
            Err(why) => return Ok(Err(why)),
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if !rel.is_empty() {
                fs::create_dir_all(dest.join(&rel))?;
            }
            continue;
        }
        if !kind.is_file() {
            let what = match kind {
                tar::EntryType::Symlink => "a symbolic link",
                tar::EntryType::Link => "a hard link",
                tar::EntryType::Fifo => "a FIFO",
                tar::EntryType::Char | tar::EntryType::Block => "a device node",
                _ => "not a regular file",
            };
            return Ok(Err(format!("{rel} is {what}")));
        }
        if rel.is_empty() {
            return Ok(Err("the output folder itself is not a folder".to_string()));
        }
        if artifacts.len() == caps.files {
            return Ok(Err(format!("more than {} files", caps.files)));
        }
        let size = entry.header().size()?;
        total += size;
        if total > caps.bytes {
            return Ok(Err(format!("more than {} bytes of files", caps.bytes)));
        }
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        // create_new: never write through anything that already exists at that name.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)?;
        let copied = io::copy(&mut (&mut entry).take(size), &mut file)?;
        file.flush()?;
        // Mode bits are not carried over: a setuid bit from the container stays there.
        artifacts.push(Artifact {
            path: rel,
            size: copied,
        });
    }
    Ok(Ok(artifacts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    const CAPS: Caps = Caps {
        bytes: 1000,
        files: 3,
        depth: 3,
    };

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o4755);
            // set_path refuses `..`; write the raw name to build hostile archives.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn harvest(
        entries: &[(&str, tar::EntryType, &[u8])],
    ) -> (Result<Vec<Artifact>, Rejection>, bool) {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("files");
        let outcome = unpack(tar_of(entries).as_slice(), &dest, CAPS).unwrap();
        (outcome, dest.exists())
    }

    #[test]
    fn keeps_regular_files_and_folders() {
        let (outcome, _) = harvest(&[
            ("out/", tar::EntryType::Directory, b""),
            ("out/b.csv", tar::EntryType::Regular, b"x,y\n"),
            ("out/charts/a.png", tar::EntryType::Regular, b"png"),
        ]);
        assert_eq!(
            outcome,
            Ok(vec![
                Artifact {
                    path: "b.csv".into(),
                    size: 4
                },
                Artifact {
                    path: "charts/a.png".into(),
                    size: 3
                },
            ])
        );
    }

    #[test]
    fn does_not_carry_mode_bits_over() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("files");
        let tar = tar_of(&[("out/suid", tar::EntryType::Regular, b"#!/bin/sh")]);
        unpack(tar.as_slice(), &dest, CAPS).unwrap().unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dest.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7000, 0);
    }

    #[test]
    fn rejects_links_and_special_files_and_keeps_nothing() {
        for (kind, what) in [
            (tar::EntryType::Symlink, "a symbolic link"),
            (tar::EntryType::Link, "a hard link"),
            (tar::EntryType::Fifo, "a FIFO"),
            (tar::EntryType::Char, "a device node"),
        ] {
            let (outcome, exists) = harvest(&[
                ("out/ok.txt", tar::EntryType::Regular, b"fine"),
                ("out/evil", kind, b""),
            ]);
            assert_eq!(outcome, Err(format!("evil is {what}")));
            assert!(!exists, "a rejected harvest leaves nothing behind");
        }
    }

    #[test]
    fn rejects_names_that_escape_or_carry_control_characters() {
        let (outcome, _) = harvest(&[("out/../../etc/x", tar::EntryType::Regular, b"x")]);
        assert_eq!(
            outcome,
            Err("path escapes the output folder: ../../etc/x".into())
        );
        let (outcome, _) = harvest(&[("out/a\nb", tar::EntryType::Regular, b"x")]);
        assert_eq!(
            outcome,
            Err("name with control characters \"a\\nb\"".into())
        );
    }

    #[test]
    fn rejects_past_each_cap() {
        let (outcome, _) = harvest(&[("out/a/b/c/d", tar::EntryType::Regular, b"x")]);
        assert_eq!(
            outcome,
            Err("a/b/c/d is nested deeper than 3 levels".into())
        );
        let many: Vec<(String, tar::EntryType, &[u8])> = (0..4)
            .map(|i| (format!("out/{i}"), tar::EntryType::Regular, b"x".as_slice()))
            .collect();
        let many: Vec<(&str, tar::EntryType, &[u8])> =
            many.iter().map(|(p, k, d)| (p.as_str(), *k, *d)).collect();
        assert_eq!(harvest(&many).0, Err("more than 3 files".into()));
        let big = vec![0u8; 1001];
        assert_eq!(
            harvest(&[("out/big", tar::EntryType::Regular, &big)]).0,
            Err("more than 1000 bytes of files".into())
        );
    }

    #[test]
    fn checked_path_normalises_current_dir() {
        assert_eq!(checked_path(Path::new("./a/./b"), 4), Ok("a/b".into()));
        assert!(checked_path(Path::new("/abs"), 4).is_err());
    }
}
