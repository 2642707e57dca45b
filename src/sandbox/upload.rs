//! Inputs and states sent through the engine's archive API, for an engine that cannot see
//! planbox's files (another machine, or `--no-bind`): a tar stream built on a blocking thread
//! from the files as they are read, so memory stays bounded whatever their size.

use std::io::Write;
use std::path::PathBuf;

use bollard::Docker;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{Error, Result};

/// Bytes per chunk of the stream.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the reading thread and the request.
const IN_FLIGHT: usize = 4;

/// One file to send: where it is on this machine and its name in the target folder.
#[derive(Debug, Clone)]
pub(super) struct Upload {
    /// The file on this machine.
    pub(super) source: PathBuf,
    /// Its name in the target folder.
    pub(super) name: String,
}

/// Write `files` into `dir` of the (created, not started) `container`, read-only to
/// everyone and owned by root; returns each file's sha256 as sent, in order.
pub(super) async fn upload(
    docker: &Docker,
    container: &str,
    dir: &str,
    files: Vec<Upload>,
) -> Result<Vec<String>> {
    let (sender, receiver) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || write_tar(files, sender));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let options = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
        .path(dir)
        .build();
    let sent = docker
        .upload_to_container(container, Some(options), bollard::body_stream(stream))
        .await;
    let written = writer.await.map_err(|err| Error::Io {
        context: "building the input archive".into(),
        source: std::io::Error::other(err.to_string()),
    })?;
    // The engine's refusal first: it is why the archive's writer found the stream closed.
    sent?;
    written
}

/// Chunks what the tar builder writes and hands each to the request.
struct ChannelWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.sender
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the engine stopped reading the archive"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: std::io::Read> std::io::Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The tar archive of `files`, written to `sender`; each file's sha256.
fn write_tar(files: Vec<Upload>, sender: mpsc::Sender<Bytes>) -> Result<Vec<String>> {
    let io = |context: String| move |source: std::io::Error| Error::Io { context, source };
    let writer = ChannelWriter {
        sender,
        buffer: Vec::with_capacity(CHUNK),
    };
    let mut builder = tar::Builder::new(writer);
    let mut hashes = Vec::with_capacity(files.len());
    for file in files {
        let context = format!("sending {} to the engine", file.source.display());
        let opened = std::fs::File::open(&file.source).map_err(io(context.clone()))?;
        let size = opened.metadata().map_err(io(context.clone()))?.len();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(0o444);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let mut reader = Hashing {
            inner: std::io::Read::take(opened, size),
            hash: Sha256::new(),
        };
        builder
            .append_data(&mut header, &file.name, &mut reader)
            .map_err(io(context))?;
        hashes.push(hex::encode(reader.hash.finalize()));
    }
    let mut writer = builder
        .into_inner()
        .map_err(io("finishing the input archive".into()))?;
    writer
        .flush()
        .map_err(io("finishing the input archive".into()))?;
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_each_file_read_only_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.csv");
        let content: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&big, &content).unwrap();
        std::fs::write(dir.path().join("small.txt"), "x,y\n").unwrap();
        let (sender, mut receiver) = mpsc::channel(IN_FLIGHT);
        let files = vec![
            Upload {
                source: big,
                name: "sales.csv".into(),
            },
            Upload {
                source: dir.path().join("small.txt"),
                name: "a name longer than the hundred bytes a plain tar header holds, so the long-name extension is needed.txt".into(),
            },
        ];
        let writer = std::thread::spawn(move || write_tar(files, sender));
        let mut archive = Vec::new();
        while let Some(chunk) = receiver.blocking_recv() {
            assert!(chunk.len() <= CHUNK + 512 * 4, "{}", chunk.len());
            archive.extend_from_slice(&chunk);
        }
        let hashes = writer.join().unwrap().unwrap();
        assert_eq!(hashes[0], hex::encode(Sha256::digest(&content)));
        let mut read = tar::Archive::new(archive.as_slice());
        let entries: Vec<(String, u32, u64, Vec<u8>)> = read
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut data = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
                (
                    entry.path().unwrap().display().to_string(),
                    entry.header().mode().unwrap(),
                    entry.header().uid().unwrap(),
                    data,
                )
            })
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].0, "sales.csv");
        assert_eq!((entries[0].1, entries[0].2), (0o444, 0));
        assert_eq!(entries[0].3, content);
        assert!(entries[1].0.ends_with("extension is needed.txt"));
        assert_eq!(entries[1].3, b"x,y\n");
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let (sender, _receiver) = mpsc::channel(IN_FLIGHT);
        let err = write_tar(
            vec![Upload {
                source: "/nonexistent/planbox/input.csv".into(),
                name: "input.csv".into(),
            }],
            sender,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/planbox/input.csv"),
            "{err}"
        );
    }
}
