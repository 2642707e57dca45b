//! The container lifecycle: warm start, concurrency, and cleanup on every exit path
//! (normal end, dropped future, Ctrl-C, SIGKILL of planbox followed by a restart).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{World, assert_status, leftovers, owned_by};
use planbox::sandbox::{Sandbox, Status, Warm};

#[tokio::test]
async fn a_warm_container_waits_for_its_script() {
    let world = World::new("warm").await;
    let warm = world.sandbox.prepare(&world.job("warm")).await.unwrap();
    // The model would be writing the script now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let output = warm
        .run("import pandas as pd\ndf = pd.read_csv('/data/sales.csv')\nprint(df.amount.sum())\ndf.to_csv('/out/copy.csv', index=False)\n")
        .await
        .unwrap();
    assert_status(&output, &Status::Exited(0));
    assert_eq!(output.stdout, "42\n");
    assert_eq!(output.artifacts.len(), 1);
    world.assert_clean().await;
}

#[tokio::test]
async fn only_a_truly_empty_output_folder_skips_the_archive() {
    // The harvest skips the archive when the engine reports the folder empty; a hidden file,
    // a file in a sub-folder, or a file written then removed must all come out right.
    let world = World::new("empty-out").await;
    let cases = [
        ("nothing", "print(1)\n", vec![]),
        ("hidden", "open('.h', 'w').write('h')\n", vec![".h"]),
        (
            "nested",
            "import os\nos.makedirs('a/b')\nopen('a/b/c.txt', 'w').write('c')\n",
            vec!["a/b/c.txt"],
        ),
        (
            "removed",
            "import os\nopen('t.txt', 'w').write('t')\nos.remove('t.txt')\n",
            vec![],
        ),
    ];
    for (name, script, expected) in cases {
        let output = world.run(name, script).await;
        assert_status(&output, &Status::Exited(0));
        let mut paths: Vec<&str> = output.artifacts.iter().map(|a| a.path.as_str()).collect();
        paths.sort();
        assert_eq!(paths, expected, "{name}");
        let out_dir = world.job(name).out_dir;
        assert!(
            out_dir.is_dir(),
            "{name}: the output folder exists even when empty"
        );
    }
    world.assert_clean().await;
}

#[tokio::test]
async fn a_benign_script_is_unchanged_by_a_hostile_neighbour() {
    let world = World::new("neighbour").await;
    let benign = "import pandas as pd\nprint(pd.read_csv('/data/sales.csv').amount.mean())\n";
    let alone = world.run("alone", benign).await;
    let hostile = world.run(
        "hostile",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        b = [bytearray(1 << 24) for _ in range(64)]\n",
    );
    let together = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        world.run("together", benign).await
    };
    let (hostile, together) = tokio::join!(hostile, together);
    assert!(!hostile.status.success());
    assert_status(&alone, &Status::Exited(0));
    assert_eq!(
        (together.status.clone(), together.stdout.clone()),
        (alone.status, alone.stdout)
    );
    world.assert_clean().await;
}

#[tokio::test]
async fn a_dropped_run_removes_its_containers() {
    let world = World::new("dropped").await;
    let job = world.job("dropped");
    let run = world.sandbox.exec(&job, "import time\ntime.sleep(600)\n");
    assert!(
        tokio::time::timeout(Duration::from_secs(3), run)
            .await
            .is_err()
    );
    world.assert_clean().await;
}

/// `planbox`, its scripts under the tests' runtime: run from a folder whose planbox.toml
/// names it (`exec` reads `runtime` there; the paths it is given are absolute).
fn planbox() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_planbox"));
    if let Some(runtime) = common::test_runtime() {
        let folder = std::env::temp_dir().join(format!("planbox-lifecycle-{runtime}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(
            folder.join("planbox.toml"),
            format!("[sandbox]\nruntime = \"{runtime}\"\n"),
        )
        .unwrap();
        command.current_dir(folder);
    }
    command
}

async fn wait_for_containers(pid: u32) {
    for _ in 0..200 {
        if owned_by(pid).await >= 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("planbox {pid} never started its containers");
}

#[tokio::test]
async fn ctrl_c_removes_the_containers() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sleep.py");
    std::fs::write(&script, "import time\ntime.sleep(600)\n").unwrap();
    let child = planbox()
        .args([
            "exec",
            script.to_str().unwrap(),
            "--out",
            dir.path().join("out").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_containers(pid).await;
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("containers removed"));
    assert_eq!(leftovers(&format!("exec-{pid}")).await, (0, 0));
}

#[tokio::test]
async fn a_killed_planbox_is_reaped_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sleep.py");
    std::fs::write(&script, "import time\ntime.sleep(600)\n").unwrap();
    let mut child = planbox()
        .args([
            "exec",
            script.to_str().unwrap(),
            "--out",
            dir.path().join("out1").to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_for_containers(pid).await;
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert_eq!(
        owned_by(pid).await,
        2,
        "the killed planbox left its containers (as expected)"
    );

    let quick = dir.path().join("quick.py");
    std::fs::write(&quick, "print('hi')\n").unwrap();
    let again = planbox()
        .args([
            "exec",
            quick.to_str().unwrap(),
            "--out",
            dir.path().join("out2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&again.stdout), "hi\n");
    assert_eq!(
        owned_by(pid).await,
        0,
        "the next start did not reap the leftovers"
    );
    assert_eq!(
        leftovers(&format!("exec-{pid}")).await,
        (0, 0),
        "volumes were not reaped"
    );
}
