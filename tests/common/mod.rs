//! Shared harness for the Docker tests: a real engine, the real sandbox image, a run folder
//! in a temporary directory, and checks of the sandbox's invariants after every case.

#![allow(dead_code, missing_docs)]

pub mod engine;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Mutex;

use planbox::llm::{Llm, Reply, Request, Usage};
use planbox::sandbox::{self, DockerSandbox, Job, Output, Policy, Sandbox};
use sha2::{Digest, Sha256};

/// A test's world: a folder with an input file and a canary outside the output folder.
pub struct World {
    pub dir: tempfile::TempDir,
    pub sandbox: DockerSandbox,
    pub run_id: String,
    before: BTreeMap<PathBuf, String>,
}

/// The policy tests use: the defaults, but small and quick, under [`test_runtime`].
pub fn test_policy() -> Policy {
    Policy {
        memory: 256 * 1024 * 1024,
        timeout: Duration::from_secs(20),
        out_bytes: 8 * 1024 * 1024,
        out_files: 200,
        runtime: test_runtime(),
        ..Policy::default()
    }
}

/// The OCI runtime the sandbox tests run under: `PLANBOX_TEST_RUNTIME` (`make test` runs the
/// hostile-script suites a second time with `runsc`), else the engine's default.
pub fn test_runtime() -> Option<String> {
    std::env::var("PLANBOX_TEST_RUNTIME")
        .ok()
        .filter(|name| !name.is_empty())
}

/// Whether the tests run under gVisor, where the kernel the script sees is gVisor's own.
pub fn under_gvisor() -> bool {
    test_runtime().as_deref() == Some("runsc")
}

pub async fn docker() -> bollard::Docker {
    sandbox::engine::connect()
        .await
        .expect("the Docker tests need a running engine (see README: requirements)")
}

impl World {
    pub async fn new(name: &str) -> World {
        World::with_policy(name, test_policy()).await
    }

    pub async fn with_policy(name: &str, mut policy: Policy) -> World {
        if policy.runtime.is_none() {
            policy.runtime = test_runtime();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inputs")).unwrap();
        std::fs::write(
            dir.path().join("inputs/sales.csv"),
            "region,amount\nnorth,10\nsouth,32\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("canary.txt"), "do not touch\n").unwrap();
        let image = sandbox::image::tag();
        let sandbox = match DockerSandbox::new(docker().await, policy, image).await {
            Ok(sandbox) => sandbox,
            Err(err) => panic!("{err} (run `make image`, and `sudo make runsc` for runsc)"),
        };
        let run_id = format!("test-{name}-{}", std::process::id());
        let before = snapshot(dir.path());
        World {
            dir,
            sandbox,
            run_id,
            before,
        }
    }

    pub fn input(&self) -> PathBuf {
        self.dir.path().join("inputs/sales.csv")
    }

    pub fn job(&self, out: &str) -> Job {
        Job {
            inputs: vec![self.input()],
            out_dir: self.dir.path().join("out").join(out),
            run_id: self.run_id.clone(),
            state: Default::default(),
        }
    }

    pub async fn run(&self, out: &str, script: &str) -> Output {
        self.sandbox
            .exec(&self.job(out), script)
            .await
            .expect("the sandbox machinery failed")
    }

    /// The invariants that hold after every case: inputs and everything outside the output
    /// folder unchanged, and no container or volume with this run's label left.
    pub async fn assert_clean(&self) {
        assert_eq!(
            snapshot(self.dir.path()),
            self.before,
            "files outside out/ changed"
        );
        assert_eq!(
            leftovers(&self.run_id).await,
            (0, 0),
            "containers or volumes left behind"
        );
    }
}

/// sha256 of every file below `root`, except under `root/out`.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path == root.join("out") {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else {
                let hash = hex::encode(Sha256::digest(std::fs::read(&path).unwrap()));
                files.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    format!("{hash} {:o}", {
                        use std::os::unix::fs::PermissionsExt;
                        meta.permissions().mode()
                    }),
                );
            }
        }
    }
    files
}

