//! `make bench`, planner case: 6 independent steps plus a final step, each step one model call
//! of fixed latency (a fake model, 200 ms) and one run. Sequential would take 7 x (latency +
//! run); the scheduler should take about 2 x. Printed: the parallel efficiency
//! (ideal 2 x (latency + run) over measured), once with a fixed-time run and once with the
//! real sandbox running `print(1)`.

use std::time::{Duration, Instant};

use planbox::llm::{Llm, Message, Reply, Request, Usage};
use planbox::plan::{Plan, Step, StepKind};
use planbox::sandbox::{self, DockerSandbox, Job, Policy, Sandbox};
use planbox::schedule::{self, Outcome};

const LATENCY: Duration = Duration::from_millis(200);
const FIXED_RUN: Duration = Duration::from_millis(300);

/// A model that answers every request after a fixed latency.
struct FixedLatency;

impl Llm for FixedLatency {
    async fn complete(&self, _request: &Request) -> planbox::Result<Reply> {
        tokio::time::sleep(LATENCY).await;
        Ok(Reply {
            text: "print(1)\n".into(),
            usage: Usage::default(),
            model: "fixed".into(),
            mode: None,
            latency: LATENCY,
        })
    }
}

fn plan() -> Plan {
    let step = |id: String, deps: Vec<String>| Step {
        title: id.clone(),
        instruction: id.clone(),
        id,
        kind: StepKind::Action,
        depends_on: deps,
        reads: vec![],
        writes: vec![],
        fallback: None,
        produces: Vec::new(),
        uses: Vec::new(),
    };
    let mut steps: Vec<Step> = (1..=6).map(|i| step(format!("part{i}"), vec![])).collect();
    steps.push(step(
        "final".into(),
        (1..=6).map(|i| format!("part{i}")).collect(),
    ));
    Plan {
        goal: "bench".into(),
        steps,
    }
}

async fn measure<F, Fut>(parallel: usize, run: F) -> Duration
where
    F: Fn(Step) -> Fut,
    Fut: std::future::Future<Output = Outcome>,
{
    let plan = plan();
    let start = Instant::now();
    let summary = schedule::run(&plan, parallel, run, |_| {}).await;
    assert_eq!(summary.succeeded.len(), 7);
    start.elapsed()
}

#[tokio::main]
async fn main() {
    let llm = FixedLatency;
    let ask = Request::new(vec![Message::user("write the step")]);

    let fixed = |_: Step| async {
        llm.complete(&ask).await.unwrap();
        tokio::time::sleep(FIXED_RUN).await;
        Outcome::Succeeded
    };
    let sequential = measure(1, fixed).await;
    let parallel = measure(6, fixed).await;
    let ideal = 2 * (LATENCY + FIXED_RUN);
    println!(
        "planner, 6 independent steps + 1 final, fake model {} ms, fixed run {} ms",
        LATENCY.as_millis(),
        FIXED_RUN.as_millis()
    );
    println!(
        "  sequential (N=1)  {:>7.0} ms",
        sequential.as_secs_f64() * 1e3
    );
    println!(
        "  parallel   (N=6)  {:>7.0} ms   ideal {:.0} ms",
        parallel.as_secs_f64() * 1e3,
        ideal.as_secs_f64() * 1e3
    );
    println!(
        "  parallel efficiency {:.2} (target >= 0.80), speed-up over sequential {:.2}x",
        ideal.as_secs_f64() / parallel.as_secs_f64(),
        sequential.as_secs_f64() / parallel.as_secs_f64()
    );

    // The same plan with real containers: each step's container warms while the model writes.
    let docker = sandbox::docker::connect()
        .await
        .expect("the benchmark needs a Docker engine");
    let sandbox = DockerSandbox::new(docker, Policy::default(), sandbox::image::tag())
        .await
        .expect("run `make image` first");
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    let real = |_: Step| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let job = Job {
            inputs: vec![],
            out_dir: dir.path().join(format!("s{n}")),
            run_id: "bench-planner".into(),
            state: Default::default(),
        };
        let (sandbox, llm, ask) = (&sandbox, &llm, &ask);
        async move {
            let (warm, script) = tokio::join!(sandbox.prepare(&job), llm.complete(ask));
            let output = sandbox::Warm::run(warm.unwrap(), &script.unwrap().text)
                .await
                .unwrap();
            if output.status.success() {
                Outcome::Succeeded
            } else {
                Outcome::Failed(output.status.to_string())
            }
        }
    };
    let one = measure(1, &real).await / 7;
    let parallel = measure(6, &real).await;
    let ideal = 2 * one;
    println!(
        "  real sandbox: one step {:.0} ms; plan with N=6 {:.0} ms; ideal {:.0} ms; efficiency {:.2} on {} CPUs",
        one.as_secs_f64() * 1e3,
        parallel.as_secs_f64() * 1e3,
        ideal.as_secs_f64() * 1e3,
        ideal.as_secs_f64() / parallel.as_secs_f64(),
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
}
