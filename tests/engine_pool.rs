//! A pool of two real engines: the local one and a second dockerd on a loopback port. Six
//! goals run at once over the pool; once scripts are placed on the second engine it is
//! stopped, mid-batch. Every goal still ends with the right answer, the scripts it was
//! running are started again on the first, and once the second engine is back nothing
//! planbox created is left on either.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::engine::Engine;
use planbox::agent::{Agent, Options};
use planbox::event::Collect;
use planbox::llm::Meter;
use planbox::run::RunFolder;
use planbox::sandbox::{self, Delivery, DockerSandbox, Pool};
use serde_json::json;

const GOAL: &str = "What is the total amount of the south region? Answer as @total[value].";
const GOALS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_finishes_when_one_engine_of_two_stops_and_nothing_is_left_on_either() {
    let world = common::World::new("pool").await;
    let mut engine = Engine::start("pool", &[]);
    let docker = sandbox::engine::connect_to(&engine.host).await.unwrap();
    let second = DockerSandbox::new(docker, common::test_policy(), sandbox::image::tag())
        .await
        .unwrap()
        .with_delivery(Delivery::Copy);
    let pool = Pool::of(vec![
        ("local".into(), world.sandbox.clone(), 2),
        (engine.host.clone(), second, 2),
    ]);
    assert_eq!(pool.capacity(), 4);

    let runs = world.dir.path().join("out/runs");
    // Each script sleeps, so scripts are running when the engine stops.
    let llm = common::south_total_model("import time\ntime.sleep(2)\n", false);
    let mut folders = Vec::new();
    for _ in 0..GOALS {
        let (folder, _) = RunFolder::create(
            &runs,
            GOAL,
            &[world.input()],
            &sandbox::image::tag(),
            json!({}),
        )
        .unwrap();
        folders.push(folder);
    }
    let goals = folders.iter().map(|folder| {
        let (llm, pool) = (&llm, &pool);
        async move {
            let options = Options {
                fuse_chains: false,
                always_plan: true,
                ..Options::default()
            };
            Agent::new(llm, pool, options, Arc::new(Meter::new(None, None)))
                .run(folder, &Collect::default())
                .await
        }
    });
    let batch = futures_util::future::join_all(goals);
    tokio::pin!(batch);

    // Stop the second engine once it has scripts running.
    let stopper = async {
        loop {
            let report = pool.report();
            if report[1].placed >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::task::block_in_place(|| engine.stop());
    };
    let finished = tokio::select! {
        finished = &mut batch => panic!("the batch ended before the engine was stopped: {finished:?}"),
        () = stopper => batch.await,
    };
    for result in &finished {
        let done = result.as_ref().expect("every goal ends");
        assert!(done.achieved, "{done:?}");
        assert_eq!(done.answer, "@total[32]");
    }
    let report = pool.report();
    assert!(report[1].down, "{report:?}");
    assert!(!report[0].down, "{report:?}");
    assert!(pool.moved() >= 1, "no script was moved: {report:?}");
    pool.settle().await;

    // Nothing left on the first engine; the second, back, loses what the stop left there.
    for folder in &folders {
        let id = folder.info().unwrap().id;
        assert_eq!(common::leftovers(&id).await, (0, 0), "left by {id}");
    }
    engine.spawn();
    pool.shutdown().await;
    assert_eq!(engine.leftovers(), (0, 0), "left on the second engine");
    world.assert_clean().await;
}