/// Containers and volumes still carrying this run's label, once removals in flight (a
/// dropped future's cleanup runs on a spawned task) had five seconds to finish.
pub async fn leftovers(run_id: &str) -> (usize, usize) {
    use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};
    let docker = docker().await;
    let label = format!("planbox.run={run_id}");
    let filters = std::collections::HashMap::from([("label", vec![label.as_str()])]);
    let count = || async {
        let containers = docker
            .list_containers(Some(
                ListContainersOptionsBuilder::new()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .len();
        let volumes = docker
            .list_volumes(Some(
                ListVolumesOptionsBuilder::new().filters(&filters).build(),
            ))
            .await
            .unwrap()
            .volumes
            .unwrap_or_default()
            .len();
        (containers, volumes)
    };
    for _ in 0..50 {
        if count().await == (0, 0) {
            return (0, 0);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count().await
}

/// Containers whose owner label names `pid`.
pub async fn owned_by(pid: u32) -> usize {
    use bollard::query_parameters::ListContainersOptionsBuilder;
    let docker = docker().await;
    let filters = std::collections::HashMap::from([("label", vec!["planbox.owner"])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    docker
        .list_containers(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("planbox.owner"))
                .is_some_and(|o| o.split(':').nth(1) == Some(&pid.to_string()))
        })
        .count()
}

/// Assert a status, showing the output when it differs.
#[track_caller]
pub fn assert_status(output: &Output, want: &sandbox::Status) {
    assert_eq!(
        &output.status,
        want,
        "stdout:\n{}\nstderr:\n{}",
        tail(&output.stdout),
        tail(&output.stderr)
    );
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    &text[start..]
}

/// Answers by looking at the request: plans, scripts per step title, repairs, synthesis.
pub type Respond = Box<dyn Fn(&Request, usize) -> String + Send + Sync>;

pub struct Rules {
    respond: Respond,
    calls: Mutex<Vec<Request>>,
}

impl Rules {
    pub fn new(respond: impl Fn(&Request, usize) -> String + Send + Sync + 'static) -> Self {
        Rules {
            respond: Box::new(respond),
            calls: Mutex::new(vec![]),
        }
    }

    pub fn calls(&self) -> Vec<Request> {
        self.calls.lock().unwrap().clone()
    }
}

impl Llm for Rules {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(request.clone());
            calls.len()
        };
        let text = (self.respond)(request, n);
        Ok(reply(request, text))
    }
}

pub fn last_user(request: &Request) -> &str {
    &request.messages.last().unwrap().content
}

/// A rule-based model's reply: `text`, its usage estimated, no latency.
pub fn reply(request: &Request, text: String) -> Reply {
    Reply {
        usage: Usage::estimate(request, &text),
        text,
        model: "rules".into(),
        mode: None,
        latency: Duration::ZERO,
    }
}

/// Headless Chromium on the PATH; `install` says how to get it when it is missing.
pub fn chromium(install: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{install}"))
}

/// A model that plans two steps over `sales.csv` (`load` leaves `by_region`, also written to
/// `by_region.csv` when `writes_csv`; `answer` prints `@total[...]`, the south total, from
/// it) and writes their scripts, each starting with `prelude`.
pub fn south_total_model(prelude: &'static str, writes_csv: bool) -> Rules {
    let writes: Vec<&str> = if writes_csv {
        vec!["by_region.csv"]
    } else {
        vec![]
    };
    let plan = serde_json::json!({"steps": [
        {"id": "load", "title": "amounts by region", "instruction": "Sum amount per region into by_region.",
         "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": writes, "produces": ["by_region"], "uses": []},
        {"id": "answer", "title": "south total", "instruction": "Print the south total from by_region.",
         "kind": "action", "depends_on": ["load"], "reads": [], "writes": [], "produces": [], "uses": ["by_region"]},
    ]})
    .to_string();
    let save = if writes_csv {
        "by_region.to_csv('by_region.csv', index=False)\n"
    } else {
        ""
    };
    Rules::new(move |request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            plan.clone()
        } else if text.contains("This step: amounts by region") {
            format!(
                "```python\n{prelude}import pandas as pd\nsales = pd.read_csv('/data/sales.csv')\nby_region = sales.groupby('region', as_index=False)['amount'].sum()\n{save}print('regions:', len(by_region))\n```"
            )
        } else {
            format!(
                "```python\n{prelude}south = by_region.loc[by_region.region == 'south', 'amount'].item()\nprint(f'@total[{{south}}]')\n```"
            )
        }
    })
}
