//! Steps share live state, on the real sandbox: a step's script uses the DataFrame its
//! dependency built, with no file between them; resume and verify load the same states; the
//! export runs as one script; a hostile state description is refused; no step reaches
//! another run's state.

mod common;

use std::sync::Arc;

use common::{Rules, last_user};
use planbox::agent::{Agent, Options};
use planbox::event::{Collect, RunEvent};
use planbox::llm::Meter;
use planbox::run::RunFolder;
use planbox::sandbox::state::{Save, StateIo};
use planbox::sandbox::{self, Job, Sandbox, Status};
use serde_json::json;

const GOAL: &str = "What is the total amount of the north region? Answer as @total[value].";

/// Step 1 builds `by_region` (a DataFrame) and writes nothing; step 2 uses it.
fn plan() -> String {
    json!({"steps": [
        {"id": "load", "title": "amounts by region", "instruction": "Sum amount per region into by_region.",
         "kind": "action", "depends_on": [], "reads": ["sales.csv"], "writes": [], "produces": ["by_region"], "uses": []},
        {"id": "answer", "title": "north total", "instruction": "Print the north total from by_region.",
         "kind": "action", "depends_on": ["load"], "reads": [], "writes": [], "produces": [], "uses": ["by_region"]},
    ]})
    .to_string()
}

const LOAD: &str = "import pandas as pd\nsales = pd.read_csv('/data/sales.csv')\nby_region = sales.groupby('region', as_index=False)['amount'].sum()\nprint('regions:', len(by_region))";
// No import: step 1's `pd` is imported again before it runs.
const ANSWER: &str = "north = pd.to_numeric(by_region.loc[by_region.region == 'north', 'amount']).item()\nprint(f'@total[{north}]')";

fn model() -> Rules {
    Rules::new(|request, _| {
        let text = last_user(request);
        if text.contains("Reply with {\"steps\"") {
            plan()
        } else if text.contains("This step: amounts by region") {
            format!("```python\n{LOAD}\n```")
        } else {
            format!("```python\n{ANSWER}\n```")
        }
    })
}

#[tokio::test]
async fn a_step_uses_the_dataframe_its_dependency_built_and_the_export_reproduces_it() {
    let world = common::World::new("state-chain").await;
    let runs = world.dir.path().join("out").join("runs");
    let image = sandbox::image::tag();
    let (folder, _) = RunFolder::create(&runs, GOAL, &[world.input()], &image, json!({})).unwrap();
    let llm = model();
    let events = Collect::default();
    // The chain is kept as planned: the hand-off between two containers is what is tested.
    let options = || Options {
        fuse_chains: false,
        ..Options::default()
    };
    let agent = Agent::new(
        &llm,
        &world.sandbox,
        options(),
        Arc::new(Meter::new(None, None)),
    );
    let finished = agent.run(&folder, &events).await.unwrap();
    assert!(finished.achieved, "{finished:?}");
    assert_eq!(finished.answer, "@total[10]");

    // Nothing but the state passed between them: step 1 wrote no file.
    let load_files = folder.dir().join("steps/load/attempt-1/files");
    assert_eq!(std::fs::read_dir(&load_files).unwrap().count(), 0);
    assert!(
        folder
            .dir()
            .join("steps/load/attempt-1/state/state.pkl")
            .is_file()
    );
    let events = events.0.into_inner().unwrap();
    let saved = events
        .iter()
        .find_map(|e| match e {
            RunEvent::StateSaved {
                step,
                variables,
                skipped,
                ..
            } if step == "load" => Some((variables.clone(), skipped.clone())),
            _ => None,
        })
        .expect("load saved its state");
    assert_eq!(saved.0, vec!["sales".to_string(), "by_region".to_string()]);
    // Its import is kept as a name to import again, not as a value, and not as skipped.
    assert!(!saved.1.iter().any(|s| s.starts_with("pd:")), "{saved:?}");
    let described = planbox::sandbox::state::read(&folder.dir().join("steps/load/attempt-1/state"))
        .unwrap()
        .unwrap();
    assert_eq!(
        described.imports,
        vec![planbox::sandbox::state::Import {
            name: "pd".into(),
            of: "pandas".into()
        }]
    );

    // Step 2's prompt names the variable, its type and its columns.
    let calls = llm.calls();
    let prompt = calls
        .iter()
        .map(last_user)
        .find(|t| t.contains("This step: north total"))
        .unwrap();
    assert!(
        prompt.contains("    by_region: pandas.DataFrame, shape (2, 2)"),
        "{prompt}"
    );
    assert!(
        prompt.contains("columns: region (object), amount (int64)"),
        "{prompt}"
    );
    assert!(
        prompt.contains("its imports, already done in your script: pd (import pandas as pd)"),
        "{prompt}"
    );

    // Verify re-runs the chain, step 2 loading the state step 1's re-run left.
    let plan = folder.plan().unwrap().unwrap().plan;
    let checks = planbox::verify::verify(&folder, &plan, &world.sandbox, 1e-6)
        .await
        .unwrap();
    assert!(
        checks.iter().all(planbox::verify::Check::passed),
        "{checks:?}"
    );

    // A resumed run keeps both steps; a changed state would change step 2's key.
    let again = RunFolder::open_dir(folder.dir()).unwrap();
    let resumed = Collect::default();
    let finished = Agent::new(
        &llm,
        &world.sandbox,
        options(),
        Arc::new(Meter::new(None, None)),
    )
    .run(&again, &resumed)
    .await
    .unwrap();
    assert_eq!(finished.answer, "@total[10]");
    let reused = resumed
        .0
        .into_inner()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, RunEvent::StepDone { reused: true, .. }))
        .count();
    assert_eq!(reused, 2);

    // The export, as one script in one interpreter, prints the same answer.
    let export =
        planbox::export::gather(&folder, &plan, &planbox::export::Inputs::In("/data".into()))
            .unwrap();
    let output = world.run("exported", &export.script()).await;
    assert_eq!(output.status, Status::Exited(0), "{}", output.stderr);
    assert!(output.stdout.contains("@total[10]"), "{}", output.stdout);
    let notebook = export.notebook();
    let cells = notebook["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 5);
    // The script as it ran: `pd`, used and never imported, gets its conventional import.
    assert_eq!(
        cells[4]["source"].as_array().unwrap()[..2],
        [
            "import pandas as pd\n",
            "north = pd.to_numeric(by_region.loc[by_region.region == 'north', 'amount']).item()\n"
        ]
    );
    world.sandbox.settle().await;
    world.assert_clean().await;
}

