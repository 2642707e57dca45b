//! `planbox doctor` run as a user would: against the real engine, with a fake model server
//! or none, and with the engine's socket missing. Each check's status and fix are asserted.

mod fake_llm;

use std::path::Path;

use fake_llm::{Answer, FakeServer, chat};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

/// What one doctor run printed and how it exited.
struct Doctor {
    code: Option<i32>,
    report: Value,
}

impl Doctor {
    /// The check named `name`.
    fn check(&self, name: &str) -> &Value {
        self.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check in {:#}", self.report))
    }

    fn status(&self, name: &str) -> &str {
        self.check(name)["status"].as_str().unwrap()
    }

    fn fix(&self, name: &str) -> &str {
        self.check(name)["fix"].as_str().unwrap_or_default()
    }
}

/// Run `planbox doctor --json` with the model settings in `args`, a configuration file that
/// does not exist, and no model variables from the caller's environment.
async fn doctor(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Doctor {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"));
    command
        .args(["doctor", "--json", "--timeout", "10"])
        .arg("--config")
        .arg(dir.join("none.toml"))
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args(args);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "PLANBOX_PROVIDER",
        "PLANBOX_MODEL",
        "PLANBOX_LOCAL_URL",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let output = command.output().await.unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "doctor printed no JSON ({err}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    Doctor {
        code: output.status.code(),
        report,
    }
}

/// A model server answering the two requests doctor sends: a ping, then a json_schema one.
async fn healthy_model() -> FakeServer {
    FakeServer::start(vec![chat("pong"), chat(r#"{"sum": 5}"#)]).await
}

/// An address where nothing listens.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/v1")
}

#[tokio::test]
async fn a_ready_machine_passes_every_check() {
    let dir = tempfile::tempdir().unwrap();
    let server = healthy_model().await;
    let url = server.openai_url();
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &url],
        &[],
    )
    .await;

    let names: Vec<&str> = run.report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "docker",
            "image",
            "containers",
            "runtimes",
            "model",
            "structured-output",
            "disk"
        ]
    );
    for name in ["docker", "image", "model", "structured-output", "disk"] {
        assert_eq!(run.status(name), "ok", "{:#}", run.report);
        assert_eq!(run.check(name)["fix"], Value::Null, "{name}");
    }
    // Other planbox processes on this machine may own containers right now; a leftover
    // is worth a warning, never a failure.
    assert!(
        ["ok", "warn"].contains(&run.status("containers")),
        "{:#}",
        run.report
    );
    assert_eq!(run.code, Some(0), "{:#}", run.report);
    assert_eq!(run.report["ok"], true);

    let docker = run.check("docker")["detail"].as_str().unwrap();
    assert!(docker.contains("planbox negotiated API 1."), "{docker}");
    let image = run.check("image")["detail"].as_str().unwrap();
    assert!(
        image.starts_with(&format!("{} is present", planbox::sandbox::image::tag())),
        "{image}"
    );
    let model = run.check("model")["detail"].as_str().unwrap();
    assert!(model.contains(&format!("at {url} answered in")), "{model}");
    let disk = run.check("disk")["detail"].as_str().unwrap();
    assert!(disk.contains("free for"), "{disk}");

    // The second request asked for structured output under a schema, strictly.
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let format = &seen[1].body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["strict"], true);
    assert_eq!(format["json_schema"]["schema"]["required"], json!(["sum"]));
}

#[tokio::test]
async fn a_model_server_that_is_not_there_fails_with_its_remedy() {
    let dir = tempfile::tempdir().unwrap();
    let url = closed_port().await;

    let local = doctor(
        dir.path(),
        &["--provider", "local", "--base-url", &url],
        &[],
    )
    .await;
    assert_eq!(local.code, Some(1), "{:#}", local.report);
    assert_eq!(local.report["ok"], false);
    assert_eq!(local.status("model"), "fail");
    assert_eq!(local.fix("model"), "make local-llm");
    let detail = local.check("model")["detail"].as_str().unwrap();
    assert!(
        detail.contains("is unreachable: Connection refused"),
        "{detail}"
    );
    assert_eq!(local.status("structured-output"), "skip");
    assert_eq!(local.status("disk"), "ok");

    // Any other OpenAI-compatible server: start it or point planbox elsewhere.
    let other = doctor(
        dir.path(),
        &["--provider", "openai"],
        &[("OPENAI_BASE_URL", &url)],
    )
    .await;
    assert_eq!(other.code, Some(1), "{:#}", other.report);
    assert_eq!(other.status("model"), "fail");
    let fix = other.fix("model");
    assert!(
        fix.starts_with(&format!("start the server at {url}")),
        "{fix}"
    );
    assert!(fix.contains("--base-url URL"), "{fix}");
}

