//! Criterion benchmarks of the engine and the runtime's public API (memory only, no store):
//! the bare engine step, `send_many` through one shard, `create_many`, and arming then
//! cancelling timers. `xcomponent-ai bench memory` prints the same kind of figures as a table
//! at full scale; these are the repeatable, statistically checked versions.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::time::{Duration, Instant};
use xcomponent_core::definition::Definition;
use xcomponent_core::engine::{self, EventRef, NoHooks};
use xcomponent_core::instance::{Context, InstanceId};
use xcomponent_core::model::Component;
use xcomponent_runtime::DrawId;
use xcomponent_runtime::{RuntimeBuilder, RuntimeOptions};

const COMPONENT: &str = r#"
name: Bench
stateMachines:
  - name: Counter
    initialState: Idle
    states: [{name: Idle}, {name: Busy}]
    transitions:
      - {from: Idle, to: Busy, event: TICK}
      - {from: Busy, to: Idle, event: TICK}
  - name: Waiter
    initialState: Waiting
    states: [{name: Waiting}, {name: Done}, {name: Late}]
    transitions:
      - {from: Waiting, to: Late, event: EXPIRE, type: timeout, timeoutMs: 3600000}
      - {from: Waiting, to: Done, event: ANSWER}
"#;

fn definition() -> Definition {
    let component: Component = serde_saphyr::from_str(COMPONENT).expect("bench component parses");
    Definition::compile(component).expect("bench component compiles")
}

fn engine_step(c: &mut Criterion) {
    let definition = definition();
    let machine = definition.machine_index("Counter").expect("Counter");
    let mut instances: Vec<_> = (0..10_000)
        .map(|_| engine::create(&definition, machine, InstanceId::draw(), Context::new(), None, 0))
        .collect();
    let payload = Context::new();
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(instances.len() as u64));
    group.bench_function("step 10k instances", |b| {
        b.iter(|| {
            for instance in &mut instances {
                let _ = engine::step(
                    &definition,
                    instance,
                    EventRef { name: "TICK", payload: &payload },
                    1,
                    &mut NoHooks,
                );
            }
        })
    });
    group.finish();
}

fn runtime_api(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio");
    let options = RuntimeOptions { shards: 1, ..RuntimeOptions::default() };
    let runtime = tokio
        .block_on(RuntimeBuilder::new().component(definition()).options(options).start())
        .expect("runtime");
    let handle = runtime.handle();
    let mut group = c.benchmark_group("runtime");
    for instances in [10_000usize, 100_000] {
        let ids = tokio
            .block_on(handle.create_many("Bench", "Counter", vec![Context::new(); instances]))
            .expect("instances");
        let _events = handle.subscribe();
        group.throughput(Throughput::Elements(instances as u64));
        group.bench_with_input(
            BenchmarkId::new("send_many one shard", instances),
            &ids,
            |b, ids| {
                b.iter_custom(|rounds| {
                    let mut total = Duration::ZERO;
                    for _ in 0..rounds {
                        let batch: Vec<_> = ids.iter().map(|id| (*id, Context::new())).collect();
                        let started = Instant::now();
                        let outcome =
                            tokio.block_on(handle.send_many("TICK", batch)).expect("send_many");
                        total += started.elapsed();
                        assert_eq!(outcome.transitioned, ids.len());
                    }
                    total
                })
            },
        );
    }
    group.throughput(Throughput::Elements(10_000));
    group.bench_function("create_many 10k", |b| {
        b.iter(|| {
            tokio
                .block_on(handle.create_many("Bench", "Counter", vec![Context::new(); 10_000]))
                .expect("create")
        })
    });
    group.bench_function("arm and cancel 10k timers", |b| {
        b.iter(|| {
            tokio.block_on(async {
                let ids = handle
                    .create_many("Bench", "Waiter", vec![Context::new(); 10_000])
                    .await
                    .expect("create");
                let answers: Vec<_> = ids.into_iter().map(|id| (id, Context::new())).collect();
                let outcome = handle.send_many("ANSWER", answers).await.expect("answer");
                assert_eq!(outcome.transitioned, 10_000);
            })
        })
    });
    group.finish();
    tokio.block_on(runtime.shutdown());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = engine_step, runtime_api
}
criterion_main!(benches);
