//! A second, real Docker engine for the tests: its own dockerd and containerd, data root and
//! exec root, listening on a loopback TCP port, started in a mount namespace of its own in
//! which the folders named as hidden are empty tmpfs mounts. An engine that cannot see the
//! client's files: a bind mount of one of them would show an empty folder.
//! The sandbox image is copied into it from the first engine (`docker save | docker load`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running second engine; stopped and its data removed on drop.
pub struct Engine {
    /// `tcp://127.0.0.1:PORT`.
    pub host: String,
    root: PathBuf,
    script: String,
    daemon: Option<Child>,
}

/// The storage driver of the first engine, which works on this machine's filesystems.
fn storage_driver() -> String {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.Driver}}"])
        .output()
        .expect("the docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Engine {
    /// Start an engine that cannot see `hidden` (folders of this machine), with the sandbox
    /// image loaded. Panics with the engine's log when it does not come up.
    pub fn start(name: &str, hidden: &[&Path]) -> Engine {
        // Not under the temporary folder: the tests' own folders there may be hidden.
        let root =
            PathBuf::from("/var/tmp").join(format!("planbox-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::create_dir_all(root.join("exec")).unwrap();
        let port = free_port();
        let host = format!("tcp://127.0.0.1:{port}");
        let mut hide = String::new();
        for dir in hidden {
            hide.push_str(&format!(
                "mount -t tmpfs -o size=1m planbox-hidden '{}' && ",
                dir.display()
            ));
        }
        // The first engine's containerd lives under its exec root, so a dockerd with an exec
        // root of its own starts a containerd of its own, inside this namespace.
        // A configuration file of its own: the first engine's may name its data root.
        std::fs::write(
            root.join("daemon.json"),
            format!("{{\"storage-driver\": \"{}\"}}\n", storage_driver()),
        )
        .unwrap();
        let script = format!(
            "{hide}exec dockerd --config-file '{root}/daemon.json' --data-root '{root}/data' \
             --exec-root '{root}/exec' --pidfile '{root}/dockerd.pid' -H {host} \
             -H 'unix://{root}/docker.sock' --bridge none --iptables=false --ip6tables=false \
             --ip-forward=false --ip-masq=false --userland-proxy=false \
             --containerd-namespace planbox-{name} --containerd-plugins-namespace planbox-{name}-plugins",
            root = root.display(),
        );
        let mut engine = Engine {
            host,
            root,
            script,
            daemon: None,
        };
        engine.spawn();
        engine.load_image();
        engine
    }

    /// Start dockerd (again, after [`Engine::stop`]: with the same data) and wait for it.
    pub fn spawn(&mut self) {
        assert!(self.daemon.is_none(), "the engine is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join("dockerd.log"))
            .unwrap();
        let daemon = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &self.script,
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare and dockerd (the second-engine tests run as root)");
        self.daemon = Some(daemon);
        self.wait_ready();
    }

    /// The docker CLI against this engine.
    pub fn cli(&self) -> Command {
        let mut command = Command::new("docker");
        command.env("DOCKER_HOST", &self.host);
        command
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("dockerd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .cli()
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("the second engine exited ({status}):\n{}", self.log());
            }
            if Instant::now() > deadline {
                panic!("the second engine did not answer in 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Copy the sandbox image from the first engine.
    fn load_image(&self) {
        let image = planbox::sandbox::image::tag();
        let mut save = Command::new("docker")
            .env_remove("DOCKER_HOST")
            .args(["save", &image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let loaded = self
            .cli()
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(save.wait().unwrap().success(), "docker save {image} failed");
        assert!(
            loaded.success(),
            "docker load into the second engine failed"
        );
    }

    /// Containers and volumes this engine holds, of any label.
    pub fn leftovers(&self) -> (usize, usize) {
        let count = |args: &[&str]| {
            let out = self.cli().args(args).output().unwrap();
            String::from_utf8_lossy(&out.stdout).lines().count()
        };
        (count(&["ps", "-aq"]), count(&["volume", "ls", "-q"]))
    }

    /// Stop the engine (SIGTERM, then SIGKILL after 20 s), as a machine going away would.
    pub fn stop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        let pid = std::fs::read_to_string(self.root.join("dockerd.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .unwrap_or(daemon.id() as i32);
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while daemon.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                let _ = daemon.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        // The data root holds the engine's mounts only inside its namespace, gone with it.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
