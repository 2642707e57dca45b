//! `make demo`'s first step, `sandbox-images/preflight.sh`, on machines that lack what the build
//! needs: it must stop within seconds naming the command to run, before anything long starts.
//! The machine is simulated by a PATH holding only the tools named here (shell shims for
//! `docker`, `id` and `cargo`), so a missing mmdebstrap is really missing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// A machine: which tools exist and how they answer.
struct Machine {
    bin: tempfile::TempDir,
}

impl Machine {
    /// Shell, coreutils the script uses, and `id -u` answering `uid`.
    fn new(uid: u32) -> Machine {
        let bin = tempfile::tempdir().unwrap();
        for tool in ["bash", "head", "env"] {
            let real = ["/usr/bin", "/bin"]
                .iter()
                .map(|dir| Path::new(dir).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is not installed"));
            std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
        }
        let machine = Machine { bin };
        machine.shim("id", &format!("echo {uid}"));
        machine.shim("cargo", "exit 0");
        machine
    }

    fn shim(&self, name: &str, body: &str) {
        let path = self.bin.path().join(name);
        std::fs::write(&path, format!("#!/bin/bash\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A docker whose engine answers `version`, and lists `base` as its planbox-base image.
    fn docker(&self, engine_up: bool, base: &str) {
        let version = if engine_up { "echo 27.5.1" } else { "exit 1" };
        self.shim(
            "docker",
            &format!(
                "case \"$1\" in version) {version} ;; images) [ \"$3\" = planbox-base ] && echo '{base}' ;; esac; exit 0"
            ),
        );
    }

    fn preflight(&self) -> (Output, Duration) {
        let cache = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let output = std::process::Command::new(self.bin.path().join("bash"))
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/sandbox-images/preflight.sh"
            ))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_clear()
            .env("PATH", self.bin.path())
            .env("HOME", cache.path())
            .output()
            .unwrap();
        (output, started.elapsed())
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn without_mmdebstrap_and_root_it_stops_at_once_naming_the_install_command() {
    let machine = Machine::new(1000);
    machine.docker(true, "");
    let (output, took) = machine.preflight();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("run sudo apt-get install mmdebstrap, then make demo again"),
        "{text}"
    );
    assert!(
        !text.contains("what this does"),
        "it stops before the plan: {text}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn an_engine_that_does_not_answer_is_named_before_anything_is_built() {
    let machine = Machine::new(0);
    machine.docker(false, "");
    let (output, _) = machine.preflight();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("the Docker engine does not answer"), "{text}");
    assert!(text.contains("sudo systemctl start docker"), "{text}");
}

#[test]
fn a_cached_base_needs_no_mmdebstrap_and_the_plan_is_said_up_front() {
    let machine = Machine::new(1000);
    machine.docker(true, "0123456789ab");
    let (output, _) = machine.preflight();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    assert!(text.contains("what this does"), "{text}");
    assert!(
        text.contains("the Python layer on the cached Debian base"),
        "{text}"
    );
    assert!(text.contains("build llama-server from source"), "{text}");
    assert!(text.contains("download the offline model"), "{text}");
}
