//! Hostile scripts that attack planbox itself: forged status lines, terminal escapes, odd
//! files in the output folder, binary garbage.

mod common;

use common::{World, assert_status};
use planbox::sandbox::{Artifact, Status};

#[tokio::test]
async fn forged_status_lines_do_not_change_the_status() {
    let world = World::new("forged").await;
    let output = world
        .run(
            "forged",
            "import sys\nprint('status: exited with code 0')\nprint('{\"status\": {\"kind\": \"exited\", \"detail\": 0}}')\nsys.exit(3)\n",
        )
        .await;
    assert_status(&output, &Status::Exited(3));
    world.assert_clean().await;
}

#[tokio::test]
async fn escapes_and_binary_garbage_arrive_as_inert_text() {
    let world = World::new("garbage").await;
    let output = world
        .run(
            "garbage",
            "import sys, os\nsys.stdout.buffer.write(b'\\x1b]0;owned\\x07\\x1b[2J\\xff\\xfe\\x00ok\\n')\nsys.stdout.buffer.write(os.urandom(4096))\n",
        )
        .await;
    assert_status(&output, &Status::Exited(0));
    assert_eq!(output.stdout_bytes, 4096 + 20);
    let shown = planbox::text::strip_escapes(&output.stdout);
    assert!(shown.starts_with("\u{fffd}\u{fffd}ok\n"), "{shown:?}");
    assert!(!shown.contains('\u{1b}'));
    world.assert_clean().await;
}

#[tokio::test]
async fn regular_files_come_back_and_their_modes_do_not() {
    let world = World::new("files").await;
    let output = world
        .run(
            "files",
            "import os\nos.makedirs('/out/charts')\nopen('/out/result.csv', 'w').write('a,b\\n1,2\\n')\nopen('/out/charts/x.png', 'wb').write(b'\\x89PNG')\nos.chmod('/out/result.csv', 0o4777)\n",
        )
        .await;
    assert_status(&output, &Status::Exited(0));
    assert_eq!(
        output.artifacts,
        vec![
            Artifact {
                path: "charts/x.png".into(),
                size: 4
            },
            Artifact {
                path: "result.csv".into(),
                size: 8
            },
        ]
    );
    let out = world.dir.path().join("out/files");
    assert_eq!(
        std::fs::read_to_string(out.join("result.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("result.csv"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7000, 0, "setuid bit carried to the host");
    world.assert_clean().await;
}

#[tokio::test]
async fn links_special_files_and_odd_names_are_rejected() {
    let world = World::new("odd").await;
    let cases = [
        (
            "symlink",
            "import os\nos.symlink('/etc/passwd', '/out/link')\n",
            "link is a symbolic link",
        ),
        (
            "hardlink",
            "import os\nopen('/out/a', 'w').write('x')\nos.link('/out/a', '/out/b')\n",
            "is a hard link",
        ),
        (
            "fifo",
            "import os\nos.mkfifo('/out/pipe')\n",
            "pipe is a FIFO",
        ),
        (
            "newline",
            "open('/out/bad\\nname', 'w').write('x')\n",
            "control characters",
        ),
        (
            "nonutf8",
            "open(b'/out/\\xff\\xfe', 'w').write('x')\n",
            "non-UTF-8",
        ),
        (
            "deep",
            "import os\nos.makedirs('/out/' + '/'.join(['d'] * 20))\nopen('/out/' + '/'.join(['d'] * 20) + '/f', 'w').write('x')\n",
            "deeper than 16",
        ),
    ];
    let runs = cases
        .iter()
        .map(|(name, script, _)| world.run(name, script));
    let outputs = futures_util::future::join_all(runs).await;
    for ((name, _, why), output) in cases.iter().zip(outputs) {
        match &output.status {
            Status::ArtifactRejected(reason) => assert!(reason.contains(why), "{name}: {reason}"),
            // Under gVisor a FIFO lives in gVisor's own kernel: nothing reaches the folder.
            Status::Exited(0) if *name == "fifo" && common::under_gvisor() => {}
            other => panic!("{name}: {other:?}\n{}", output.stderr),
        }
        assert!(output.artifacts.is_empty(), "{name}");
        let out = world.dir.path().join("out").join(name);
        assert!(
            !out.exists() || std::fs::read_dir(&out).unwrap().next().is_none(),
            "{name} left files"
        );
    }
    world.assert_clean().await;
}

#[tokio::test]
async fn sockets_and_device_nodes_never_reach_the_host() {
    let world = World::new("nodes").await;
    let output = world
        .run(
            "nodes",
            "import os, socket, stat\nsocket.socket(socket.AF_UNIX).bind('/out/sock')\ntry:\n    os.mknod('/out/null', stat.S_IFCHR | 0o666, os.makedev(1, 3))\nexcept PermissionError:\n    print('mknod refused')\nopen('/out/ok.txt', 'w').write('ok')\n",
        )
        .await;
    assert_status(&output, &Status::Exited(0));
    assert_eq!(output.stdout, "mknod refused\n");
    // The engine's archive leaves sockets out, so only the regular file arrives.
    assert_eq!(
        output.artifacts,
        vec![Artifact {
            path: "ok.txt".into(),
            size: 2
        }]
    );
    world.assert_clean().await;
}
