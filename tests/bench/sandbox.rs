//! `make bench`: start-up cost of the sandbox against `docker run --rm` with the same flags,
//! measured in one process so the ratios compare like with like.
//!
//! (a) warm: time from handing the script to a started container until the result;
//! (b) cold: create, start, run, harvest, from nothing;
//! (c) `docker run --rm` with the same isolation flags, via the docker CLI.
//!
//! Then what shared variables are worth: a step that loads a 100 MB DataFrame an earlier
//! step left, against one that reads the same table from CSV.
//!
//! Last, gVisor against the engine's default runtime, when the engine offers runsc: a cold
//! start and a pandas step under each.

use std::time::{Duration, Instant};

use planbox::sandbox::state::{STATE_FILE, Save, StateIo};
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox, Warm};

/// Time the model takes to write a script, at the very least (a local model: ~10 s).
const MODEL_WRITES: Duration = Duration::from_millis(1000);
const RUNS: usize = 20;
const SCRIPT: &str = "print(1)\n";
/// The same, writing one output file: the harvest then reads an archive of the folder.
const SCRIPT_WITH_FILE: &str = "open('one.txt', 'w').write('1')\nprint(1)\n";

/// Rounds of each side of the state-against-CSV comparison: each takes seconds.
const STATE_RUNS: usize = 3;
/// A table of about 100 MB in memory (`memory_usage(deep=True)`): ten float columns, one
/// integer column and one short string column, from a fixed seed.
const MAKE_TABLE: &str = "\
import numpy as np
import pandas as pd
rng = np.random.default_rng(7)
rows = 700_000
df = pd.DataFrame(rng.normal(size=(rows, 10)), columns=[f'x{i}' for i in range(10)])
df['n'] = rng.integers(0, 1_000_000, rows)
df['tag'] = rng.choice(['north', 'south', 'east', 'west'], rows).astype(object)
df.to_csv('table.csv', index=False)
del rng, rows
print(df.memory_usage(deep=True).sum())
";
const READ_CSV: &str = "import pandas as pd\ndf = pd.read_csv('/data/table.csv')\nprint(len(df))\n";
const READ_STATE: &str = "print(len(df))\n";

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index]
}

