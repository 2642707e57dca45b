use super::*;
use pretty_assertions::assert_eq;

#[test]
fn defaults_follow_the_sandbox_policy() {
    let policy = Policy::default();
    let host = policy.host_config(&[("/in/a.csv".into(), "/data/a.csv".into())], "vol");
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
    assert_eq!(host.memory, host.memory_swap);
    assert_eq!(host.memory, Some(2 * 1024 * MIB));
    assert_eq!(host.nano_cpus, Some(1_000_000_000));
    assert_eq!(host.pids_limit, Some(128));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.auto_remove, Some(false));
    assert_eq!(host.log_config.unwrap().typ.as_deref(), Some("none"));
    let security = host.security_opt.unwrap();
    assert_eq!(security[0], "no-new-privileges");
    assert!(security[1].starts_with("seccomp={"));
    let mounts: Vec<_> = host
        .mounts
        .unwrap()
        .into_iter()
        .map(|m| (m.source.unwrap(), m.target.unwrap(), m.read_only.unwrap()))
        .collect();
    assert_eq!(
        mounts,
        vec![
            ("/in/a.csv".to_string(), "/data/a.csv".to_string(), true),
            ("vol".to_string(), "/out".to_string(), false),
        ]
    );
    assert_eq!(
        host.tmpfs.unwrap()["/tmp"],
        format!("rw,nosuid,nodev,size={}", 256 * MIB)
    );
}

#[test]
fn check_accepts_what_was_asked() {
    let policy = Policy::default();
    let host = policy.host_config(&[], "vol");
    assert_eq!(policy.check(&host, &host.clone()), Ok(()));
}

#[test]
fn check_names_every_weakened_setting() {
    let policy = Policy::default();
    let wanted = policy.host_config(&[], "vol");
    let actual = HostConfig {
        network_mode: Some("bridge".into()),
        memory_swap: Some(-1),
        cap_add: Some(vec!["SYS_ADMIN".into()]),
        ..wanted.clone()
    };
    let why = policy.check(&wanted, &actual).unwrap_err();
    assert!(why.contains("network_mode"), "{why}");
    assert!(why.contains("memory_swap"), "{why}");
    assert!(why.contains("cap_add"), "{why}");
}

#[test]
fn under_gvisor_processes_are_bounded_inside_and_the_cgroup_leaves_room_for_it() {
    let runc = Policy::default().host_config(&[], "vol");
    assert_eq!(runc.pids_limit, Some(128));
    assert!(
        !runc
            .ulimits
            .unwrap()
            .iter()
            .any(|u| u.name.as_deref() == Some("nproc"))
    );
    let gvisor = Policy {
        runtime: Some("runsc".into()),
        ..Policy::default()
    };
    let host = gvisor.host_config(&[], "vol");
    assert_eq!(host.runtime.as_deref(), Some("runsc"));
    assert_eq!(host.pids_limit, Some(96 + 7 * 128));
    let nproc = host
        .ulimits
        .unwrap()
        .into_iter()
        .find(|u| u.name.as_deref() == Some("nproc"))
        .unwrap();
    assert_eq!((nproc.soft, nproc.hard), (Some(128), Some(128)));
    assert_eq!(gvisor.holder_config("vol").pids_limit, Some(96 + 7 * 8));
}

#[test]
fn check_refuses_a_container_under_another_runtime() {
    let policy = Policy {
        runtime: Some("runsc".into()),
        ..Policy::default()
    };
    let wanted = policy.host_config(&[], "vol");
    let actual = HostConfig {
        runtime: Some("runc".into()),
        ..wanted.clone()
    };
    let why = policy.check(&wanted, &actual).unwrap_err();
    assert!(why.contains("runtime: wanted Some(\"runsc\")"), "{why}");
    let unset = HostConfig {
        runtime: None,
        ..wanted.clone()
    };
    assert!(policy.check(&wanted, &unset).is_err());
    assert_eq!(policy.check(&wanted, &wanted.clone()), Ok(()));
}

#[test]
fn validate_bounds_the_timeout() {
    let policy = Policy {
        timeout: Duration::from_secs(601),
        ..Policy::default()
    };
    assert!(policy.validate().is_err());
    assert!(Policy::default().validate().is_ok());
}

#[test]
fn output_volume_is_a_capped_tmpfs() {
    let options = Policy::default().out_volume_options();
    assert_eq!(options["type"], "tmpfs");
    assert!(options["o"].contains("size=268435456"));
    assert!(options["o"].contains("nr_inodes=4097"));
}
