use super::super::Status;
use super::*;
use pretty_assertions::assert_eq;

#[test]
fn permission_denied_and_no_engine_are_different_findings() {
    let denied = unreachable(
        "unix:///var/run/docker.sock",
        UnreachableKind::PermissionDenied,
        "Permission denied (os error 13)",
    );
    assert_eq!(denied.status, Status::Fail);
    assert!(denied.detail.starts_with("permission denied"), "{denied:?}");
    assert!(
        denied
            .fix
            .as_deref()
            .unwrap()
            .contains("usermod -aG docker"),
        "{denied:?}"
    );

    let absent = unreachable(
        "tcp://127.0.0.1:2375",
        UnreachableKind::Refused,
        "Connection refused (os error 111)",
    );
    assert_eq!(
        absent,
        Check::fail(
            DOCKER,
            "no engine answers at tcp://127.0.0.1:2375: Connection refused (os error 111)",
            "start the engine at tcp://127.0.0.1:2375, or unset DOCKER_HOST to use /var/run/docker.sock",
        )
    );
    let local = unreachable(
        "unix:///var/run/docker.sock",
        UnreachableKind::Refused,
        "refused",
    );
    assert_eq!(local.fix.as_deref(), Some("sudo systemctl start docker"));
}

#[test]
fn runtimes_say_how_to_get_gvisor_and_fail_on_a_missing_choice() {
    let runc = ["runc".to_string()];
    let both = ["runc".to_string(), "runsc".to_string()];
    let plain = runtimes_finding(&runc, Some("runc"), None);
    assert_eq!(plain.status, Status::Ok);
    assert_eq!(
        plain.detail,
        "runc (default); gVisor (runsc) is not registered"
    );
    assert!(plain.fix.unwrap().starts_with("sudo make runsc"));
    let ready = runtimes_finding(&both, Some("runc"), None);
    assert_eq!(ready.fix, None);
    assert!(
        ready.detail.starts_with("runc (default), runsc;"),
        "{}",
        ready.detail
    );
    let chosen = runtimes_finding(&both, Some("runc"), Some("runsc"));
    assert_eq!(chosen.status, Status::Ok);
    assert!(chosen.detail.ends_with("scripts run under runsc"));
    let missing = runtimes_finding(&runc, Some("runc"), Some("runsc"));
    assert_eq!(missing.status, Status::Fail);
    assert!(missing.fix.unwrap().starts_with("sudo make runsc"));
    let other = runtimes_finding(&runc, Some("runc"), Some("kata"));
    assert!(other.fix.unwrap().contains("daemon.json"));
}

#[test]
fn an_image_is_current_missing_or_stale() {
    let current = "planbox-sandbox:0123456789ab";
    let image = |tags: &[&str], size| Installed {
        tags: tags.iter().map(ToString::to_string).collect(),
        size,
        created: 0,
    };
    let old = "planbox-sandbox:ba9876543210";
    let present = image_finding(current, &[image(&[old, current], 600 * 1024 * 1024)]);
    assert_eq!(present.status, Status::Ok);
    assert!(
        present
            .detail
            .starts_with(&format!("{current} is present (600 MiB, built ")),
        "{present:?}"
    );
    let fix = "make image   (or: planbox image build)";
    assert_eq!(
        image_finding(current, &[]),
        Check::fail(IMAGE, format!("{current} is missing"), fix)
    );
    assert_eq!(
        image_finding(current, &[image(&[old], 1)]),
        Check::fail(
            IMAGE,
            format!(
                "stale: {old} present, but this planbox needs {current} (the image's build files changed)"
            ),
            fix
        )
    );
}

#[test]
fn only_containers_of_gone_processes_are_leftovers() {
    let container = |id: &str, owner: &str, alive| Leftover {
        kind: Kind::Container,
        id: id.into(),
        owner: owner.into(),
        alive,
        age: None,
        size: None,
    };
    let volume = Leftover {
        kind: Kind::Volume,
        ..container("planbox-out-1", "h:9:1", false)
    };
    assert_eq!(
        containers_finding(std::slice::from_ref(&volume)),
        Check::ok(CONTAINERS, "no planbox containers")
    );
    let running = container("aaaa", "h:42:7", true);
    let gone = container("0123456789abcdef", "h:9:1", false);
    assert_eq!(
        containers_finding(&[running.clone(), running.clone()]),
        Check::ok(
            CONTAINERS,
            "2 containers in use by running planbox process (pid 42)"
        )
    );
    assert_eq!(
        containers_finding(&[gone.clone(), volume]),
        Check::warn(
            CONTAINERS,
            "1 leftover container whose planbox process is gone",
            "make clean-containers   (or leave them: the next planbox run removes them)"
        )
    );
    assert_eq!(
        containers_finding(&[gone, running]).fix.as_deref(),
        Some("docker rm -f 0123456789ab   (or leave them: the next planbox run removes them)")
    );
}
