//! The command line, run as a user would: bad input gets one line that says what to do and
//! exit code 2; a script's own failure is exit code 1; success is 0.

mod fake_llm;

use std::path::Path;
use std::process::{Command, Output};

use fake_llm::{Answer, FakeServer};

fn planbox(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn script(dir: &Path, name: &str, text: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_missing_script_is_a_one_line_usage_error() {
    let output = planbox(&["exec", "/nonexistent/script.py"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "planbox: script /nonexistent/script.py: no such file\n"
    );
}

#[test]
fn a_script_that_is_not_utf8_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "latin1.py", b"print('caf\xe9')\n");
    let output = planbox(&["exec", &path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("not UTF-8 text"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unreachable_engine_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "ok.py", b"print(1)\n");
    let output = Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(["exec", &path])
        .env(
            "DOCKER_HOST",
            format!("unix://{}/no.sock", dir.path().display()),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("cannot reach the Docker engine"), "{text}");
    assert!(text.contains("DOCKER_HOST"), "{text}");
}

#[test]
fn bad_inputs_are_reported_before_any_container_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "ok.py", b"print(1)\n");
    let missing = planbox(&["exec", &path, "--input", "/nonexistent.csv"]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        stderr(&missing),
        "planbox: input /nonexistent.csv: no such file\n"
    );
    let folder = planbox(&["exec", &path, "--input", dir.path().to_str().unwrap()]);
    assert_eq!(folder.status.code(), Some(2));
    assert!(
        stderr(&folder).contains("is a directory"),
        "{}",
        stderr(&folder)
    );
}

#[test]
fn a_non_empty_output_folder_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "ok.py", b"print(1)\n");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("mine.txt"), "keep").unwrap();
    let output = planbox(&["exec", &path, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("mine.txt")).unwrap(),
        "keep"
    );
}

