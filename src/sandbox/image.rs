//! The sandbox image: built from the files under `sandbox-images/python` (compiled into the
//! binary), tagged with their content hash, so a stale image is rebuilt and a current one is
//! reused. With no registry, the base is a Debian rootfs made by `build-rootfs.sh` and
//! imported; with one, an official Python image can be named as the base instead.

use std::collections::HashMap;
use std::path::Path;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The image's build files, by name.
pub const FILES: &[(&str, &str)] = &[
    (
        "Dockerfile",
        include_str!("../../sandbox-images/python/Dockerfile"),
    ),
    (
        "entry.sh",
        include_str!("../../sandbox-images/python/entry.sh"),
    ),
    (
        "build-rootfs.sh",
        include_str!("../../sandbox-images/python/build-rootfs.sh"),
    ),
    (
        "strip-rootfs.sh",
        include_str!("../../sandbox-images/python/strip-rootfs.sh"),
    ),
    (
        "packages.txt",
        include_str!("../../sandbox-images/python/packages.txt"),
    ),
    (
        "strip-packages.txt",
        include_str!("../../sandbox-images/python/strip-packages.txt"),
    ),
    (
        "add-wheels.sh",
        include_str!("../../sandbox-images/python/add-wheels.sh"),
    ),
    (
        "wheels.txt",
        include_str!("../../sandbox-images/python/wheels.txt"),
    ),
    (
        "runner.py",
        include_str!("../../sandbox-images/python/runner.py"),
    ),
];

/// Files that shape the imported base (the rootfs); the rest only shape the layer on top.
const BASE_FILES: &[&str] = &[
    "build-rootfs.sh",
    "strip-rootfs.sh",
    "packages.txt",
    "strip-packages.txt",
    "add-wheels.sh",
    "wheels.txt",
];

fn hash_of(names: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (name, text) in FILES.iter().filter(|(name, _)| names.contains(name)) {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())[..12].to_string()
}

/// The sandbox image's tag: `planbox-sandbox:<content hash of every build file>`.
pub fn tag() -> String {
    let all: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
    format!("planbox-sandbox:{}", hash_of(&all))
}

/// The imported rootfs image's tag: `planbox-base:<content hash of the rootfs files>`.
pub fn base_tag() -> String {
    format!("planbox-base:{}", hash_of(BASE_FILES))
}

/// Where the image comes from.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Use this image as the base instead of a Debian rootfs (e.g. `python:3.11-slim` where a
    /// registry is reachable).
    pub base: Option<String>,
    /// Rebuild even when an image with the current tag exists.
    pub force: bool,
}

/// True when the engine has this image.
pub async fn exists(docker: &Docker, name: &str) -> Result<bool> {
    match docker.inspect_image(name).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// One `planbox-sandbox` image the engine holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Its tags, `planbox-sandbox:<hash>` among them.
    pub tags: Vec<String>,
    /// Size in bytes.
    pub size: u64,
    /// Creation time, in seconds since the Unix epoch.
    pub created: i64,
}

/// Every image of the sandbox image's repository (`planbox-sandbox`) the engine holds.
pub async fn installed(docker: &Docker) -> Result<Vec<Installed>> {
    let current = tag();
    let repo = current.split(':').next().unwrap_or_default();
    let filters = HashMap::from([("reference", vec![repo])]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    Ok(docker
        .list_images(Some(options))
        .await?
        .into_iter()
        .map(|i| Installed {
            tags: i.repo_tags,
            size: i.size.max(0) as u64,
            created: i.created,
        })
        .collect())
}

/// Whether the engine holds the image this planbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence<'a> {
    /// The current tag is there.
    Current(&'a Installed),
    /// Only other tags of the repository are there (sorted): the build files changed since.
    Stale(Vec<&'a str>),
    /// No image of the repository at all.
    Missing,
}

/// Find `current` (a tag such as [`tag`]) among `images`.
pub fn presence<'a>(current: &str, images: &'a [Installed]) -> Presence<'a> {
    if let Some(image) = images
        .iter()
        .find(|image| image.tags.iter().any(|t| t == current))
    {
        return Presence::Current(image);
    }
    let repo = current.split(':').next().unwrap_or_default();
    let mut older: Vec<&str> = images
        .iter()
        .flat_map(|image| image.tags.iter())
        .filter(|tag| tag.starts_with(&format!("{repo}:")))
        .map(String::as_str)
        .collect();
    older.sort_unstable();
    if older.is_empty() {
        Presence::Missing
    } else {
        Presence::Stale(older)
    }
}