fn docker_run_args(image: &str, policy: &Policy) -> Vec<String> {
    let seccomp = sandbox::seccomp::profile().to_string();
    let profile = std::env::temp_dir().join("planbox-bench-seccomp.json");
    std::fs::write(&profile, seccomp).expect("writing the seccomp profile");
    [
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--read-only",
        "--tmpfs",
        "/tmp:rw,nosuid,nodev,size=268435456",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([
        "--security-opt".into(),
        format!("seccomp={}", profile.display()),
        "--user".into(),
        "1000:1000".into(),
        "--memory".into(),
        policy.memory.to_string(),
        "--memory-swap".into(),
        policy.memory.to_string(),
        "--cpus".into(),
        "1".into(),
        "--pids-limit".into(),
        policy.pids.to_string(),
        "--ulimit".into(),
        format!("nofile={0}:{0}", policy.nofile),
        "--init".into(),
        "--log-driver".into(),
        "none".into(),
        image.to_string(),
        "/usr/local/bin/planbox-entry".into(),
    ])
    .collect()
}

fn report(name: &str, samples: &mut [Duration]) -> Duration {
    let p50 = percentile(samples, 0.5);
    let p95 = percentile(samples, 0.95);
    println!(
        "{name:<34} p50 {:>7.1} ms   p95 {:>7.1} ms",
        p50.as_secs_f64() * 1e3,
        p95.as_secs_f64() * 1e3
    );
    p50
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let docker = sandbox::docker::connect()
        .await
        .expect("the benchmark needs a Docker engine");
    let image = sandbox::image::tag();
    let policy = Policy::default();
    let sandbox = DockerSandbox::new(docker, policy.clone(), image.clone())
        .await
        .expect("run `make image` first");
    let dir = tempfile::tempdir().unwrap();
    let job = |i: usize, kind: &str| Job {
        inputs: vec![],
        out_dir: dir.path().join(format!("{kind}-{i}")),
        run_id: "bench".into(),
        state: Default::default(),
    };

    // One unmeasured round of each, so caches are warm for all three alike.
    sandbox.exec(&job(999, "warmup"), SCRIPT).await.unwrap();

    // The warm path: `script` handed over to a container started while the model wrote it.
    let warm_runs = |kind: &'static str, script: &'static str, files: usize| {
        let (sandbox, job) = (&sandbox, &job);
        async move {
            let mut times = Vec::new();
            for i in 0..RUNS {
                let prepared = sandbox.prepare(&job(i, kind)).await.unwrap();
                // The model takes seconds to write a script; the handover comes after that,
                // so the container has finished starting.
                tokio::time::sleep(MODEL_WRITES).await;
                let start = Instant::now();
                let output = prepared.run(script).await.unwrap();
                assert!(
                    output.status.success()
                        && output.stdout == "1\n"
                        && output.artifacts.len() == files,
                    "{output:?}"
                );
                times.push(output.run.min(start.elapsed()));
                // Removal runs in the background; let it finish outside the measured span.
                sandbox.settle().await;
            }
            times
        }
    };
    let mut warm = warm_runs("warm", SCRIPT, 0).await;
    let mut warm_file = warm_runs("warm-file", SCRIPT_WITH_FILE, 1).await;
    let mut cold = Vec::new();
    for i in 0..RUNS {
        let start = Instant::now();
        let output = sandbox.exec(&job(i, "cold"), SCRIPT).await.unwrap();
        assert!(output.status.success(), "{output:?}");
        cold.push(start.elapsed());
        sandbox.settle().await;
    }
    let args = docker_run_args(&image, &policy);
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut child = tokio::process::Command::new("docker")
            .args(&args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the docker CLI is needed for the baseline");
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(SCRIPT.as_bytes()).await.unwrap();
        drop(stdin);
        let output = child.wait_with_output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n");
        plain.push(start.elapsed());
    }

    println!("sandbox start-up, {RUNS} runs of print(1)");
    let a = report("(a) planbox warm (handover->result)", &mut warm);
    let b = report("(b) planbox cold (nothing->result)", &mut cold);
    let c = report("(c) docker run --rm, same flags", &mut plain);
    let d = report("(d) warm, script writes one file", &mut warm_file);
    let ratio = |x: Duration| x.as_secs_f64() / c.as_secs_f64();
    println!(
        "a/c = {:.2} (target <= 0.25)   b/c = {:.2} (target <= 1.00)   d/c = {:.2} (harvest included)",
        ratio(a),
        ratio(b),
        ratio(d)
    );

    state_vs_csv(&sandbox, &image).await;
    runtimes_compared(sandbox.docker().clone(), &image).await;
}

/// Rounds of each side of the runtime comparison.
const RUNTIME_RUNS: usize = 5;
/// A small pandas step: import, build a table, group and sum, write a CSV.
const PANDAS_STEP: &str = "\
import numpy as np
import pandas as pd
rng = np.random.default_rng(3)
df = pd.DataFrame({'region': rng.choice(['n', 's', 'e', 'w'], 200_000), 'x': rng.normal(size=200_000)})
df.groupby('region')['x'].sum().to_csv('sums.csv')
print(len(df))
";

/// Cold start-up and a pandas step under runsc against the default runtime.
async fn runtimes_compared(docker: bollard::Docker, image: &str) {
    let (offered, default) = sandbox::engine::runtimes(&docker)
        .await
        .expect("listing the engine's runtimes");
    if !offered.iter().any(|name| name == "runsc") {
        println!("runsc against runc: skipped, the engine does not offer runsc (sudo make runsc)");
        return;
    }
    let default = default.unwrap_or_else(|| "runc".into());
    let dir = tempfile::tempdir().unwrap();
    let mut medians = Vec::new();
    for runtime in [default.clone(), "runsc".to_string()] {
        let policy = Policy {
            runtime: Some(runtime.clone()),
            ..Policy::default()
        };
        let sandbox = DockerSandbox::new(docker.clone(), policy, image.to_string())
            .await
            .expect("a sandbox under each runtime");
        let job = |i: usize, kind: &str| Job {
            inputs: vec![],
            out_dir: dir.path().join(format!("{runtime}-{kind}-{i}")),
            run_id: "bench".into(),
            state: Default::default(),
        };
        sandbox.exec(&job(99, "warmup"), SCRIPT).await.unwrap();
        let mut start_up = Vec::new();
        let mut pandas = Vec::new();
        for i in 0..RUNTIME_RUNS {
            let start = Instant::now();
            let output = sandbox.exec(&job(i, "cold"), SCRIPT).await.unwrap();
            assert!(output.status.success(), "{output:?}");
            start_up.push(start.elapsed());
            sandbox.settle().await;
            let start = Instant::now();
            let output = sandbox.exec(&job(i, "pandas"), PANDAS_STEP).await.unwrap();
            assert!(
                output.status.success() && output.stdout == "200000\n",
                "{output:?}"
            );
            pandas.push(start.elapsed());
            sandbox.settle().await;
        }
        println!("runtime {runtime}, {RUNTIME_RUNS} runs each");
        let cold = report(
            &format!("  cold start, print(1) ({runtime})"),
            &mut start_up,
        );
        let step = report(&format!("  pandas step ({runtime})"), &mut pandas);
        medians.push((cold, step));
    }
    let ratio = |x: Duration, y: Duration| x.as_secs_f64() / y.as_secs_f64();
    println!(
        "runsc/{default}: cold start {:.2}   pandas step {:.2}",
        ratio(medians[1].0, medians[0].0),
        ratio(medians[1].1, medians[0].1)
    );
}

/// A step that loads the table an earlier step left as a variable, against one that reads
/// it from the CSV that step wrote: the time from handover to result, container start aside.
async fn state_vs_csv(sandbox: &DockerSandbox, image: &str) {
    // Room for a 100 MB table three times over: in memory, as CSV and pickled in /out.
    let policy = Policy {
        memory: 4 << 30,
        fsize: 1 << 30,
        out_bytes: 1 << 30,
        timeout: Duration::from_secs(300),
        ..Policy::default()
    };
    let sandbox = DockerSandbox::new(sandbox.docker().clone(), policy, image.to_string())
        .await
        .expect("the policy is in range");
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let make = Job {
        out_dir: dir.path().join("make"),
        run_id: "bench".into(),
        state: StateIo {
            load: vec![],
            save: Some(Save {
                step: "make".into(),
                dir: state_dir.clone(),
                cap: 512 << 20,
                required: true,
            }),
        },
        ..Default::default()
    };
    let output = sandbox.exec(&make, MAKE_TABLE).await.unwrap();
    assert!(
        output.status.success() && output.state.is_some(),
        "{output:?}"
    );
    let in_memory: f64 = output.stdout.trim().parse().unwrap();
    let pickle = state_dir.join(STATE_FILE);
    let pickled = std::fs::metadata(&pickle).unwrap().len();
    let csv = dir.path().join("make").join("table.csv");
    let csv_bytes = std::fs::metadata(&csv).unwrap().len();
    sandbox.settle().await;

    let timed = |kind: &'static str, job: Job, script: &'static str| {
        let (sandbox, dir) = (&sandbox, &dir);
        async move {
            let mut times = Vec::new();
            for i in 0..STATE_RUNS {
                let job = Job {
                    out_dir: dir.path().join(format!("{kind}-{i}")),
                    ..job.clone()
                };
                let prepared = sandbox.prepare(&job).await.unwrap();
                // As in (a): the container has finished starting by the handover.
                tokio::time::sleep(MODEL_WRITES).await;
                let start = Instant::now();
                let output = prepared.run(script).await.unwrap();
                assert!(
                    output.status.success() && output.stdout == "700000\n",
                    "{output:?}"
                );
                times.push(output.run.min(start.elapsed()));
                sandbox.settle().await;
            }
            percentile(&mut times, 0.5)
        }
    };
    let from_csv = Job {
        inputs: vec![csv],
        run_id: "bench".into(),
        ..Default::default()
    };
    let from_state = Job {
        run_id: "bench".into(),
        state: StateIo {
            load: vec![(pickle, "make".into())],
            save: None,
        },
        ..Default::default()
    };
    let csv_time = timed("csv", from_csv, READ_CSV).await;
    let state_time = timed("state", from_state, READ_STATE).await;
    sandbox.settle().await;

    println!(
        "\nstate against CSV, a {:.0} MB DataFrame, {STATE_RUNS} runs each (median)",
        in_memory / 1e6
    );
    println!(
        "(e) pd.read_csv, {:>4.0} MB of CSV   {:>7.2} s",
        csv_bytes as f64 / 1e6,
        csv_time.as_secs_f64()
    );
    println!(
        "(f) load state, {:>4.0} MB pickle    {:>7.2} s",
        pickled as f64 / 1e6,
        state_time.as_secs_f64()
    );
    println!(
        "f/e = {:.2} (state/csv)",
        state_time.as_secs_f64() / csv_time.as_secs_f64()
    );
}