#[tokio::test]
async fn a_refused_key_and_a_missing_model_fail_with_their_own_fixes() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(vec![Answer::status(
        401,
        r#"{"error": {"message": "bad key"}}"#,
    )])
    .await;
    let url = server.openai_url();
    let refused = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &url],
        &[("OPENAI_API_KEY", "sk-wrong")],
    )
    .await;
    assert_eq!(refused.status("model"), "fail", "{:#}", refused.report);
    let detail = refused.check("model")["detail"].as_str().unwrap();
    assert!(
        detail.ends_with(&format!(
            "{url}/chat/completions refused the API key in OPENAI_API_KEY (401 Unauthorized)"
        )),
        "{detail}"
    );
    assert_eq!(refused.fix("model"), "export OPENAI_API_KEY=<your key>");

    let server = FakeServer::start(vec![Answer::status(
        404,
        r#"{"error": {"message": "model not found"}}"#,
    )])
    .await;
    let missing = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[],
    )
    .await;
    assert_eq!(missing.status("model"), "fail", "{:#}", missing.report);
    assert_eq!(
        missing.fix("model"),
        "name a model the server has: --model NAME (or export PLANBOX_MODEL=NAME), or correct the base URL: --base-url URL"
    );
}

#[tokio::test]
async fn a_missing_engine_socket_fails_the_docker_check_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = healthy_model().await;
    let socket = dir.path().join("no.sock");
    let host = format!("unix://{}", socket.display());
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[("DOCKER_HOST", &host)],
    )
    .await;

    assert_eq!(run.code, Some(1), "{:#}", run.report);
    assert_eq!(
        run.check("docker")["detail"],
        format!("no engine: nothing listens at {host} (the socket does not exist)")
    );
    assert_eq!(run.status("docker"), "fail");
    let fix = if Path::new("/var/run/docker.sock").exists() {
        "unset DOCKER_HOST   (the default socket /var/run/docker.sock exists)".to_string()
    } else {
        format!("start the engine at {host}, or unset DOCKER_HOST to use /var/run/docker.sock")
    };
    assert_eq!(run.fix("docker"), fix);
    // What needs the engine is skipped, not failed a second time; the rest still runs.
    assert_eq!(run.status("image"), "skip");
    assert_eq!(run.status("containers"), "skip");
    assert_eq!(run.status("model"), "ok");
    assert_eq!(run.status("structured-output"), "ok");
}

#[tokio::test]
async fn an_engine_address_where_nothing_listens_names_the_cause_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = healthy_model().await;
    let host = closed_port().await.replace("http://", "tcp://");
    let host = host.trim_end_matches("/v1");
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[("DOCKER_HOST", host)],
    )
    .await;

    assert_eq!(run.status("docker"), "fail", "{:#}", run.report);
    assert_eq!(
        run.check("docker")["detail"],
        format!("no engine answers at {host}: Connection refused (os error 111)")
    );
    assert_eq!(
        run.fix("docker"),
        format!("start the engine at {host}, or unset DOCKER_HOST to use /var/run/docker.sock")
    );
    assert_eq!(run.status("image"), "skip");
}