/// A job that saves its variables into `dir` under `step`.
fn saving(
    world: &common::World,
    out: &str,
    step: &str,
    load: Vec<(std::path::PathBuf, String)>,
) -> Job {
    Job {
        state: StateIo {
            load,
            save: Some(Save {
                step: step.into(),
                dir: world.dir.path().join("out").join(format!("{out}-state")),
                cap: 1 << 20,
                required: true,
            }),
        },
        ..world.job(out)
    }
}

#[tokio::test]
async fn hostile_state_descriptions_are_refused_and_nothing_is_kept() {
    let world = common::World::new("state-hostile").await;
    // The script plants its own description and leaves before the runner could write one.
    let forgeries = [
        (
            "huge",
            "open(p, 'w').write('{\"variables\": [{\"name\": \"x\", \"type\": \"' + 'a' * 400000 + '\"}]}')",
        ),
        ("deep", "open(p, 'w').write('[' * 100000 + ']' * 100000)"),
        (
            "binary",
            "open(p, 'wb').write(b'{\"variables\": [{\"name\": \"\\xff\\xfe\\x1b[2J\"}]}')",
        ),
        (
            "escapes",
            "open(p, 'w').write('{\"variables\": [{\"name\": \"\\\\u001b[2J\", \"type\": \"t\"}]}')",
        ),
    ];
    for (name, write) in forgeries {
        let script = format!(
            "import os\nos.makedirs('/out/.planbox-state', exist_ok=True)\np = '/out/.planbox-state/state.json'\n{write}\nos._exit(0)"
        );
        let job = saving(&world, name, name, vec![]);
        let output = world.sandbox.exec(&job, &script).await.unwrap();
        assert!(
            matches!(&output.status, Status::ArtifactRejected(why) if why.contains("state description")),
            "{name}: {:?} {}",
            output.status,
            output.stderr
        );
        assert!(output.state.is_none(), "{name}");
        assert!(
            output.artifacts.is_empty(),
            "{name}: {:?}",
            output.artifacts
        );
    }
    // Past the cap, a step that others wait for fails with a status that says so.
    let big = world
        .sandbox
        .exec(
            &saving(&world, "big", "big", vec![]),
            "import numpy as np\nx = np.zeros(400_000)",
        )
        .await
        .unwrap();
    assert!(
        matches!(big.status, Status::StateTooLarge { cap: 1_048_576, .. }),
        "{:?}",
        big.status
    );
    world.sandbox.settle().await;
    world.assert_clean().await;
}

#[tokio::test]
async fn a_step_sees_only_the_states_it_was_given() {
    let world = common::World::new("state-reach").await;
    // Another run's state, on the same host.
    let other = world
        .sandbox
        .exec(
            &saving(&world, "other", "secret", vec![]),
            "token = 'other-run-secret'",
        )
        .await
        .unwrap();
    assert_eq!(other.status, Status::Exited(0), "{}", other.stderr);
    let mine = world
        .sandbox
        .exec(&saving(&world, "mine", "mine", vec![]), "value = 41")
        .await
        .unwrap();
    assert_eq!(mine.status, Status::Exited(0), "{}", mine.stderr);
    let mine_state = world.dir.path().join("out/mine-state/state.pkl");
    // Every readable file outside the system folders, searched for the other run's value.
    let probe = "import os\nprint(value + 1)\nprint('token' in globals())\nstates, leaks = [], []\nfor root, dirs, files in os.walk('/', onerror=lambda e: None):\n    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ('/proc', '/sys', '/usr', '/dev')]\n    for f in files:\n        path = os.path.join(root, f)\n        if f.endswith('.pkl'):\n            states.append(path)\n        try:\n            with open(path, 'rb') as h:\n                if b'other-run-' + b'secret' in h.read(1 << 24):\n                    leaks.append(path)\n        except OSError:\n            pass\nprint(sorted(states), leaks)";
    let seen = world
        .sandbox
        .exec(
            &saving(&world, "probe", "probe", vec![(mine_state, "mine".into())]),
            probe,
        )
        .await
        .unwrap();
    assert_eq!(seen.status, Status::Exited(0), "{}", seen.stderr);
    assert_eq!(seen.stdout, "42\nFalse\n['/state/01-mine.pkl'] []\n");
    world.sandbox.settle().await;
    world.assert_clean().await;
}
