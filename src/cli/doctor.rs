//! `planbox doctor`: checks what a run needs (the Docker engine, the sandbox image, leftover
//! containers, the model, structured output, disk space) and names, for every problem, the
//! command that fixes it. Checks are independent, run concurrently, and each has a deadline.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{ListContainersOptionsBuilder, ListImagesOptionsBuilder};
use planbox::llm::{Client, Llm, LlmConfig, Message, Provider, Request, Schema, StructuredMode};
use planbox::sandbox::engine::UnreachableKind;
use planbox::sandbox::{self, docker::OWNER_LABEL};
use serde::Serialize;
use serde_json::json;

use super::{ModelArgs, print_stdout};

/// Check the engine, the image, leftover containers, the model and disk space, and say how
/// to fix what is wrong. Exit code 0 when no check failed (warnings included), 1 otherwise.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder that holds the run folders; the free space of its disk is checked.
    #[arg(long, value_name = "DIR", default_value = "runs")]
    runs_dir: PathBuf,
    /// Seconds each check may take before it counts as failed.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON object, {"ok", "checks": [{"name", "status", "detail", "fix"}]}, instead
    /// of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    model: ModelArgs,
}

/// How a check came out. `skip` means a check it depends on failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Ok,
    Warn,
    Fail,
    Skip,
}

/// One finding: what was checked, how it came out, what was found, and the fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn skip(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            status: Status::Skip,
            detail: detail.into(),
            fix: None,
        }
    }
}

const DOCKER: &str = "docker";
const IMAGE: &str = "image";
const CONTAINERS: &str = "containers";
const MODEL: &str = "model";
const STRUCTURED: &str = "structured-output";
const DISK: &str = "disk";

