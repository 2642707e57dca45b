//! The seccomp profile sent with every container: allow by default (as the engine's profile
//! does for what data analysis needs) but deny the kernel surfaces no analysis script uses and
//! that older engines' default profiles still open: io_uring, ptrace, userfaultfd, keyrings,
//! BPF, perf, namespaces, mounts, modules, clocks. 32-bit syscall tables are refused outright.

use serde_json::{Value, json};

/// Syscalls that fail with EPERM inside the sandbox.
pub const DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "chroot",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "fanotify_init",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "init_module",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mount",
    "mount_setattr",
    "move_mount",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pidfd_getfd",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "syslog",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vhangup",
    "vm86",
    "vm86old",
    "adjtimex",
];

/// clone() flags that create namespaces; clone with any of them is denied.
const NAMESPACE_FLAGS: &[u64] = &[
    0x0002_0000, // CLONE_NEWNS
    0x0200_0000, // CLONE_NEWCGROUP
    0x0400_0000, // CLONE_NEWUTS
    0x0800_0000, // CLONE_NEWIPC
    0x1000_0000, // CLONE_NEWUSER
    0x2000_0000, // CLONE_NEWPID
    0x4000_0000, // CLONE_NEWNET
];

/// The profile as the engine's JSON format.
pub fn profile() -> Value {
    let mut rules = vec![json!({
        "names": DENIED,
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": 1,
    })];
    for flag in NAMESPACE_FLAGS {
        rules.push(json!({
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }));
    }
    // clone3 passes its flags in memory, out of seccomp's sight: answer ENOSYS so libc falls
    // back to clone(), whose flags are checked above.
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
        "syscalls": rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denies_the_surfaces_named_in_the_policy() {
        let profile = profile();
        let denied = profile["syscalls"][0]["names"].as_array().unwrap();
        for name in [
            "io_uring_setup",
            "ptrace",
            "userfaultfd",
            "keyctl",
            "bpf",
            "unshare",
            "mount",
        ] {
            assert!(denied.iter().any(|n| n == name), "{name} is not denied");
        }
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    }
}
