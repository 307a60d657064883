//! Runs the conformance suite on every backend compiled in, against the real servers named by
//! `XC_TEST_REDIS_URL`, `XC_TEST_AMQP_URL`, `XC_TEST_KAFKA_URL` and `XC_TEST_NATS_URL`. A backend
//! whose URL is unset is skipped loudly, or fails when `XC_REQUIRE_SERVICES` is true (CI).

mod conformance;
mod proxy;
#[cfg(feature = "kafka")]
mod tansu;

use xcomponent_bus::{BrokerUrl, open};

/// The URL of a test server, or `None` (skipped loudly) when unset and not required. Also turns
/// on the log for the test when `RUST_LOG` is set (e.g. `RUST_LOG=xcomponent_bus=debug`).
#[allow(dead_code)]
fn service_url(variable: &str) -> Option<String> {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let required = std::env::var("XC_REQUIRE_SERVICES")
                .ok()
                .and_then(|value| xcomponent_core::flag::parse(&value).ok())
                .unwrap_or(false);
            assert!(!required, "{variable} is not set and XC_REQUIRE_SERVICES is true");
            eprintln!("NOTICE: {variable} is not set: this bus backend was NOT tested");
            None
        }
    }
}

/// The URL with its first host replaced by `address`.
#[allow(dead_code)]
fn through(url: &str, address: std::net::SocketAddr) -> String {
    let parsed = BrokerUrl::parse(url).expect("valid URL");
    url.replacen(&parsed.hosts[0], &address.to_string(), 1)
}

/// Runs the whole suite, restart case included, against the server at `url`.
#[allow(dead_code)]
async fn run_against_server(url: &str) {
    let bus = open(url, &conformance::options()).await.expect("open");
    conformance::run_all(&bus).await;
    let upstream = BrokerUrl::parse(url).expect("valid URL").hosts[0].clone();
    let proxy = proxy::Proxy::start(&upstream).await;
    conformance::reconnect_after_broker_restart(&bus, &proxy, &through(url, proxy.address)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_conforms() {
    let bus = open("memory", &conformance::options()).await.expect("open");
    conformance::run_all(&bus).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_conforms() {
    if let Some(url) = service_url("XC_TEST_REDIS_URL") {
        run_against_server(&url).await;
    }
}

/// Redis only: a consumer that comes back under the same name gets its unacknowledged messages
/// at once (from its own pending list), long before `redelivery_after`.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_consumer_restarted_under_its_name_gets_its_pending_messages_at_once() {
    let Some(url) = service_url("XC_TEST_REDIS_URL") else { return };
    let options = xcomponent_bus::BusOptions {
        redelivery_after: std::time::Duration::from_secs(600),
        ..conformance::options()
    };
    let bus = open(&url, &options).await.expect("open");
    let queue = conformance::unique("xcomponent:redis-restart");
    let message = xcomponent_bus::QueueMessage {
        id: conformance::unique("message"),
        key: "instance-1".into(),
        body: b"{}".to_vec(),
    };
    bus.enqueue(&queue, &message).await.expect("enqueue");
    {
        let mut consumer = bus.consume(&queue, "runtimes", "runtime-1").await.expect("consume");
        let delivery = conformance::next(&mut consumer, "before the restart").await;
        assert!(!delivery.redelivered);
        // The process dies without acknowledging.
    }
    let mut consumer = bus.consume(&queue, "runtimes", "runtime-1").await.expect("consume");
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), consumer.next())
        .await
        .expect("the pending message comes back at once")
        .expect("delivery");
    assert_eq!(delivery.message, message);
    assert!(delivery.redelivered, "a message from the pending list is marked redelivered");
    delivery.ack().await.expect("ack");
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_bus_conforms() {
    if let Some(url) = service_url("XC_TEST_NATS_URL") {
        run_against_server(&url).await;
    }
}

/// NATS only: a queue's work-queue stream serves one consumer group; a second one is refused
/// with a configuration error that says so.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_queue_refuses_a_second_consumer_group() {
    let Some(url) = service_url("XC_TEST_NATS_URL") else { return };
    let bus = open(&url, &conformance::options()).await.expect("open");
    let queue = conformance::unique("xcomponent:nats-groups");
    let _first = bus.consume(&queue, "runtimes", "runtime-1").await.expect("consume");
    match bus.consume(&queue, "auditors", "auditor-1").await {
        Err(xcomponent_bus::BusError::Config(text)) => {
            assert!(text.contains("one group"), "{text}")
        }
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("a second group on a work-queue stream was accepted"),
    }
}

#[cfg(feature = "rabbitmq")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_bus_conforms() {
    let Some(url) = service_url("XC_TEST_AMQP_URL") else { return };
    run_against_server(&url).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_conforms() {
    let Some(url) = service_url("XC_TEST_KAFKA_URL") else { return };
    let bus = open(&url, &conformance::options()).await.expect("open");
    conformance::run_all(&bus).await;
}

/// Kafka clients follow the address the broker advertises, so the cutting proxy works only when
/// the broker advertises the proxy: this case runs its own tansu behind a proxy, cuts every
/// connection for a while (the broker keeps its data, as a network loss or a restarting
/// durable broker would), and checks that the consumer and the subscriber come back.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_comes_back_after_its_connections_are_cut() {
    let Some(binary) = service_url("XC_TANSU_BIN") else { return };
    let listen = tansu::Tansu::free_address();
    let proxy = proxy::Proxy::start(&listen.to_string()).await;
    let _tansu = tansu::Tansu::start_behind(&binary, listen, proxy.address);
    let url = format!("kafka://{}", proxy.address);
    let bus = open(&url, &conformance::options()).await.expect("open");
    conformance::resume_after_broker_restart_losing_data(&bus, || async {
        proxy.cut();
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        proxy.resume();
    })
    .await;
}

/// tansu (memory storage) killed and started again on the same address loses every topic, record
/// and committed offset: a consumer and a subscriber opened before go on by themselves, and what
/// is enqueued and published after it came back reaches them (what the broker held is lost: the
/// runtime's end-to-end receipts send it again).
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bus_comes_back_after_tansu_restarted_empty() {
    let Some(binary) = service_url("XC_TANSU_BIN") else { return };
    let listen = tansu::Tansu::free_address();
    let tansu = std::sync::Arc::new(std::sync::Mutex::new(tansu::Tansu::start_behind(
        &binary, listen, listen,
    )));
    let url = format!("kafka://{listen}");
    let bus = open(&url, &conformance::options()).await.expect("open");
    conformance::resume_after_broker_restart_losing_data(&bus, || async {
        let tansu = tansu.clone();
        tokio::task::spawn_blocking(move || {
            tansu.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).restart_empty()
        })
        .await
        .expect("restart");
    })
    .await;
}
