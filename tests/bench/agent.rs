//! `make bench`, agent case: a 10-step linear plan run by the real agent with a fake model
//! (fixed latency) and the real sandbox. Printed: prompt tokens of step k for k = 1..10 and the
//! ratio step 10 / step 1 (target <= 1.5: context must not grow with earlier steps), and the
//! orchestration overhead: wall time minus model time minus container time (target < 5%),
//! and the time-left estimate's error: the `progress` estimate when a quarter of the steps had
//! ended, against the time the run really took from there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use planbox::agent::{Agent, Options};
use planbox::event::{RunEvent, Sink};
use planbox::llm::{Llm, Meter, Reply, Request, Usage};
use planbox::planner::Mode;
use planbox::run::RunFolder;
use planbox::sandbox::{self, DockerSandbox, Policy};
use serde_json::json;

const LATENCY: Duration = Duration::from_millis(200);
const STEPS: usize = 10;

/// Plans ten chained steps; each step script reads the previous file and writes the next.
struct Fake {
    prompts: Mutex<Vec<(usize, u64)>>,
    model_time: Mutex<Duration>,
}

impl Llm for Fake {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        let started = Instant::now();
        tokio::time::sleep(LATENCY).await;
        let last = &request.messages.last().unwrap().content;
        let usage = Usage::estimate(request, "");
        let text = if last.contains("Reply with {\"steps\"") {
            let steps: Vec<_> = (1..=STEPS)
                .map(|k| {
                    let reads = if k == 1 { vec!["numbers.csv".to_string()] } else { vec![format!("s{}.csv", k - 1)] };
                    json!({"id": format!("s{k}"), "title": format!("step {k}"), "instruction": format!("Double the values; step {k}."),
                           "kind": "action", "depends_on": [], "reads": reads, "writes": [format!("s{k}.csv")]})
                })
                .collect();
            json!({"steps": steps}).to_string()
        } else if let Some(k) = last
            .split("This step: step ")
            .nth(1)
            .and_then(|r| r.split('\n').next())
            .and_then(|n| n.parse::<usize>().ok())
        {
            self.prompts.lock().unwrap().push((k, usage.prompt_tokens));
            let source = if k == 1 {
                "/data/numbers.csv".to_string()
            } else {
                format!("/data/s{}.csv", k - 1)
            };
            format!(
                "```python\nimport pandas as pd\nd = pd.read_csv('{source}')\nd['x'] = d['x'] * 2\nd.to_csv('s{k}.csv', index=False)\nprint('step {k}: sum', int(d['x'].sum()), 'rows', len(d))\nprint(d.describe().to_string())\n```"
            )
        } else {
            "The numbers were doubled ten times (step s10).".to_string()
        };
        *self.model_time.lock().unwrap() += started.elapsed();
        Ok(Reply {
            text,
            usage,
            model: "fake".into(),
            mode: None,
            latency: started.elapsed(),
        })
    }
}

/// Every event with when it came.
#[derive(Default)]
struct Timed(Mutex<Vec<(Instant, RunEvent)>>);

impl Sink for Timed {
    fn emit(&self, event: &RunEvent) {
        self.0.lock().unwrap().push((Instant::now(), event.clone()));
    }
}

#[tokio::main]
async fn main() {
    let docker = sandbox::docker::connect()
        .await
        .expect("the benchmark needs a Docker engine");
    let sandbox = DockerSandbox::new(docker, Policy::default(), sandbox::image::tag())
        .await
        .expect("run `make image` first");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("numbers.csv");
    let mut csv = String::from("x\n");
    for i in 0..1000 {
        csv.push_str(&format!("{i}\n"));
    }
    std::fs::write(&input, csv).unwrap();
    let (folder, _) = RunFolder::create(
        &dir.path().join("runs"),
        "Double the numbers ten times.",
        &[input],
        &sandbox::image::tag(),
        json!({}),
    )
    .unwrap();
    let fake = Fake {
        prompts: Mutex::default(),
        model_time: Mutex::default(),
    };
    let options = Options {
        mode: Mode::Linear,
        parallel: 1,
        ..Options::default()
    };
    let events = Timed::default();
    let started = Instant::now();
    let finished = Agent::new(&fake, &sandbox, options, Arc::new(Meter::new(None, None)))
        .run(&folder, &events)
        .await
        .unwrap();
    let wall = started.elapsed();
    let ended = Instant::now();
    assert!(finished.achieved, "{finished:?}");

    let mut prompts = fake.prompts.lock().unwrap().clone();
    prompts.sort();
    println!(
        "agent, linear plan of {STEPS} steps, fake model {} ms per call, real sandbox",
        LATENCY.as_millis()
    );
    let line: Vec<String> = prompts.iter().map(|(k, t)| format!("{k}:{t}")).collect();
    println!("  prompt tokens by step  {}", line.join("  "));
    let ratio = prompts.last().unwrap().1 as f64 / prompts[0].1 as f64;
    println!("  step {STEPS} / step 1 = {ratio:.2} (target <= 1.50)");

    // Per step the container starts while the model writes, so the step's own critical path
    // is max(model, container start) + run; the plan and the answer are model calls alone.
    let mut steps = Duration::ZERO;
    let mut step_model = Duration::ZERO;
    let mut container = Duration::ZERO;
    for k in 1..=STEPS {
        let text = std::fs::read_to_string(
            folder
                .dir()
                .join(format!("steps/s{k}/attempt-1/result.json")),
        )
        .unwrap();
        let result: serde_json::Value = serde_json::from_str(&text).unwrap();
        let ms = |key: &str| Duration::from_millis(result[key].as_u64().unwrap());
        steps += ms("model_ms").max(ms("start_ms")) + ms("run_ms");
        step_model += ms("model_ms");
        container += ms("start_ms") + ms("run_ms");
    }
    let model = *fake.model_time.lock().unwrap();
    let other_model = model.saturating_sub(step_model);
    let overhead = wall.saturating_sub(steps + other_model);
    println!(
        "  wall {:.0} ms; model {:.0} ms and containers {:.0} ms (overlapping: critical path {:.0} ms); orchestration {:.0} ms ({:.1}%, target < 5%)",
        wall.as_secs_f64() * 1e3,
        model.as_secs_f64() * 1e3,
        container.as_secs_f64() * 1e3,
        (steps + other_model).as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e3,
        100.0 * overhead.as_secs_f64() / wall.as_secs_f64()
    );

    // The estimate when a quarter of the steps had ended, against what was really left.
    let events = events.0.lock().unwrap();
    let (at, eta_s, done) = events
        .iter()
        .find_map(|(at, e)| match e {
            RunEvent::Progress {
                done,
                total,
                eta_s: Some(eta_s),
            } if done * 4 >= *total => Some((*at, *eta_s, *done)),
            _ => None,
        })
        .expect("a progress event with an estimate");
    let left = ended.duration_since(at).as_secs_f64();
    println!(
        "  time left at {done} of {STEPS} steps: estimated {eta_s} s, really {left:.1} s (estimate / real = {:.2})",
        eta_s as f64 / left
    );
}
