//! `planbox exec`: one Python script run in the sandbox, reported as people or programs read it.

use std::process::ExitCode;

use anyhow::Context;
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox, Status};

use super::args::{ExecArgs, script_timeout};
use super::{exit_code_for, print_stdout, shutdown_signal};

/// Run the script once; exit 0 when it exited 0, 1 when it did not.
pub(super) async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let script = std::fs::read(&args.script).map_err(|err| planbox::Error::Script {
        path: args.script.clone(),
        reason: match err.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            _ => err.to_string(),
        },
    })?;
    let script = String::from_utf8(script).map_err(|_| planbox::Error::Script {
        path: args.script.clone(),
        reason: "not UTF-8 text: save it as UTF-8".into(),
    })?;
    let policy = Policy {
        memory: args.memory,
        nano_cpus: (args.cpus * 1e9) as i64,
        timeout: script_timeout(args.timeout)?,
        runtime: args.sandbox.runtime(&args.config)?,
        ..Policy::default()
    };
    // One script, one engine: the one named, else DOCKER_HOST's.
    let engines = args.sandbox.engines(&args.config)?;
    let [engine] = engines.as_slice() else {
        anyhow::bail!("exec runs one script on one engine: give --engine once");
    };
    let docker = sandbox::engine::connect_to(&engine.host).await?;
    let sandbox = DockerSandbox::new(docker, policy, sandbox::image::tag())
        .await?
        .with_delivery(args.sandbox.delivery(&engine.host));
    let reaped = sandbox
        .reap()
        .await
        .context("reaping leftover containers")?;
    if reaped > 0 {
        tracing::info!(reaped, "removed leftover containers of earlier runs");
    }
    let job = Job {
        inputs: args.inputs,
        out_dir: args.out.clone(),
        run_id: format!("exec-{}", std::process::id()),
        state: planbox::sandbox::state::StateIo::default(),
    };
    let work = sandbox.exec(&job, &script);
    let output = tokio::select! {
        output = work => output?,
        signal = shutdown_signal() => {
            sandbox.shutdown().await;
            eprintln!("planbox: stopped by {signal}; containers removed");
            return Ok(ExitCode::from(130));
        }
    };
    if args.json {
        let value = serde_json::json!({
            "status": output.status,
            "exit_code": exit_code(&output.status),
            "success": output.status.success(),
            "start_ms": output.start.as_millis() as u64,
            "run_ms": output.run.as_millis() as u64,
            "stdout": output.stdout,
            "stderr": output.stderr,
            "stdout_bytes": output.stdout_bytes,
            "stderr_bytes": output.stderr_bytes,
            "out_dir": args.out,
            "artifacts": output.artifacts,
        });
        print_stdout(&format!("{value}\n"));
    } else {
        let clean = |text: &str| planbox::text::strip_escapes(text);
        print_stdout(&clean(&output.stdout));
        if !output.stderr.is_empty() {
            eprint!("{}", clean(&output.stderr));
        }
        eprintln!(
            "planbox: {} (start {:.2}s, run {:.2}s)",
            output.status,
            output.start.as_secs_f64(),
            output.run.as_secs_f64()
        );
        for artifact in &output.artifacts {
            eprintln!(
                "  {} ({} bytes)",
                args.out.join(&artifact.path).display(),
                artifact.size
            );
        }
    }
    sandbox.settle().await;
    Ok(exit_code_for(output.status.success()))
}

/// The script's exit code, when it ran to its end.
fn exit_code(status: &Status) -> Option<i64> {
    match status {
        Status::Exited(code) => Some(*code),
        Status::TimedOut
        | Status::OutOfMemory
        | Status::OutputLimit
        | Status::ArtifactRejected(_)
        | Status::PolicyRejected(_)
        | Status::StateTooLarge { .. } => None,
    }
}
