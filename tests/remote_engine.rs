//! An engine that shares no files with planbox: a second, real dockerd on a loopback TCP port,
//! in a mount namespace where the test's folders are empty. Binding an input fails there;
//! copying it through the engine's API works, and a whole goal (an input read, a variable
//! handed from one step to the next, a table written) gives the same answer and the same
//! step outputs as on the local engine. Nothing is left on either engine.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::engine::Engine;
use planbox::agent::{Agent, Options};
use planbox::event::Collect;
use planbox::llm::Meter;
use planbox::run::RunFolder;
use planbox::sandbox::{self, Delivery, DockerSandbox, Sandbox};
use pretty_assertions::assert_eq;
use serde_json::json;

const GOAL: &str = "What is the total amount of the south region? Answer as @total[value].";

/// Run the goal on `sandbox` into a new run folder under `runs`; the answer and, for each
/// finished step, its output files with their hashes and whether it left a state.
async fn run_goal(
    sandbox: &DockerSandbox,
    runs: &Path,
    input: &Path,
) -> (String, BTreeMap<String, (BTreeMap<String, String>, bool)>) {
    let (folder, _) = RunFolder::create(
        runs,
        GOAL,
        &[input.to_path_buf()],
        &sandbox::image::tag(),
        json!({}),
    )
    .unwrap();
    let llm = common::south_total_model("", true);
    let options = Options {
        fuse_chains: false,
        ..Options::default()
    };
    let finished = Agent::new(&llm, sandbox, options, Arc::new(Meter::new(None, None)))
        .run(&folder, &Collect::default())
        .await
        .unwrap();
    assert!(finished.achieved, "{finished:?}");
    sandbox.settle().await;
    let state = folder.state();
    let steps = state
        .done
        .into_iter()
        .map(|(id, done)| (id, (done.outputs, done.state.is_some())))
        .collect();
    (finished.answer, steps)
}

#[tokio::test]
async fn a_goal_gives_the_same_answer_on_an_engine_that_cannot_see_planbox_s_files() {
    let world = common::World::new("remote").await;
    let mut engine = Engine::start("remote", &[world.dir.path()]);
    assert_eq!(Delivery::for_host(&engine.host, false), Delivery::Copy);
    assert_eq!(
        Delivery::for_host("unix:///var/run/docker.sock", false),
        Delivery::Bind
    );
    let docker = sandbox::engine::connect_to(&engine.host).await.unwrap();
    let binding = DockerSandbox::new(docker.clone(), common::test_policy(), sandbox::image::tag())
        .await
        .unwrap();
    let remote = binding.clone().with_delivery(Delivery::Copy);

    // Bound, the input is not there for this engine: it sees an empty folder, or nothing.
    let bound = binding
        .exec(
            &world.job("bound"),
            "import os\nprint(os.path.exists('/data/sales.csv'))\n",
        )
        .await;
    match bound {
        Err(err) => assert!(format!("{err:?}").contains("sales.csv"), "{err:?}"),
        Ok(output) => assert_eq!(output.stdout, "False\n", "{output:?}"),
    }
    binding.settle().await;

    // Copied, it is there, read-only, and the only thing in /data.
    let copied = remote
        .exec(
            &world.job("copied"),
            "import os\nprint(sorted(os.listdir('/data')))\nprint(open('/data/sales.csv').read().splitlines()[1])\n\
             try:\n    open('/data/sales.csv', 'a').write('x')\n    print('wrote')\nexcept OSError:\n    print('refused')\n\
             open('copy.csv', 'w').write(open('/data/sales.csv').read())\n",
        )
        .await
        .unwrap();
    assert!(copied.status.success(), "{copied:?}");
    assert_eq!(
        copied.stdout, "['sales.csv']\nnorth,10\nrefused\n",
        "{copied:?}"
    );
    assert_eq!(
        std::fs::read_to_string(world.dir.path().join("out/copied/copy.csv")).unwrap(),
        std::fs::read_to_string(world.input()).unwrap()
    );

    // The whole goal, locally and remotely: the same answer and the same step outputs.
    let local = run_goal(
        &world.sandbox,
        &world.dir.path().join("out/local"),
        &world.input(),
    )
    .await;
    let far = run_goal(&remote, &world.dir.path().join("out/far"), &world.input()).await;
    assert_eq!(local.0, "@total[32]");
    assert_eq!(far, local);
    assert!(far.1["load"].1, "the load step left its variables");

    remote.settle().await;
    assert_eq!(engine.leftovers(), (0, 0), "left on the second engine");
    world.assert_clean().await;
    engine.stop();
}

#[tokio::test]
async fn exec_reaches_a_tcp_engine_named_by_docker_host_and_copies_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\nsouth,32\n").unwrap();
    let script = dir.path().join("sum.py");
    std::fs::write(
        &script,
        "import pandas as pd\nprint(int(pd.read_csv('/data/sales.csv').amount.sum()))\n",
    )
    .unwrap();
    let engine = Engine::start("exec", &[dir.path()]);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .arg("exec")
        .arg(&script)
        .arg("--input")
        .arg(&input)
        .arg("--out")
        .arg(dir.path().join("out"))
        .args(["--config", "/nonexistent/planbox.toml"])
        .env("DOCKER_HOST", &engine.host)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "42\n", "{stderr}");
    assert_eq!(engine.leftovers(), (0, 0), "left on the second engine");
}
