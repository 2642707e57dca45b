//! `planbox watch RUN` and `run --watch`: the live view of a run in the browser, served on a
//! loopback address (a free port unless `--listen` says otherwise) until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use planbox::run::RunFolder;

use super::shutdown_signal;

/// The live-view flags of `run` and `resume`.
#[derive(Debug, Clone, clap::Args)]
pub(super) struct WatchFlags {
    /// Serve a live view of the run in the browser (its address is printed); it stays up after
    /// the run until Ctrl-C.
    #[arg(long)]
    pub(super) watch: bool,
    /// Where the live view listens: loopback and a free port unless this says otherwise.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub(super) listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub(super) struct WatchArgs {
    /// The run: its folder, or its id under --runs-dir.
    #[arg(value_name = "RUN")]
    pub(super) run_ref: String,
    /// Folder that holds the run folders.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    pub(super) runs_dir: PathBuf,
    /// Where to listen: loopback and a free port unless this says otherwise.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub(super) listen: SocketAddr,
}

/// Start the live view of the run in `dir` and say where it is.
pub(super) async fn start(
    dir: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<planbox::watch::Watch> {
    let view = planbox::watch::serve(dir, listen).await?;
    if !listen.ip().is_loopback() {
        eprintln!(
            "planbox: the live view listens on {}, beyond this machine: anyone who reaches it sees the run",
            view.addr
        );
    }
    eprintln!("live view: {}", view.url());
    Ok(view)
}

/// `planbox watch RUN`: serve the run's live view until Ctrl-C.
pub(super) async fn watch(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let dir = RunFolder::locate(&args.run_ref, &args.runs_dir)?;
    let _view = start(&dir, args.listen).await?;
    eprintln!("press Ctrl-C to stop");
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}
