//! Hostile scripts that attack resources: each is contained, reported with the right status,
//! and leaves nothing behind.

mod common;

use std::time::Duration;

use common::{World, assert_status, test_policy};
use planbox::sandbox::{Policy, Status};

#[tokio::test]
async fn fork_and_thread_bombs_hit_the_pids_limit() {
    let world = World::with_policy(
        "forkbomb",
        Policy {
            timeout: Duration::from_secs(8),
            ..test_policy()
        },
    )
    .await;
    let fork = world.run(
        "fork",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    );
    let threads = world.run(
        "threads",
        "import threading, time\nn = 0\ntry:\n    while True:\n        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n        n += 1\nexcept RuntimeError:\n    print('threads', n)\n    raise SystemExit(3)\n",
    );
    let (fork, threads) = tokio::join!(fork, threads);
    if common::under_gvisor() {
        // gVisor counts each forked interpreter's pages against the limit as the host
        // kernel does not (copy-on-write), so the bomb may run out of memory first.
        assert!(
            matches!(fork.status, Status::TimedOut | Status::OutOfMemory),
            "{:?}",
            fork.status
        );
    } else {
        assert_status(&fork, &Status::TimedOut);
    }
    assert_status(&threads, &Status::Exited(3));
    let count: usize = threads
        .stdout
        .trim()
        .strip_prefix("threads ")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        count < 128,
        "the pids limit of 128 let {count} threads start"
    );
    world.assert_clean().await;
}

#[tokio::test]
async fn memory_hogs_are_out_of_memory_even_when_they_exit_zero() {
    let world = World::new("memory").await;
    let hog = world.run(
        "hog",
        "b = []\nwhile True:\n    b.append(bytearray(16 * 1024 * 1024))\n",
    );
    let sly = world.run(
        "sly",
        "import sys\nb = []\ntry:\n    while True:\n        b.append(b'x' * (32 * 1024 * 1024))\nexcept MemoryError:\n    sys.exit(0)\n",
    );
    let (hog, sly) = tokio::join!(hog, sly);
    assert_status(&hog, &Status::OutOfMemory);
    // A MemoryError caught in Python may or may not precede the kernel's kill; either way the
    // engine decides, and an OOM kill is never reported as success. Racing the hog for the
    // same limit, the kill can land while the engine does not flag it (seen once: exit 137,
    // SIGKILL): still a failure, never a success.
    assert!(
        matches!(
            sly.status,
            Status::OutOfMemory | Status::Exited(0) | Status::Exited(137)
        ),
        "{:?}",
        sly.status
    );
    world.assert_clean().await;
}

