//! The Docker checks: the engine answers (and how old it is), the sandbox image is current,
//! no container is left over from a planbox process that is gone, and which OCI runtimes
//! the engine offers (gVisor among them or not). The findings come from
//! `sandbox::engine`, `sandbox::image` and `sandbox::owner`; this module words them.

use std::time::Duration;

use bollard::Docker;
use planbox::sandbox::engine::{self, MIN_API, UnreachableKind};
use planbox::sandbox::image::{self, Installed, Presence};
use planbox::sandbox::owner::{self, Kind, Leftover};

use super::{
    CONTAINERS, Check, DOCKER, ENGINES, IMAGE, RUNTIMES, Status, age, plural, root_cause, size,
    within,
};

/// The engine, image, containers and runtimes checks; the last three are skipped without an
/// engine. `wanted` is the runtime planbox.toml names, if any.
pub(super) async fn docker_checks(
    deadline: Duration,
    wanted: Option<String>,
) -> (Check, Check, Check, Check) {
    let host = engine::host();
    let failed = |engine: Check| {
        (
            engine,
            Check::skip(IMAGE, "needs the Docker engine"),
            Check::skip(CONTAINERS, "needs the Docker engine"),
            Check::skip(RUNTIMES, "needs the Docker engine"),
        )
    };
    let docker = match within(deadline, engine::connect_to(&host)).await {
        Some(Ok(docker)) => docker,
        Some(Err(planbox::Error::EngineUnreachable { host, kind, source })) => {
            return failed(unreachable(&host, kind, &root_cause(&source)));
        }
        Some(Err(err)) => {
            return failed(Check::fail(
                DOCKER,
                format!("{err:#}"),
                UnreachableKind::Other.fix(&host),
            ));
        }
        None => {
            return failed(Check::fail(
                DOCKER,
                format!("the engine at {host} did not answer within {deadline:?}"),
                UnreachableKind::Timeout.fix(&host),
            ));
        }
    };
    let slow = |name, what| {
        Check::fail(
            name,
            format!("{what} took longer than {deadline:?}"),
            UnreachableKind::Timeout.fix(&host),
        )
    };
    tokio::join!(
        engine_check(&docker, &host, deadline),
        async {
            within(deadline, image_check(&docker, &host))
                .await
                .unwrap_or_else(|| slow(IMAGE, "listing images"))
        },
        async {
            within(deadline, containers_check(&docker, &host))
                .await
                .unwrap_or_else(|| slow(CONTAINERS, "listing containers"))
        },
        async {
            match within(deadline, engine::runtimes(&docker)).await {
                Some(Ok((offered, default))) => {
                    runtimes_finding(&offered, default.as_deref(), wanted.as_deref())
                }
                Some(Err(err)) => Check::fail(
                    RUNTIMES,
                    format!("the engine did not list its runtimes: {}", root_cause(&err)),
                    UnreachableKind::Other.fix(&host),
                ),
                None => slow(RUNTIMES, "listing runtimes"),
            }
        },
    )
}