/// Below this much free space for run folders, a warning: a run keeps every attempt's
/// outputs (up to 256 MiB each).
const LOW_DISK: u64 = 2 * 1024 * 1024 * 1024;
/// The oldest engine API planbox is tested with (Docker 20.10).
const MIN_API: (u64, u64) = (1, 41);
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Run every check, print them, and map the outcome to an exit code.
pub(crate) async fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        anyhow::bail!("--timeout must be in (0, 600] seconds");
    }
    let deadline = Duration::from_secs_f64(args.timeout);
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let docker_host = env("DOCKER_HOST");
    let ((docker, image, containers), (model, structured), disk) = tokio::join!(
        docker_checks(docker_host.as_deref(), deadline),
        model_checks(&args.model, deadline),
        disk_check(args.runs_dir.clone(), deadline),
    );
    let checks = [docker, image, containers, model, structured, disk];
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    if args.json {
        let value = json!({"ok": !failed, "checks": checks});
        print_stdout(&format!("{value}\n"));
    } else {
        print_stdout(&render(&checks));
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The checks as aligned lines, a fix under each problem, and a one-line summary.
fn render(checks: &[Check]) -> String {
    let mut text = String::new();
    for check in checks {
        let status = match check.status {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
            Status::Skip => "skip",
        };
        text.push_str(&format!(
            "{status:<5} {:<18} {}\n",
            check.name, check.detail
        ));
        if let Some(fix) = &check.fix {
            text.push_str(&format!("{:<24} fix: {fix}\n", ""));
        }
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let (failed, warned) = (count(Status::Fail), count(Status::Warn));
    text.push_str(&match (failed, warned) {
        (0, 0) => "planbox is ready\n".to_string(),
        (0, w) => format!("planbox is ready, with {w} warning{}\n", plural(w)),
        (f, w) => format!(
            "{f} check{} failed, {w} warning{}: planbox cannot run until the fixes above are applied\n",
            plural(f),
            plural(w)
        ),
    });
    text
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Await `work` for at most `deadline`.
async fn within<T>(deadline: Duration, work: impl Future<Output = T>) -> Option<T> {
    tokio::time::timeout(deadline, work).await.ok()
}

// ---- Docker: engine, image, leftover containers ----

async fn docker_checks(docker_host: Option<&str>, deadline: Duration) -> (Check, Check, Check) {
    let host = docker_host.unwrap_or("unix:///var/run/docker.sock");
    let skipped = || {
        (
            Check::skip(IMAGE, "needs the Docker engine"),
            Check::skip(CONTAINERS, "needs the Docker engine"),
        )
    };
    if let Some(path) = host.strip_prefix("unix://")
        && !Path::new(path).exists()
    {
        let fix = if docker_host.is_some() && Path::new(DEFAULT_SOCKET).exists() {
            format!("unset DOCKER_HOST   (the default socket {DEFAULT_SOCKET} exists)")
        } else {
            "sudo systemctl start docker".to_string()
        };
        let (image, containers) = skipped();
        return (
            Check::fail(
                DOCKER,
                format!("no engine: nothing listens at {host} (the socket does not exist)"),
                fix,
            ),
            image,
            containers,
        );
    }
    let docker = match within(deadline, sandbox::docker::connect()).await {
        Some(Ok(docker)) => docker,
        Some(Err(planbox::Error::EngineUnreachable { host, kind, source })) => {
            let (image, containers) = skipped();
            return (
                unreachable(&host, kind, &root_cause(&source)),
                image,
                containers,
            );
        }
        Some(Err(err)) => {
            let (image, containers) = skipped();
            return (
                Check::fail(DOCKER, format!("{err:#}"), "sudo systemctl restart docker"),
                image,
                containers,
            );
        }
        None => {
            let (image, containers) = skipped();
            return (
                Check::fail(
                    DOCKER,
                    format!("the engine at {host} did not answer within {deadline:?}"),
                    "sudo systemctl restart docker",
                ),
                image,
                containers,
            );
        }
    };
    let (engine, image, containers) = tokio::join!(
        engine_check(&docker, host, deadline),
        async {
            within(deadline, image_check(&docker))
                .await
                .unwrap_or_else(|| {
                    Check::fail(
                        IMAGE,
                        format!("listing images took longer than {deadline:?}"),
                        "sudo systemctl restart docker",
                    )
                })
        },
        async {
            within(deadline, containers_check(&docker))
                .await
                .unwrap_or_else(|| {
                    Check::fail(
                        CONTAINERS,
                        format!("listing containers took longer than {deadline:?}"),
                        "sudo systemctl restart docker",
                    )
                })
        },
    );
    (engine, image, containers)
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

/// The innermost cause of an error: what a person needs, where the outer layers name only
/// the library that passed it on.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(err), |e| e.source())
        .last()
        .map(ToString::to_string)
        .unwrap_or_default()
}

async fn engine_check(docker: &Docker, host: &str, deadline: Duration) -> Check {
    let negotiated = docker.client_version();
    let version = match within(deadline, docker.version()).await {
        Some(Ok(version)) => version,
        Some(Err(err)) => {
            return Check::fail(
                DOCKER,
                format!("the engine at {host} answered but not its version: {err}"),
                "sudo systemctl restart docker",
            );
        }
        None => {
            return Check::fail(
                DOCKER,
                format!("the engine at {host} did not tell its version within {deadline:?}"),
                "sudo systemctl restart docker",
            );
        }
    };
    let unknown = || "unknown".to_string();
    let api = version.api_version.unwrap_or_else(unknown);
    let detail = format!(
        "engine {} at {host}, API {api}; planbox negotiated API {negotiated}",
        version.version.unwrap_or_else(unknown),
    );
    match api_number(&api) {
        Some(found) if found < MIN_API => Check::warn(
            DOCKER,
            format!(
                "{detail}: older than API {}.{}, so some sandbox settings may be refused",
                MIN_API.0, MIN_API.1
            ),
            "upgrade the Docker engine to 20.10 or newer (sudo apt-get install docker.io)",
        ),
        Some(_) | None => Check::ok(DOCKER, detail),
    }
}

/// `"1.41"` as `(1, 41)`, compared as numbers (`1.9 < 1.41`).
fn api_number(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

async fn image_check(docker: &Docker) -> Check {
    let current = sandbox::image::tag();
    let repo = current.split(':').next().unwrap_or_default().to_string();
    let filters = HashMap::from([("reference", vec![repo.as_str()])]);
    let options = ListImagesOptionsBuilder::new().filters(&filters).build();
    let images = match docker.list_images(Some(options)).await {
        Ok(images) => images,
        Err(err) => {
            return Check::fail(
                IMAGE,
                format!("cannot list images: {err}"),
                "sudo systemctl restart docker",
            );
        }
    };
    let found: Vec<(Vec<String>, u64, i64)> = images
        .into_iter()
        .map(|i| (i.repo_tags, i.size.max(0) as u64, i.created))
        .collect();
    image_finding(&current, &found)
}

/// The image check's verdict from the engine's `planbox-sandbox` images (tags, size,
/// creation time): the current tag present, missing, or only older tags (stale).
fn image_finding(current: &str, images: &[(Vec<String>, u64, i64)]) -> Check {
    let fix = "make image   (or: planbox image build)";
    if let Some((_, bytes, created)) = images
        .iter()
        .find(|(tags, _, _)| tags.iter().any(|t| t == current))
    {
        return Check::ok(
            IMAGE,
            format!(
                "{current} is present ({}, built {})",
                size(*bytes),
                age(*created)
            ),
        );
    }
    let repo = current.split(':').next().unwrap_or_default();
    let mut older: Vec<&str> = images
        .iter()
        .flat_map(|(tags, _, _)| tags.iter())
        .filter(|tag| tag.starts_with(&format!("{repo}:")))
        .map(String::as_str)
        .collect();
    older.sort_unstable();
    if older.is_empty() {
        Check::fail(IMAGE, format!("{current} is missing"), fix)
    } else {
        Check::fail(
            IMAGE,
            format!(
                "stale: {} present, but this planbox needs {current} (the image's build files changed)",
                older.join(", ")
            ),
            fix,
        )
    }
}

async fn containers_check(docker: &Docker) -> Check {
    let filters = HashMap::from([("label", vec![OWNER_LABEL])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = match docker.list_containers(Some(options)).await {
        Ok(containers) => containers,
        Err(err) => {
            return Check::fail(
                CONTAINERS,
                format!("cannot list containers: {err}"),
                "sudo systemctl restart docker",
            );
        }
    };
    let mut live_owners = Vec::new();
    let mut orphans = Vec::new();
    for container in containers {
        let owner = container
            .labels
            .as_ref()
            .and_then(|labels| labels.get(OWNER_LABEL))
            .cloned()
            .unwrap_or_default();
        let id: String = container.id.unwrap_or_default().chars().take(12).collect();
        if sandbox::docker::owner_alive(&owner) {
            // `host:pid:start-time`; the pid is what a person can look up.
            let pid = owner.split(':').nth(1).unwrap_or("?").to_string();
            live_owners.push(pid);
        } else {
            orphans.push(id);
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

fn size(bytes: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    let bytes = bytes as f64;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes / GIB)
    } else {
        format!("{:.0} MiB", bytes / 1024.0 / 1024.0)
    }
}

fn age(unix_secs: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let secs = now.saturating_sub(unix_secs).max(0);
    match secs {
        0..60 => "just now".to_string(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}

// ---- The model: reachable, and structured output ----

async fn model_checks(args: &ModelArgs, deadline: Duration) -> (Check, Check) {
    let mut config = match args.resolve(planbox::llm::config::Overrides::default()) {
        Ok(config) => config,
        Err(err) => {
            return (
                Check::fail(MODEL, format!("{err:#}"), config_fix(&err.to_string())),
                Check::skip(STRUCTURED, "needs a configured model"),
            );
        }
    };
    // One try each, bounded by the deadline: doctor reports, it does not wait out retries.
    config.timeout = deadline;
    config.retry.attempts = 1;
    let client = match config.client() {
        Ok(client) => client,
        Err(err) => {
            return (
                Check::fail(MODEL, format!("{err:#}"), config_fix(&err.to_string())),
                Check::skip(STRUCTURED, "needs a configured model"),
            );
        }
    };
    let model = ping(&client, &config, deadline).await;
    if model.status == Status::Fail {
        return (model, Check::skip(STRUCTURED, "needs a model that answers"));
    }
    let structured = structured_check(&client, &config, deadline).await;
    (model, structured)
}

fn provider_name(provider: Provider) -> &'static str {
    match provider {
        Provider::OpenAi => "openai",
        Provider::Anthropic => "anthropic",
        Provider::Local => "local",
    }
}

/// The fix for a configuration error: a missing key names its variable.
fn config_fix(message: &str) -> String {
    let missing_key = message
        .split_whitespace()
        .find(|word| word.ends_with("_API_KEY"))
        .filter(|_| message.contains("is not set"));
    match missing_key {
        Some(var) => format!(
            "export {var}=<your key>   (or use the offline model: make local-llm, --provider local)"
        ),
        None => "correct the setting named above (a flag, a PLANBOX_* variable or planbox.toml)"
            .to_string(),
    }
}

/// The fix for a model request that failed.
fn request_fix(config: &LlmConfig, err: &planbox::Error) -> String {
    if let planbox::Error::LlmUnreachable { .. } = err {
        return unreachable_fix(config);
    }
    let message = err.to_string();
    if message.contains("API key") {
        format!("export {}=<your key>", config.key_var)
    } else if message.contains("not found") {
        "name a model the server has: --model NAME (or export PLANBOX_MODEL=NAME)".to_string()
    } else {
        "RUST_LOG=debug planbox llm ping   (shows the exchange with the server)".to_string()
    }
}

/// The fix for a server that does not answer, by provider.
fn unreachable_fix(config: &LlmConfig) -> String {
    match config.provider {
        Provider::Local => "make local-llm".to_string(),
        Provider::OpenAi => format!(
            "start the server at {}, or point planbox at one: --base-url URL (or export OPENAI_BASE_URL=URL)",
            config.base_url
        ),
        Provider::Anthropic => format!(
            "check the network path to {} (or export ANTHROPIC_BASE_URL=URL)",
            config.base_url
        ),
    }
}

async fn ping(client: &Client, config: &LlmConfig, deadline: Duration) -> Check {
    let request = Request::ping();
    let whom = format!(
        "{} model {:?} at {}",
        provider_name(config.provider),
        config.model,
        config.base_url
    );
    match within(deadline + Duration::from_secs(1), client.complete(&request)).await {
        Some(Ok(reply)) => Check::ok(
            MODEL,
            format!(
                "{whom} answered in {:.2} s (as {:?})",
                reply.latency.as_secs_f64(),
                reply.model
            ),
        ),
        Some(Err(planbox::Error::LlmUnreachable { reason, .. })) => {
            // The reason ends with the library's advice and holds the whole cause chain;
            // the root cause is what a person needs, the fix line gives the advice.
            let cause = reason.split("; ").next().unwrap_or(&reason);
            let root = cause.rsplit(": ").next().unwrap_or(cause);
            Check::fail(
                MODEL,
                format!("{whom} is unreachable: {root}"),
                unreachable_fix(config),
            )
        }
        Some(Err(err)) => {
            let fix = request_fix(config, &err);
            Check::fail(MODEL, format!("{whom}: {err:#}"), fix)
        }
        None => Check::fail(
            MODEL,
            format!("{whom} did not answer within {deadline:?}"),
            match config.provider {
                Provider::Local => "make local-llm-stop && make local-llm   (restart it)",
                Provider::OpenAi | Provider::Anthropic => {
                    "planbox doctor --timeout 60   (a slow server may need longer)"
                }
            },
        ),
    }
}

/// A tiny `json_schema` request whose reply is checked against the schema: the planner and
/// every structured step depend on it.
async fn structured_check(client: &Client, config: &LlmConfig, deadline: Duration) -> Check {
    let schema = json!({
        "type": "object",
        "properties": {"sum": {"type": "integer"}},
        "required": ["sum"],
        "additionalProperties": false,
    });
    let request = Request {
        schema: Some(Schema {
            name: "doctor_sum".into(),
            schema: schema.clone(),
        }),
        max_tokens: Some(32),
        temperature: Some(0.0),
        ..Request::new(vec![
            Message::system("You are a terse assistant."),
            Message::user("What is 2 + 3? Answer as JSON with one integer field, sum."),
        ])
    };
    let reply = match within(deadline + Duration::from_secs(1), client.complete(&request)).await {
        Some(Ok(reply)) => reply,
        Some(Err(err)) => {
            let fix = request_fix(config, &err);
            return Check::fail(
                STRUCTURED,
                format!("a json_schema request failed: {err:#}"),
                fix,
            );
        }
        None => {
            return Check::fail(
                STRUCTURED,
                format!("no answer to a json_schema request within {deadline:?}"),
                "planbox doctor --timeout 60   (a slow server may need longer)",
            );
        }
    };
    let better_server = "use a server that enforces response_format json_schema (llama-server, vLLM, Ollama 0.5+): --base-url URL";
    let fallback = match reply.mode {
        Some(StructuredMode::JsonSchema) | None => None,
        Some(StructuredMode::JsonObject) => Some("json_object"),
        Some(StructuredMode::Prompt) => Some("a prompt instruction"),
    };
    if let Some(fallback) = fallback {
        return Check::warn(
            STRUCTURED,
            format!(
                "the server refused response_format json_schema; planbox falls back to {fallback}, which models follow less reliably"
            ),
            better_server,
        );
    }
    let shown = planbox::text::truncate_middle(reply.text.trim(), 120);
    match serde_json::from_str(reply.text.trim()) {
        Err(_) => Check::warn(
            STRUCTURED,
            format!("json_schema was accepted but the reply is not JSON: {shown:?}"),
            better_server,
        ),
        Ok(value) => match planbox::llm::schema::validate(&schema, &value) {
            Ok(()) => Check::ok(
                STRUCTURED,
                format!("json_schema accepted and the reply matched the schema: {shown}"),
            ),
            Err(errors) => Check::warn(
                STRUCTURED,
                format!(
                    "json_schema was accepted but the reply does not match it ({}): {shown}",
                    errors.join("; ")
                ),
                better_server,
            ),
        },
    }
}

// ---- Disk space for run folders ----

async fn disk_check(runs_dir: PathBuf, deadline: Duration) -> Check {
    // statvfs can block on a dead network mount: off the async threads, under the deadline.
    let work = tokio::task::spawn_blocking(move || disk(&runs_dir));
    match within(deadline, work).await {
        Some(Ok(check)) => check,
        Some(Err(err)) => Check::fail(DISK, format!("the disk check crashed: {err}"), "df -h ."),
        None => Check::fail(
            DISK,
            format!("the file system did not answer within {deadline:?}"),
            "df -h .   (a hung network mount?)",
        ),
    }
}

fn disk(runs_dir: &Path) -> Check {
    if runs_dir.exists() && !runs_dir.is_dir() {
        return Check::fail(
            DISK,
            format!("{} is not a folder", runs_dir.display()),
            "--runs-dir DIR   (name a folder for run folders)",
        );
    }
    // The folder is created on the first run: measure the nearest folder that exists.
    let probe = runs_dir
        .ancestors()
        .find(|p| p.is_dir())
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let (free, writable) = match statvfs(probe) {
        Ok(found) => found,
        Err(err) => {
            return Check::fail(
                DISK,
                format!("cannot measure free space at {}: {err}", probe.display()),
                "--runs-dir DIR   (a folder on a local disk)",
            );
        }
    };
    let place = if probe == runs_dir {
        format!("{}", runs_dir.display())
    } else {
        format!("{} (measured at {})", runs_dir.display(), probe.display())
    };
    if !writable {
        return Check::fail(
            DISK,
            format!("{place} is not writable"),
            "--runs-dir DIR   (a folder this user may write)",
        );
    }
    let detail = format!("{} free for {place}", size(free));
    if free < LOW_DISK {
        Check::warn(
            DISK,
            format!(
                "{detail}: under {}; runs keep every attempt's files",
                size(LOW_DISK)
            ),
            format!(
                "du -sh {}/* | sort -h   (remove old runs), or --runs-dir DIR on a larger disk",
                runs_dir.display()
            ),
        )
    } else {
        Check::ok(DISK, detail)
    }
}

/// Free bytes for unprivileged users, and whether this process may write there.
fn statvfs(path: &Path) -> std::io::Result<(u64, bool)> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is NUL-terminated and stat is a valid out-pointer for the call.
    if unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let stat = unsafe { stat.assume_init() };
    // SAFETY: c_path is NUL-terminated. access() also reports a read-only file system.
    let writable = unsafe { libc::access(c_path.as_ptr(), libc::W_OK) } == 0;
    // The field types are narrower on 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let free = stat.f_bavail as u64 * stat.f_frsize as u64;
    Ok((free, writable))
}

#[cfg(test)]
mod tests {
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
    fn an_image_is_current_missing_or_stale() {
        let current = "planbox-sandbox:0123456789ab";
        let old = vec!["planbox-sandbox:ba9876543210".to_string()];
        let both = vec![old[0].clone(), current.to_string()];
        let present = image_finding(current, &[(both, 600 * 1024 * 1024, 0)]);
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
            image_finding(current, &[(old, 1, 0)]),
            Check::fail(
                IMAGE,
                format!(
                    "stale: planbox-sandbox:ba9876543210 present, but this planbox needs {current} (the image's build files changed)"
                ),
                fix
            )
        );
    }

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(api_number("1.41"), Some((1, 41)));
        assert!(api_number("1.9").unwrap() < MIN_API);
        assert!(api_number("1.43").unwrap() >= MIN_API);
        assert_eq!(api_number("new"), None);
    }

    #[test]
    fn a_missing_key_names_its_variable() {
        assert_eq!(
            config_fix("invalid setting: ANTHROPIC_API_KEY is not set: export it, ..."),
            "export ANTHROPIC_API_KEY=<your key>   (or use the offline model: make local-llm, --provider local)"
        );
        assert!(
            config_fix("invalid setting: temperature must be in [0, 2]").contains("planbox.toml")
        );
    }

    #[test]
    fn a_missing_runs_folder_is_measured_at_its_parent() {
        let dir = tempfile::tempdir().unwrap();
        let check = disk(&dir.path().join("runs/deeper"));
        assert_ne!(check.status, Status::Fail, "{check:?}");
        assert!(
            check
                .detail
                .contains(&format!("(measured at {})", dir.path().display())),
            "{check:?}"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(disk(&file).status, Status::Fail);
    }

    #[test]
    fn the_report_shows_fixes_under_problems() {
        let checks = [
            Check::ok(
                DOCKER,
                "engine 27.1.1 at unix:///var/run/docker.sock, API 1.46; planbox negotiated API 1.46",
            ),
            Check::fail(
                IMAGE,
                "planbox-sandbox:0123456789ab is missing",
                "make image   (or: planbox image build)",
            ),
            Check::warn(
                CONTAINERS,
                "2 leftover containers whose planbox process is gone",
                "make clean-containers   (or leave them: the next planbox run removes them)",
            ),
            Check::fail(
                MODEL,
                "local model \"qwen2.5-coder-1.5b-instruct\" at http://127.0.0.1:8411/v1: cannot reach the model server",
                "make local-llm",
            ),
            Check::skip(STRUCTURED, "needs a model that answers"),
            Check::ok(DISK, "61.2 GiB free for runs (measured at .)"),
        ];
        insta::assert_snapshot!(render(&checks));
    }
}