#[tokio::test]
async fn filling_tmp_and_the_output_folder_stops_at_their_caps() {
    // tmpfs pages count against the memory limit: leave room for a full /tmp.
    let world = World::with_policy(
        "fill",
        Policy {
            memory: 768 * 1024 * 1024,
            ..test_policy()
        },
    )
    .await;
    let script = |dir: &str| {
        format!(
            "import os\nn = 0\ntry:\n    with open('{dir}/big', 'wb') as f:\n        while True:\n            f.write(b'x' * 1048576)\n            n += 1\nexcept OSError as e:\n    print('stopped', n, e.errno)\n"
        )
    };
    let (tmp_script, out_script) = (script("/tmp"), script("/out"));
    let tmp = world.run("tmp", &tmp_script);
    let out = world.run("out", &out_script);
    let sparse = world.run(
        "sparse",
        "f = open('/out/sparse', 'wb')\nf.seek(10 * 1024 ** 3)\ntry:\n    f.write(b'x')\n    f.close()\nexcept OSError as e:\n    print('refused', e.errno)\n",
    );
    let (tmp, out, sparse) = tokio::join!(tmp, out, sparse);
    assert_status(&tmp, &Status::Exited(0));
    let stopped_at = |o: &planbox::sandbox::Output| -> u64 {
        o.stdout.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // /tmp is 256 MiB; the fsize ulimit (256 MiB) may stop it first (EFBIG 27, ENOSPC 28).
    assert!(stopped_at(&tmp) <= 256, "{}", tmp.stdout);
    assert_status(&out, &Status::Exited(0));
    assert!(
        stopped_at(&out) <= 8,
        "the 8 MiB output tmpfs took {}",
        out.stdout
    );
    assert!(out.artifacts.iter().all(|a| a.size <= 8 * 1024 * 1024));
    // A 10 GiB sparse file is refused by fsize, or fits as a hole and is then too big to harvest.
    match &sparse.status {
        Status::Exited(0) if sparse.stdout.starts_with("refused") => {}
        Status::ArtifactRejected(why) => assert!(why.contains("bytes"), "{why}"),
        other => panic!("sparse file: {other:?} {}", sparse.stdout),
    }
    world.assert_clean().await;
}

#[tokio::test]
async fn millions_of_files_and_descriptor_hogs_are_bounded() {
    let world = World::new("files").await;
    let files = world.run(
        "many",
        "n = 0\ntry:\n    while n < 1_000_000:\n        open(f'/out/f{n}', 'w').close()\n        n += 1\nexcept OSError as e:\n    print('stopped', n)\n",
    );
    let fds = world.run(
        "fds",
        "import os\nfds = []\ntry:\n    while True:\n        fds.append(os.open('/data/sales.csv', os.O_RDONLY))\nexcept OSError as e:\n    print('fds', len(fds))\n",
    );
    let (files, fds) = tokio::join!(files, fds);
    let made: usize = files
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(made <= 200, "the output folder took {made} files");
    // 200 files are within the harvest caps, so they come back.
    assert_status(&files, &Status::Exited(0));
    assert_eq!(files.artifacts.len(), made);
    let open: usize = fds
        .stdout
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(open < 256, "nofile 256 let {open} descriptors open");
    world.assert_clean().await;
}

#[tokio::test]
async fn spinning_and_sleeping_scripts_end_at_the_deadline() {
    let world = World::with_policy(
        "deadline",
        Policy {
            timeout: Duration::from_secs(3),
            ..test_policy()
        },
    )
    .await;
    let spin = world.run(
        "spin",
        "import multiprocessing as mp\ndef spin():\n    while True: pass\nfor _ in range(8):\n    mp.Process(target=spin).start()\nspin()\n",
    );
    let sleep = world.run("sleep", "import time\ntime.sleep(3600)\n");
    let stubborn = world.run(
        "term",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(1)\n",
    );
    let started = std::time::Instant::now();
    let (spin, sleep, stubborn) = tokio::join!(spin, sleep, stubborn);
    assert_status(&spin, &Status::TimedOut);
    assert_status(&sleep, &Status::TimedOut);
    assert_status(&stubborn, &Status::TimedOut);
    // Each case ends within its deadline plus 5 s (they ran side by side).
    assert!(
        started.elapsed() < Duration::from_secs(3 + 5 + 5),
        "{:?}",
        started.elapsed()
    );
    world.assert_clean().await;
}

#[tokio::test]
async fn stdin_readers_see_end_of_file_and_do_not_hang() {
    // The deadline is far off: a reader that hung would reach it and time out,
    // one that sees end of file exits 0 well before it, however loaded the host.
    let world = World::with_policy(
        "stdin",
        Policy {
            timeout: Duration::from_secs(120),
            ..test_policy()
        },
    )
    .await;
    let stdin = world
        .run(
            "stdin",
            "import sys\ndata = sys.stdin.read()\nprint('eof', len(data))\n",
        )
        .await;
    assert_status(&stdin, &Status::Exited(0));
    assert_eq!(stdin.stdout, "eof 0\n");
    world.assert_clean().await;
}

#[tokio::test]
async fn orphans_and_zombies_do_not_outlive_the_script() {
    let world = World::new("orphans").await;
    let output = world
        .run(
            "orphans",
            "import os, subprocess\nfor _ in range(5):\n    if os.fork() == 0:\n        os._exit(0)\nsubprocess.Popen(['sleep', '3600'], start_new_session=True)\nprint('left')\n",
        )
        .await;
    assert_status(&output, &Status::Exited(0));
    assert_eq!(output.stdout, "left\n");
    world.assert_clean().await;
}

#[tokio::test]
async fn floods_of_output_are_capped_and_endless_ones_stopped() {
    let world = World::with_policy(
        "flood",
        Policy {
            capture_bytes: 64 * 1024,
            stream_ceiling: 16 * 1024 * 1024,
            // 100,000 writes take a few seconds under runc and about 15 under gVisor, whose
            // ptrace platform pays for every system call, and several times that on a busy host.
            timeout: Duration::from_secs(180),
            ..test_policy()
        },
    )
    .await;
    let lines = world.run(
        "lines",
        "import sys\nfor i in range(100000):\n    print('line', i)\nprint('END')\n",
    );
    let endless = world.run(
        "endless",
        "import sys\nwhile True:\n    sys.stderr.write('x' * 65536)\n",
    );
    let (lines, endless) = tokio::join!(lines, endless);
    assert_status(&lines, &Status::Exited(0));
    assert!(lines.stdout.len() < 70 * 1024);
    assert!(lines.stdout.starts_with("line 0\n"));
    assert!(lines.stdout.ends_with("line 99999\nEND\n"));
    assert!(lines.stdout_bytes > 1_000_000);
    assert_status(&endless, &Status::OutputLimit);
    assert!(endless.stderr.len() < 70 * 1024);
    world.assert_clean().await;
}