/// Make sure the current sandbox image exists, building what is missing. `progress` gets one
/// line at a time. Returns the image tag.
pub async fn build(
    docker: &Docker,
    options: &BuildOptions,
    mut progress: impl FnMut(&str),
) -> Result<String> {
    let tag = tag();
    if !options.force && options.base.is_none() && exists(docker, &tag).await? {
        progress(&format!("{tag} is current"));
        return Ok(tag);
    }
    let base = match &options.base {
        Some(base) => base.clone(),
        None => {
            let base = base_tag();
            if options.force || !exists(docker, &base).await? {
                import_rootfs(docker, &base, &mut progress).await?;
            } else {
                progress(&format!("{base} is current"));
            }
            base
        }
    };
    build_layer(docker, &base, &tag, &mut progress).await?;
    Ok(tag)
}

/// Run build-rootfs.sh into a temporary folder, then import the tarball as `base`.
async fn import_rootfs(docker: &Docker, base: &str, progress: &mut impl FnMut(&str)) -> Result<()> {
    let dir = tempfile::tempdir().map_err(Error::io("creating a folder for the rootfs"))?;
    for (name, text) in FILES {
        write_script(&dir.path().join(name), text)?;
    }
    let tarball = dir.path().join("rootfs.tar");
    progress("building the Debian rootfs (mmdebstrap; a few minutes the first time)");
    let status = tokio::process::Command::new("sh")
        .arg(dir.path().join("build-rootfs.sh"))
        .arg(&tarball)
        .stdin(std::process::Stdio::null())
        .status()
        .await
        .map_err(Error::io("running build-rootfs.sh"))?;
    if !status.success() {
        return Err(Error::ImageBuild(format!(
            "build-rootfs.sh failed ({status}); see its messages above"
        )));
    }
    progress(&format!("importing the rootfs as {base}"));
    let file = tokio::fs::File::open(&tarball)
        .await
        .map_err(Error::io("opening the rootfs tarball"))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let (repo, version) = base.split_once(':').unwrap_or((base, "latest"));
    let options = CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(repo)
        .tag(version)
        .build();
    let mut stream = docker.create_image(Some(options), Some(body), None);
    while let Some(info) = stream.next().await {
        let info = info?;
        if let Some(status) = info.status {
            progress(&status);
        }
    }
    Ok(())
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(Error::io(format!("making {} executable", path.display())))
}

/// Build the Dockerfile on top of `base` through the engine's build API, streaming its log.
async fn build_layer(
    docker: &Docker,
    base: &str,
    tag: &str,
    progress: &mut impl FnMut(&str),
) -> Result<()> {
    let mut context = tar::Builder::new(Vec::new());
    for (name, text) in FILES {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        context
            .append_data(&mut header, name, text.as_bytes())
            .map_err(Error::io("packing the build context"))?;
    }
    let context = context
        .into_inner()
        .map_err(Error::io("packing the build context"))?;
    let args = HashMap::from([("BASE", base)]);
    let labels = HashMap::from([("planbox.image", "sandbox")]);
    let options = BuildImageOptionsBuilder::new()
        .t(tag)
        .buildargs(&args)
        .labels(&labels)
        .rm(true)
        .forcerm(true)
        .build();
    progress(&format!("building {tag} on {base}"));
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(info) = stream.next().await {
        let info = info.map_err(|err| match err {
            bollard::errors::Error::DockerStreamError { error } => Error::ImageBuild(error),
            other => other.into(),
        })?;
        if let Some(error) = info.error_detail.and_then(|e| e.message) {
            return Err(Error::ImageBuild(error));
        }
        if let Some(line) = info.stream {
            let line = line.trim_end();
            if !line.is_empty() {
                progress(line);
            }
        }
    }
    if !exists(docker, tag).await? {
        return Err(Error::ImageBuild(format!(
            "the engine reported no error but has no {tag}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_content_hashes() {
        let current = tag();
        let hash = current.strip_prefix("planbox-sandbox:").unwrap();
        assert_eq!(hash.len(), 12);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(tag(), base_tag().replace("planbox-base", "planbox-sandbox"));
    }

    #[test]
    fn an_image_is_current_missing_or_stale() {
        let current = "planbox-sandbox:0123456789ab";
        let image = |tags: &[&str]| Installed {
            tags: tags.iter().map(ToString::to_string).collect(),
            size: 1,
            created: 0,
        };
        let both = [image(&["planbox-sandbox:ba9876543210", current])];
        assert_eq!(presence(current, &both), Presence::Current(&both[0]));
        assert_eq!(presence(current, &[]), Presence::Missing);
        let old = [
            image(&["planbox-sandbox:ff"]),
            image(&["planbox-sandbox:aa", "other:1"]),
        ];
        assert_eq!(
            presence(current, &old),
            Presence::Stale(vec!["planbox-sandbox:aa", "planbox-sandbox:ff"])
        );
    }
}