#[test]
fn exec_reports_json_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("n.csv");
    std::fs::write(&input, "n\n1\n2\n3\n").unwrap();
    let ok = script(
        dir.path(),
        "ok.py",
        b"import pandas as pd\nn = pd.read_csv('/data/n.csv').n.sum()\nopen('/out/sum.txt', 'w').write(str(n))\nprint(n)\n",
    );
    let out = dir.path().join("out");
    let output = planbox(&[
        "exec",
        &ok,
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        value["status"],
        serde_json::json!({"kind": "exited", "detail": 0})
    );
    assert_eq!(value["stdout"], "6\n");
    assert_eq!(
        value["artifacts"],
        serde_json::json!([{"path": "sum.txt", "size": 1}])
    );
    assert_eq!(std::fs::read_to_string(out.join("sum.txt")).unwrap(), "6");

    let failing = script(dir.path(), "fail.py", b"raise SystemExit(4)\n");
    let output = planbox(&[
        "exec",
        &failing,
        "--out",
        dir.path().join("out2").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("exited with code 4"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn terminal_escapes_never_reach_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(
        dir.path(),
        "esc.py",
        b"print('\\x1b]0;pwned\\x07\\x1b[31mred\\x1b[0m')\n",
    );
    let output = planbox(&[
        "exec",
        &path,
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "red\n");
}

/// Every subcommand, nested ones included, as typed after `planbox`.
const SUBCOMMANDS: &[&[&str]] = &[
    &["exec"],
    &["image"],
    &["image", "build"],
    &["image", "tag"],
    &["llm"],
    &["llm", "ping"],
    &["plan"],
    &["run"],
    &["resume"],
    &["ask"],
    &["verify"],
    &["export"],
    &["runs"],
    &["show"],
    &["watch"],
    &["batch"],
    &["doctor"],
    &["completions"],
    &["man"],
];

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_subcommand_has_help_and_the_list_is_complete() {
    // The top-level help lists exactly the subcommands this test knows.
    let top = stdout(&planbox(&["--help"]));
    let listed: Vec<&str> = top
        .lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .collect();
    let known: Vec<&str> = SUBCOMMANDS
        .iter()
        .filter(|words| words.len() == 1)
        .map(|words| words[0])
        .collect();
    assert_eq!(listed, known, "{top}");

    for words in SUBCOMMANDS {
        let mut args = words.to_vec();
        args.push("--help");
        let output = planbox(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            stderr(&output)
        );
        let text = stdout(&output);
        assert!(text.contains("Usage: planbox"), "{args:?}: {text}");
        // The first line says what the command does, in a few words at least.
        let about = text.lines().next().unwrap_or_default();
        assert!(about.split_whitespace().count() >= 4, "{args:?}: {about:?}");
    }
}

#[test]
fn the_bash_completion_script_parses_and_names_the_subcommands() {
    let output = planbox(&["completions", "bash"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("planbox.bash");
    std::fs::write(&path, &output.stdout).unwrap();
    let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", stderr(&check));
    let script = stdout(&output);
    for words in SUBCOMMANDS.iter().filter(|words| words.len() == 1) {
        assert!(
            script.contains(&format!("planbox,{})", words[0])),
            "no completion for {}",
            words[0]
        );
    }
    for shell in ["zsh", "fish"] {
        let output = planbox(&["completions", shell]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        assert!(stdout(&output).contains("doctor"), "{shell}");
    }
    let unknown = planbox(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn the_man_page_lists_the_subcommands_and_one_page_each_is_written() {
    let output = planbox(&["man"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let page = stdout(&output);
    assert!(page.contains(".TH planbox 1"), "{page}");
    for words in SUBCOMMANDS.iter().filter(|words| words.len() == 1) {
        // roff escapes the hyphen.
        assert!(
            page.contains(&format!("planbox\\-{}(1)", words[0])),
            "{} missing from the page",
            words[0]
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    let output = planbox(&["man", "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut written: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    written.sort();
    let mut expected: Vec<String> = SUBCOMMANDS
        .iter()
        .map(|words| format!("planbox-{}.1", words.join("-")))
        .chain(["planbox.1".to_string()])
        .collect();
    expected.sort();
    assert_eq!(written, expected);
    assert_eq!(stdout(&output).lines().count(), expected.len());
    let doctor = std::fs::read_to_string(out.join("planbox-doctor.1")).unwrap();
    assert!(
        doctor.contains(&format!(
            ".TH planbox-doctor 1  \"planbox {}\"",
            env!("CARGO_PKG_VERSION")
        )),
        "{doctor}"
    );
    assert!(doctor.contains("\\-\\-runs\\-dir"), "{doctor}");
}

#[test]
fn every_help_text_is_as_recorded() {
    for words in [&[][..]].into_iter().chain(SUBCOMMANDS.iter().copied()) {
        let mut args = words.to_vec();
        args.push("--help");
        let output = planbox(&args);
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        let name = ["help"].iter().chain(words).copied().collect::<Vec<_>>();
        insta::assert_snapshot!(name.join("_"), stdout(&output));
    }
}

/// `planbox ARGS` in `dir` with no engine to reach and the offline model (no configuration
/// file), so whatever it reports came before any container started.
fn planbox_without_engine(args: &[&str], dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_planbox"));
    command
        .args(args)
        .current_dir(dir)
        .env("DOCKER_HOST", format!("unix://{}/no.sock", dir.display()));
    // `exec` talks to no model.
    if args[0] != "exec" {
        command.args([
            "--provider",
            "local",
            "--config",
            "/nonexistent/planbox.toml",
        ]);
    }
    command.output().unwrap()
}

#[test]
fn options_out_of_range_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let script = script(dir.path(), "ok.py", b"print(1)\n");
    let suite = dir.path().join("suite.jsonl");
    std::fs::write(&suite, "{\"id\": \"a\", \"goal\": \"count the rows\"}\n").unwrap();
    let suite = suite.to_str().unwrap();
    let timeout = "planbox: --timeout must be in (0, 600] seconds\n";
    let steps = "planbox: --max-steps must be between 1 and 50\n";
    for (args, said) in [
        (&["run", "count the rows", "--timeout", "0"][..], timeout),
        (&["run", "count the rows", "--max-steps", "51"], steps),
        (&["batch", suite, "--timeout", "601"], timeout),
        (&["batch", suite, "--max-steps", "0"], steps),
        (&["plan", "count the rows", "--max-steps", "0"], steps),
        (&["exec", &script, "--timeout=-1"], timeout),
    ] {
        let output = planbox_without_engine(args, dir.path());
        assert_eq!(
            (output.status.code(), stderr(&output).as_str()),
            (Some(2), said),
            "{args:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no run folder was made beside the script and the suite"
    );
}

#[test]
fn an_empty_goal_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let output = planbox_without_engine(&["run", "  "], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "planbox: the goal is empty: say what to find out\n"
    );
}

#[test]
fn a_suite_line_that_is_not_a_goal_is_named_by_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("suite.jsonl");
    std::fs::write(
        &suite,
        "{\"id\": \"a\", \"goal\": \"count the rows\"}\n\n{\"id\": \"b\"}\n",
    )
    .unwrap();
    let output = planbox_without_engine(&["batch", suite.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "planbox: {} line 3: not a goal object: missing field `goal` at line 1 column 11\n",
            suite.display()
        )
    );
}

/// `planbox plan` against the OpenAI-compatible server at `base_url`, one try per request,
/// with no key or model variables from the caller but those in `env`.
async fn plan_against(base_url: &str, env: &[(&str, &str)], dir: &Path) -> Output {
    let config = dir.join("planbox.toml");
    std::fs::write(&config, "[llm]\nretries = 1\n").unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"));
    command
        .args(["plan", "count the rows", "--provider", "openai"])
        .args(["--base-url", base_url, "--model", "fake-model", "--config"])
        .arg(&config);
    for var in ["OPENAI_API_KEY", "OPENAI_BASE_URL", "PLANBOX_MODEL"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().await.unwrap()
}

#[tokio::test]
async fn a_model_server_that_is_not_there_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let output = plan_against(&url, &[], dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.starts_with(&format!(
            "planbox: cannot reach the model server at {url}/chat/completions: connection refused: "
        )),
        "{text}"
    );
    assert!(
        text.ends_with(
            "; fix: start the model server (make local-llm for the offline model), or point planbox at a running one: --base-url URL\n"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_refused_key_is_named_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(vec![Answer::status(
        401,
        r#"{"error": {"message": "bad key"}}"#,
    )])
    .await;
    let url = server.openai_url();
    let output = plan_against(&url, &[("OPENAI_API_KEY", "sk-wrong")], dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "planbox: the server at {url}/chat/completions refused the API key in OPENAI_API_KEY (401 Unauthorized); fix: export OPENAI_API_KEY=<your key>\n"
        )
    );
}

#[tokio::test]
async fn a_missing_model_names_the_flag_and_the_variable_that_choose_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = FakeServer::start(vec![Answer::status(
        404,
        r#"{"error": {"message": "model not found"}}"#,
    )])
    .await;
    let url = server.openai_url();
    let output = plan_against(&url, &[], dir.path()).await;
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        format!(
            "planbox: model \"fake-model\" or the endpoint was not found at {url}/chat/completions (404: model not found); fix: name a model the server has: --model NAME (or export PLANBOX_MODEL=NAME), or correct the base URL: --base-url URL\n"
        )
    );
}

#[tokio::test]
async fn a_key_refused_mid_run_ends_the_run_with_the_fix_and_no_replan() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\n").unwrap();
    let plan = serde_json::json!({"steps": [{"id": "only", "title": "sum", "instruction": "Sum amount.",
        "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": []}]});
    let server = FakeServer::start(vec![
        fake_llm::chat(&plan.to_string()),
        Answer::status(401, r#"{"error": {"message": "key revoked"}}"#),
    ])
    .await;
    let url = server.openai_url();
    let config = dir.path().join("planbox.toml");
    std::fs::write(&config, "[llm]\nretries = 1\n").unwrap();
    let runs = dir.path().join("runs");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args([
            "run",
            "What is the total? Answer as @total[value].",
            "--input",
        ])
        .arg(&input)
        .args([
            "--provider",
            "openai",
            "--base-url",
            &url,
            "--model",
            "fake-model",
        ])
        .arg("--config")
        .arg(&config)
        .arg("--runs-dir")
        .arg(&runs)
        .env("OPENAI_API_KEY", "sk-revoked")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("PLANBOX_MODEL")
        .output()
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.ends_with(&format!(
            "planbox: the server at {url}/chat/completions refused the API key in OPENAI_API_KEY (401 Unauthorized); fix: export OPENAI_API_KEY=<your key>\n"
        )),
        "{text}"
    );
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(!events.contains("\"replanning\""), "{events}");
    assert_eq!(
        server.seen().len(),
        2,
        "the plan, then the refused script request"
    );
}

/// `planbox ARGS` against the fake model at `url`, with no configuration file.
async fn planbox_with_model(url: &str, args: &[&std::ffi::OsStr]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(args)
        .args([
            "--provider",
            "openai",
            "--base-url",
            url,
            "--model",
            "fake-model",
        ])
        .args(["--config", "/nonexistent/planbox.toml"])
        .env("OPENAI_API_KEY", "sk-test")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("PLANBOX_MODEL")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plan_written_by_plan_out_and_edited_runs_as_given_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\nsouth,32\n").unwrap();
    let goal = "What is the total amount? Answer as @total[value].";
    let planned = serde_json::json!({"steps": [{"id": "total", "title": "sum", "instruction": "Sum amount.",
        "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": []}]});
    let planner = FakeServer::start(vec![fake_llm::chat(&planned.to_string())]).await;
    let plan_file = dir.path().join("plan.json");
    let made = planbox_with_model(
        &planner.openai_url(),
        &[
            "plan".as_ref(),
            "--always-plan".as_ref(),
            goal.as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--out".as_ref(),
            plan_file.as_os_str(),
        ],
    )
    .await;
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let mut plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(plan["steps"][0]["id"], "total");

    // A person edits it: a clearer instruction, and a title of their own.
    plan["steps"][0]["instruction"] = "Sum the amount column and print it as @total[...].".into();
    plan["steps"][0]["title"] = "sum of amounts".into();
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let writer = FakeServer::start(vec![
        fake_llm::chat("```python\nimport pandas as pd\nprint(f\"@total[{pd.read_csv('/data/sales.csv').amount.sum()}]\")\n```"),
        fake_llm::chat("The total is @total[42]."),
    ])
    .await;
    let runs = dir.path().join("runs");
    let ran = planbox_with_model(
        &writer.openai_url(),
        &[
            "run".as_ref(),
            goal.as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--plan-file".as_ref(),
            plan_file.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
            "--expect".as_ref(),
            "total=42".as_ref(),
        ],
    )
    .await;
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let asked: Vec<String> = writer
        .seen()
        .iter()
        .map(|s| s.body["messages"].to_string())
        .collect();
    assert!(
        !asked
            .iter()
            .any(|m| m.contains("Reply with {\\\"steps\\\"")),
        "the model was asked for a plan: {asked:?}"
    );
    assert!(
        asked[0].contains("This step: sum of amounts"),
        "{}",
        asked[0]
    );
    assert!(
        asked[0].contains("Sum the amount column and print it"),
        "{}",
        asked[0]
    );

    // A plan that reads a file nobody provides is refused before anything runs.
    let calls = writer.seen().len();
    plan["steps"][0]["reads"] = serde_json::json!(["missing.csv"]);
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let refused = planbox_with_model(
        &writer.openai_url(),
        &[
            "run".as_ref(),
            goal.as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--plan-file".as_ref(),
            plan_file.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
        ],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("is not a plan for these inputs: step \"total\" reads \"missing.csv\""),
        "{text}"
    );
    assert_eq!(
        writer.seen().len(),
        calls,
        "the refused plan asked the model"
    );
    assert_eq!(
        std::fs::read_dir(&runs).unwrap().count(),
        1,
        "no run folder for the refused plan"
    );
}

#[tokio::test]
async fn resume_keeps_the_options_and_tokens_of_the_run_and_records_what_it_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\nsouth,32\n").unwrap();
    let goal = "What is the total amount? Answer as @total[value].";
    let plan = serde_json::json!({"steps": [{"id": "total", "title": "sum", "instruction": "Sum amount.",
        "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": []}]});
    // The first session plans and runs a script that fails; asked for a repair, the server
    // refuses the key: the run stops unfinished.
    let first = FakeServer::start(vec![
        fake_llm::chat(&plan.to_string()),
        fake_llm::chat("```python\nraise SystemExit(3)\n```"),
        Answer::status(401, r#"{"error": {"message": "key revoked"}}"#),
    ])
    .await;
    let runs = dir.path().join("runs");
    let started = planbox_with_model(
        &first.openai_url(),
        &[
            "run".as_ref(),
            goal.as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
            "--timeout".as_ref(),
            "45".as_ref(),
            "--max-replans".as_ref(),
            "1".as_ref(),
            "--token-budget".as_ref(),
            "100000".as_ref(),
        ],
    )
    .await;
    assert_eq!(started.status.code(), Some(2), "{}", stderr(&started));
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let spent = planbox::run::history::tokens_spent(&run);
    assert!(spent > 0, "the first session's tokens are counted");

    let second = FakeServer::start(vec![fake_llm::chat(
        "```python\nimport pandas as pd\nprint(f\"@total[{pd.read_csv('/data/sales.csv').amount.sum()}]\")\n```",
    )])
    .await;
    let resumed = planbox_with_model(
        &second.openai_url(),
        &[
            "resume".as_ref(),
            run.as_os_str(),
            "--max-repairs".as_ref(),
            "1".as_ref(),
        ],
    )
    .await;
    let text = stderr(&resumed);
    assert_eq!(resumed.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "resuming with the options the run was started with, but max_repairs=1; {spent} tokens spent so far"
        )),
        "{text}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let options = &info["options"];
    assert_eq!(options["agent"]["max_replans"], 1, "{options:#}");
    assert_eq!(options["sandbox"]["timeout_secs"], 45.0, "{options:#}");
    assert_eq!(options["token_budget"], 100000, "{options:#}");
    assert_eq!(
        options["resumes"],
        serde_json::json!([{"overrides": {"max_repairs": 1}}]),
        "{options:#}"
    );
    // The token count goes on from the first session.
    let total = planbox::run::history::tokens_spent(&run);
    assert!(total > spent, "{total} after {spent}");
    let summary = planbox::run::history::summarize(&run).unwrap();
    assert_eq!(summary.tokens, total);
}

#[tokio::test]
async fn the_wall_time_ends_a_model_call_that_outlasts_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\n").unwrap();
    let server = FakeServer::start(vec![
        fake_llm::chat(r#"{"steps": []}"#).delayed(std::time::Duration::from_secs(40)),
    ])
    .await;
    let runs = dir.path().join("runs");
    let started = std::time::Instant::now();
    let output = planbox_with_model(
        &server.openai_url(),
        &[
            "run".as_ref(),
            "What is the total? Answer as @total[value].".as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
            "--wall-time".as_ref(),
            "2".as_ref(),
        ],
    )
    .await;
    let took = started.elapsed();
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "{took:?}: {text}"
    );
    assert!(
        text.contains("the wall time budget ended the run"),
        "{text}"
    );
}

#[tokio::test]
async fn ask_answers_a_follow_up_on_top_of_the_finished_steps_without_running_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("sales.csv");
    std::fs::write(&input, "region,amount\nnorth,10\nsouth,32\n").unwrap();
    let runs = dir.path().join("runs");
    let plan = serde_json::json!({"steps": [{"id": "total", "title": "sum", "instruction": "Load the sales and sum amount.",
        "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": [], "produces": ["sales"]}]});
    let first = FakeServer::start(vec![
        fake_llm::chat(&plan.to_string()),
        fake_llm::chat("```python\nimport pandas as pd\nsales = pd.read_csv('/data/sales.csv')\nprint(f\"@total[{sales.amount.sum()}]\")\n```"),
    ])
    .await;
    let ran = planbox_with_model(
        &first.openai_url(),
        &[
            "run".as_ref(),
            "--always-plan".as_ref(),
            "What is the total amount? Answer as @total[value].".as_ref(),
            "--input".as_ref(),
            input.as_os_str(),
            "--runs-dir".as_ref(),
            runs.as_os_str(),
        ],
    )
    .await;
    assert_eq!(ran.status.code(), Some(0), "{}", stderr(&ran));
    let run = std::fs::read_dir(&runs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();

    let follow = serde_json::json!({"steps": [{"id": "south", "title": "south amount", "instruction": "Sum the south amount from sales.",
        "kind": "action", "depends_on": ["total"], "reads": [], "writes": [], "uses": ["sales"]}]});
    let second = FakeServer::start(vec![
        fake_llm::chat(&follow.to_string()),
        fake_llm::chat(
            "```python\nprint(f\"@south[{sales[sales.region == 'south'].amount.sum()}]\")\n```",
        ),
    ])
    .await;
    let asked = planbox_with_model(
        &second.openai_url(),
        &[
            "ask".as_ref(),
            run.as_os_str(),
            "And the south region's amount? Answer as @south[value].".as_ref(),
            "--expect".as_ref(),
            "south=32".as_ref(),
        ],
    )
    .await;
    let text = stderr(&asked);
    assert_eq!(asked.status.code(), Some(0), "{text}");
    assert_eq!(String::from_utf8_lossy(&asked.stdout).trim(), "@south[32]");
    // The follow-up's plan request listed the kept step; only the new step was written.
    let seen = second.seen();
    assert_eq!(
        seen.len(),
        2,
        "the follow-up plan, then the new step's script"
    );
    let planning = seen[0].body["messages"].to_string();
    assert!(
        planning.contains("This is a follow-up")
            && planning.contains("- total (Solve the whole goal in one script)"),
        "{planning}"
    );
    let events = std::fs::read_to_string(run.join("events.jsonl")).unwrap();
    assert!(
        events.contains(r#"{"event":"step_done","step":"total","reused":true}"#),
        "{events}"
    );
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        info["followups"],
        serde_json::json!(["And the south region's amount? Answer as @south[value]."])
    );
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.starts_with("# What is the total amount?"),
        "{report}"
    );
    assert!(
        report.contains("Follow-up 1: And the south region's amount?"),
        "{report}"
    );
    assert!(run.join("plan-2.json").is_file());
}

#[tokio::test]
async fn the_readme_ci_example_replays_a_recorded_batch_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/a.csv"),
        "region,amount\nnorth,10\nsouth,32\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("goals.jsonl"),
        r#"{"id": "q1", "goal": "What is the total amount? Answer as @total[value].", "inputs": ["data/a.csv"], "expect": {"total": "42"}}"#,
    )
    .unwrap();
    let plan = serde_json::json!({"steps": [{"id": "total", "title": "sum", "instruction": "Sum amount.",
        "kind": "action", "depends_on": [], "reads": ["a.csv"], "writes": []}]});
    let server = FakeServer::start(vec![
        fake_llm::chat(&plan.to_string()),
        fake_llm::chat("```python\nimport pandas as pd\nprint(f\"@total[{pd.read_csv('/data/a.csv').amount.sum()}]\")\n```"),
    ])
    .await;
    let recorded = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"))
        .args(["batch", "goals.jsonl", "--record", "recordings/"])
        .args([
            "--provider",
            "openai",
            "--base-url",
            &server.openai_url(),
            "--model",
            "fake-model",
        ])
        .args(["--config", "/nonexistent/planbox.toml"])
        .env("OPENAI_API_KEY", "sk-test")
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(recorded.status.code(), Some(0), "{}", stderr(&recorded));
    drop(server);

    // The README's line, word for word, in the same folder; no model anywhere.
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_planbox"));
    command
        .args([
            "batch",
            "goals.jsonl",
            "--replay",
            "recordings/",
            "--junit",
            "batch.xml",
        ])
        .current_dir(dir.path());
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "PLANBOX_MODEL",
        "PLANBOX_PROVIDER",
    ] {
        command.env_remove(var);
    }
    let replayed = command.output().await.unwrap();
    assert_eq!(replayed.status.code(), Some(0), "{}", stderr(&replayed));
    let xml = std::fs::read_to_string(dir.path().join("batch.xml")).unwrap();
    assert!(xml.contains("tests=\"1\" failures=\"0\""), "{xml}");
}
