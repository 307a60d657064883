//! Processes started before their broker (one compose file, a reboot): an order runtime, a
//! payment runtime and a dashboard are started while their Redis broker is down. They try again
//! (`--connect-wait`, 60 s by default) and say so in their logs; once the broker listens, the
//! dashboard lists both components and an order's cross-component payment is created and paid
//! through it. With `--connect-wait 0`, a runtime gives up at once with a clear error. Redis is a
//! broker of the test's own on a free port (skipped with a notice when `redis-server` is not
//! installed; a failure under `XC_REQUIRE_SERVICES`).

#![allow(clippy::unwrap_used)]

mod process;

use process::broker::{Kind, OwnBroker};
use process::cluster::{
    CROSSING, Dir, dashboard_process, log_tails, payment_for, runtime_process, send, wait_state,
};
use process::{BIN, create, free_port};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What a process logs while it waits for its broker (`commands/startup.rs`).
const WAITING: &str = "not reachable yet";

/// Waits until every log `names` (in `dir`) says the process is waiting for its broker.
fn wait_until_waiting(dir: &Path, names: &[&str]) {
    let started = Instant::now();
    loop {
        let waiting = names.iter().all(|name| {
            std::fs::read_to_string(dir.join(format!("{name}.log")))
                .is_ok_and(|log| log.contains(WAITING))
        });
        if waiting {
            return;
        }
        assert!(
            started.elapsed() < CROSSING,
            "{names:?} did not all wait for the broker\n{}",
            log_tails(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn runtimes_and_a_dashboard_started_before_their_broker_wait_for_it() {
    let Some(mut broker) = OwnBroker::start(Kind::Redis) else { return };
    // Its port is known and nothing listens on it.
    broker.stop();
    let url = broker.url();
    let (dir, suffix) = Dir::new("broker-late");
    let (orders, payments) =
        (format!("OrderComponent{suffix}"), format!("PaymentComponent{suffix}"));

    // No wait: one attempt, then a clear error.
    let output = Command::new(BIN)
        .args(["runtime", "order.yaml", "--broker", &url, "--store", "memory"])
        .args(["--connect-wait", "0"])
        .env_remove("DATABASE_URL")
        .current_dir(dir.path())
        .output()
        .expect("runtime runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a runtime without its broker exits with an error");
    assert!(stderr.contains("cannot reach the broker"), "{stderr}");
    assert!(!stderr.contains(WAITING), "--connect-wait 0 does not wait: {stderr}");

    // The default wait: the runtimes and the dashboard keep trying until the broker is up.
    let _order_runtime = runtime_process(dir.path(), &url, "order.yaml", "orders");
    let _payment_runtime = runtime_process(dir.path(), &url, "payment.yaml", "payments");
    let starter = {
        let dir = dir.path().to_owned();
        std::thread::spawn(move || {
            wait_until_waiting(&dir, &["orders", "payments", "dashboard"]);
            broker.start_again();
            broker
        })
    };
    let port = free_port();
    // Returns once the dashboard lists both components: after the broker started.
    let _dashboard = dashboard_process(dir.path(), &url, port, &[&orders, &payments]);
    let _broker = starter.join().unwrap();

    let order_id = "LATE-1";
    let context = json!({"orderId": order_id, "amount": 10, "paymentMethod": "visa"});
    let order = create(port, &orders, "Order", context);
    assert!(matches!(send(port, &orders, &order, "SUBMIT"), 200 | 202));
    let payment = payment_for(port, &payments, order_id);
    for event in ["PROCESS", "VALIDATE", "COMPLETE"] {
        assert!(matches!(send(port, &payments, &payment, event), 200 | 202), "{event}");
    }
    wait_state(port, &order, "Paid");
}