/// Each engine of a configured pool: it answers and holds the current sandbox image, and
/// what dead planbox processes left there. `None` without a pool.
pub(super) async fn engines_check(pool: &[String], deadline: Duration) -> Option<Check> {
    if pool.is_empty() {
        return None;
    }
    let image = image::tag();
    let one = |text: String| {
        let image = image.clone();
        async move {
            let spec = match planbox::sandbox::EngineSpec::parse(&text) {
                Ok(spec) => spec,
                Err(why) => return (text, Err(why)),
            };
            let probe = async {
                let docker = engine::connect_to(&spec.host)
                    .await
                    .map_err(|err| root_cause(&err))?;
                let found = image::exists(&docker, &image)
                    .await
                    .map_err(|err| root_cause(&err))?;
                let leftovers = owner::leftovers(&docker, false)
                    .await
                    .map_err(|err| root_cause(&err))?
                    .iter()
                    .filter(|l| l.kind == Kind::Container && !l.alive)
                    .count();
                Ok::<_, String>((found, leftovers))
            };
            let found = within(deadline, probe)
                .await
                .unwrap_or_else(|| Err(format!("no answer within {deadline:?}")));
            (spec.host, found)
        }
    };
    let found = futures_util::future::join_all(pool.iter().cloned().map(one)).await;
    let mut details = Vec::new();
    let mut problems = Vec::new();
    for (host, result) in &found {
        match result {
            Ok((true, 0)) => details.push(format!("{host} ok")),
            Ok((true, n)) => details.push(format!(
                "{host} ok, {n} left by gone planbox processes (reaped at the next run)"
            )),
            Ok((false, _)) => problems.push(format!("{host} lacks {image}")),
            Err(why) => problems.push(format!("{host}: {why}")),
        }
    }
    let listed = format!(
        "{} engine{}",
        pool.len(),
        if pool.len() == 1 { "" } else { "s" }
    );
    Some(if problems.is_empty() {
        Check::ok(ENGINES, format!("{listed}: {}", details.join("; ")))
    } else {
        Check::fail(
            ENGINES,
            format!(
                "{listed}: {}",
                problems
                    .iter()
                    .chain(&details)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            format!(
                "start the engines that do not answer or drop them from --engine / planbox.toml's [sandbox] engines; load the image into one that lacks it: docker save {image} | DOCKER_HOST=HOST docker load"
            ),
        )
    })
}

/// The runtimes the engine offers, against the one planbox.toml asks for; how to add gVisor
/// when it is not among them.
fn runtimes_finding(offered: &[String], default: Option<&str>, wanted: Option<&str>) -> Check {
    let listed: Vec<String> = offered
        .iter()
        .map(|name| {
            if Some(name.as_str()) == default {
                format!("{name} (default)")
            } else {
                name.clone()
            }
        })
        .collect();
    let listed = listed.join(", ");
    let has = |name: &str| offered.iter().any(|offered| offered == name);
    let register = "sudo make runsc (installs gVisor and registers it with the engine)";
    match wanted {
        Some(name) if !has(name) => Check::fail(
            RUNTIMES,
            format!("planbox.toml asks for runtime {name}, the engine offers {listed}"),
            if name == "runsc" {
                register.to_string()
            } else {
                format!(
                    "register {name} in the engine's daemon.json, or set runtime to one of: {listed}"
                )
            },
        ),
        Some(name) => Check::ok(RUNTIMES, format!("{listed}; scripts run under {name}")),
        None if has("runsc") => Check::ok(
            RUNTIMES,
            format!("{listed}; --runtime runsc runs scripts under gVisor"),
        ),
        None => Check {
            name: RUNTIMES,
            status: Status::Ok,
            detail: format!("{listed}; gVisor (runsc) is not registered"),
            fix: Some(register.to_string()),
        },
    }
}

/// The engine could not be reached: a socket this user may not open and an engine that is
/// not there are different problems with different fixes.
fn unreachable(host: &str, kind: UnreachableKind, cause: &str) -> Check {
    let detail = match kind {
        UnreachableKind::NoSocket => {
            format!("no engine: nothing listens at {host} (the socket does not exist)")
        }
        UnreachableKind::PermissionDenied => {
            format!("permission denied on {host}: this user may not use the Docker engine")
        }
        UnreachableKind::Refused
        | UnreachableKind::ApiVersion
        | UnreachableKind::Timeout
        | UnreachableKind::BadAddress
        | UnreachableKind::Other => format!("no engine answers at {host}: {cause}"),
    };
    Check::fail(DOCKER, detail, kind.fix(host))
}

async fn engine_check(docker: &Docker, host: &str, deadline: Duration) -> Check {
    let version = match within(deadline, engine::version(docker)).await {
        Some(Ok(version)) => version,
        Some(Err(err)) => {
            return Check::fail(
                DOCKER,
                format!(
                    "the engine at {host} answered but not its version: {}",
                    root_cause(&err)
                ),
                UnreachableKind::Other.fix(host),
            );
        }
        None => {
            return Check::fail(
                DOCKER,
                format!("the engine at {host} did not tell its version within {deadline:?}"),
                UnreachableKind::Timeout.fix(host),
            );
        }
    };
    let detail = format!(
        "engine {} at {host}, API {}; planbox negotiated API {}",
        version.engine, version.api, version.negotiated
    );
    if version.too_old() {
        Check::warn(
            DOCKER,
            format!(
                "{detail}: older than API {}.{}, so some sandbox settings may be refused",
                MIN_API.0, MIN_API.1
            ),
            UnreachableKind::ApiVersion.fix(host),
        )
    } else {
        Check::ok(DOCKER, detail)
    }
}

async fn image_check(docker: &Docker, host: &str) -> Check {
    match image::installed(docker).await {
        Ok(images) => image_finding(&image::tag(), &images),
        Err(err) => Check::fail(
            IMAGE,
            format!("cannot list images: {}", root_cause(&err)),
            UnreachableKind::Other.fix(host),
        ),
    }
}

/// The image check's verdict from the engine's `planbox-sandbox` images: the current tag
/// present, missing, or only older tags (stale).
fn image_finding(current: &str, images: &[Installed]) -> Check {
    let fix = "make image   (or: planbox image build)";
    match image::presence(current, images) {
        Presence::Current(found) => Check::ok(
            IMAGE,
            format!(
                "{current} is present ({}, built {})",
                size(found.size),
                age(found.created)
            ),
        ),
        Presence::Missing => Check::fail(IMAGE, format!("{current} is missing"), fix),
        Presence::Stale(older) => Check::fail(
            IMAGE,
            format!(
                "stale: {} present, but this planbox needs {current} (the image's build files changed)",
                older.join(", ")
            ),
            fix,
        ),
    }
}

async fn containers_check(docker: &Docker, host: &str) -> Check {
    match owner::leftovers(docker, false).await {
        Ok(leftovers) => containers_finding(&leftovers),
        Err(err) => Check::fail(
            CONTAINERS,
            format!("cannot list containers: {}", root_cause(&err)),
            UnreachableKind::Other.fix(host),
        ),
    }
}

/// The containers check's verdict: containers of running planbox processes are fine, those
/// of processes that are gone are leftovers (the next run removes them).
fn containers_finding(leftovers: &[Leftover]) -> Check {
    let mut live_owners = Vec::new();
    let mut orphans = Vec::new();
    for container in leftovers.iter().filter(|l| l.kind == Kind::Container) {
        if container.alive {
            live_owners.push(
                container
                    .pid()
                    .map_or("?".to_string(), |pid| pid.to_string()),
            );
        } else {
            orphans.push(container.id.chars().take(12).collect::<String>());
        }
    }
    let live = live_owners.len();
    live_owners.sort_unstable();
    live_owners.dedup();
    let in_use = if live == 0 {
        String::new()
    } else {
        format!(
            "{live} container{} in use by running planbox process{} (pid {})",
            plural(live),
            if live_owners.len() == 1 { "" } else { "es" },
            live_owners.join(", ")
        )
    };
    match (orphans.len(), live) {
        (0, 0) => Check::ok(CONTAINERS, "no planbox containers"),
        (0, _) => Check::ok(CONTAINERS, in_use),
        (n, live) => {
            let mut detail = format!(
                "{n} leftover container{} whose planbox process is gone",
                plural(n)
            );
            if live > 0 {
                detail.push_str(&format!("; {in_use}"));
            }
            // `make clean-containers` removes every planbox container, so only when none
            // belongs to a running process.
            let fix = if live == 0 {
                "make clean-containers   (or leave them: the next planbox run removes them)"
                    .to_string()
            } else {
                format!(
                    "docker rm -f {}   (or leave them: the next planbox run removes them)",
                    orphans.join(" ")
                )
            };
            Check::warn(CONTAINERS, detail, fix)
        }
    }
}

#[cfg(test)]
mod tests;