#[tokio::test]
async fn a_server_without_json_schema_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    // The server refuses json_schema; planbox falls back to json_object and asks again.
    let server = FakeServer::start(vec![
        chat("pong"),
        Answer::status(
            400,
            r#"{"error": {"message": "response_format type json_schema is not supported"}}"#,
        ),
        chat(r#"{"sum": 5}"#),
    ])
    .await;
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[],
    )
    .await;
    assert_eq!(run.status("model"), "ok");
    assert_eq!(run.status("structured-output"), "warn", "{:#}", run.report);
    let detail = run.check("structured-output")["detail"].as_str().unwrap();
    assert!(detail.contains("falls back to json_object"), "{detail}");
    assert!(run.fix("structured-output").contains("--base-url"));
    assert_eq!(
        server.seen()[2].body["response_format"]["type"],
        "json_object"
    );

    // A reply that ignores the schema is a warning too.
    let server = FakeServer::start(vec![chat("pong"), chat(r#"{"total": "five"}"#)]).await;
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[],
    )
    .await;
    assert_eq!(run.status("structured-output"), "warn", "{:#}", run.report);
    let detail = run.check("structured-output")["detail"].as_str().unwrap();
    assert!(detail.contains("does not match"), "{detail}");
}

#[tokio::test]
async fn a_container_whose_owner_is_gone_is_reported_as_leftover() {
    use bollard::models::ContainerCreateBody;
    use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};

    let docker = planbox::sandbox::engine::connect().await.unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let name = format!("planbox-doctor-test-{}", std::process::id());
    let labels = std::collections::HashMap::from([
        ("planbox".to_string(), "1".to_string()),
        (
            planbox::sandbox::owner::OWNER_LABEL.to_string(),
            format!("{}:999999999:1", hostname.trim()),
        ),
        (
            "planbox.run".to_string(),
            format!("test-doctor-{}", std::process::id()),
        ),
    ]);
    docker
        .create_container(
            Some(CreateContainerOptionsBuilder::new().name(&name).build()),
            ContainerCreateBody {
                image: Some(planbox::sandbox::image::tag()),
                cmd: Some(vec!["true".into()]),
                labels: Some(labels),
                network_disabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("the sandbox image is missing: run `make image` before the tests");
    // Removed even when an assertion below fails.
    struct Remove(bollard::Docker, String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let (docker, name) = (self.0.clone(), self.1.clone());
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    let options = RemoveContainerOptionsBuilder::new().force(true).build();
                    let _ = docker.remove_container(&name, Some(options)).await;
                })
            })
            .join()
            .unwrap();
        }
    }
    let _guard = Remove(docker.clone(), name.clone());

    let dir = tempfile::tempdir().unwrap();
    let server = healthy_model().await;
    let run = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &server.openai_url()],
        &[],
    )
    .await;
    assert_eq!(run.status("containers"), "warn", "{:#}", run.report);
    let detail = run.check("containers")["detail"].as_str().unwrap();
    assert!(detail.contains("whose planbox process is gone"), "{detail}");
    let fix = run.fix("containers");
    assert!(
        fix.ends_with("(or leave them: the next planbox run removes them)"),
        "{fix}"
    );
    // A warning alone keeps the exit code at 0.
    assert_eq!(run.code, Some(0), "{:#}", run.report);
}

#[tokio::test]
async fn every_engine_of_a_pool_is_checked_and_a_dead_one_fails_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = healthy_model().await;
    let url = server.openai_url();
    let dead = closed_port().await.replace("http://", "tcp://");
    let dead = dead.trim_end_matches("/v1");
    let run = doctor(
        dir.path(),
        &[
            "--provider",
            "openai",
            "--base-url",
            &url,
            "--engine",
            "unix:///var/run/docker.sock",
            "--engine",
            &format!("{dead},parallel=2"),
        ],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(run.status("engines"), "fail", "{:#}", run.report);
    let detail = run.check("engines")["detail"].as_str().unwrap();
    assert!(detail.starts_with("2 engines: "), "{detail}");
    assert!(detail.contains(&format!("{dead}: ")), "{detail}");
    assert!(
        detail.contains("unix:///var/run/docker.sock ok"),
        "{detail}"
    );
    assert!(run.fix("engines").starts_with("start the engines"));
    assert_eq!(run.code, Some(1));

    // Without a pool there is no engines check; the runtimes check is always there.
    let other = healthy_model().await;
    let plain = doctor(
        dir.path(),
        &["--provider", "openai", "--base-url", &other.openai_url()],
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert!(
        plain.report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "engines")
    );
    assert_eq!(plain.status("runtimes"), "ok");
}
