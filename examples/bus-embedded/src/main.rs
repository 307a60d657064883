//! An application that embeds the runtime and joins a message bus (what the original's
//! `createRuntimeBroadcaster` was for): the payment service hosts `PaymentComponent` with its
//! business code in Rust, the order service hosts `OrderComponent`, and the bus carries the
//! cross-component messages between them. Both announce themselves, heartbeat and publish their
//! events, so `xcomponent-ai dashboard --broker URL` shows them.
//!
//! Run with `cargo run -p bus-embedded-example` (both services in this process, on the memory
//! bus), or `BROKER_URL=redis://127.0.0.1:6379 cargo run -p bus-embedded-example` (any broker:
//! every message then goes through it). It checks its own outcome and exits non-zero otherwise.

use anyhow::{anyhow, bail};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use xcomponent_bus::{Bus, BusOptions};
use xcomponent_core::definition::Definition;
use xcomponent_core::{Context, InstanceId};
use xcomponent_runtime::{BusConfig, Handlers, InstanceFilter, Runtime, RuntimeBuilder};

/// How long the example waits for a flow to cross the bus.
const FLOW_TIMEOUT: Duration = Duration::from_secs(30);

fn load(file: &str) -> anyhow::Result<Definition> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../order-payment").join(file);
    let loaded = xcomponent_core::load::load_component_file(&path).map_err(|diagnostics| {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow!("{} is invalid:\n{}", path.display(), text.join("\n"))
    })?;
    Definition::compile(loaded.component).map_err(|errors| anyhow!("{file}: {errors:?}"))
}

/// The payment service's business code: cards pass, anything else is refused.
fn payment_rules() -> Handlers {
    Handlers::new().on("checkPaymentMethod", |call| {
        let method = call.context.get("paymentMethod").and_then(|value| value.as_str());
        let decision =
            if matches!(method, Some("visa" | "mastercard")) { "VALIDATE" } else { "REJECT" };
        call.sender.send_to_self(decision, Context::new());
        Ok(())
    })
}

/// One service: a component, its business code, its own store, joined to the bus.
async fn service(
    file: &str,
    handlers: Handlers,
    bus: Arc<dyn Bus>,
    name: &str,
) -> anyhow::Result<Runtime> {
    let store =
        xcomponent_store::open("memory", &xcomponent_store::StoreOptions::default()).await?;
    let runtime = RuntimeBuilder::new()
        .component(load(file)?)
        .handlers(handlers)
        .store(store)
        .bus(bus, BusConfig::new(name))
        .start()
        .await?;
    Ok(runtime)
}

/// Waits until `check` returns something, or fails after `FLOW_TIMEOUT`.
async fn wait_for<T, F: AsyncFnMut() -> Option<T>>(what: &str, mut check: F) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        if started.elapsed() > FLOW_TIMEOUT {
            bail!("{what}: not within {FLOW_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn flow(
    orders: &Runtime,
    payments: &Runtime,
    order_id: &str,
    method: &str,
) -> anyhow::Result<String> {
    let context = json!({"orderId": order_id, "amount": 42.0, "paymentMethod": method});
    let Some(context) = context.as_object().cloned() else { bail!("context") };
    let order = orders.handle().create_instance("OrderComponent", "Order", context).await?;
    orders.handle().send_event(order, "SUBMIT", Context::new()).await?;
    // The payment is created by the other service when the message arrives.
    let payment: InstanceId = wait_for("the payment is created", async || {
        let filter = InstanceFilter {
            component: Some("PaymentComponent".into()),
            text: Some(order_id.into()),
            limit: 10,
            ..InstanceFilter::default()
        };
        let found = payments.handle().instances(filter).await;
        found
            .into_iter()
            .find(|view| view.context.get("orderId") == Some(&json!(order_id)))
            .map(|view| view.id)
    })
    .await?;
    payments.handle().send_event(payment, "PROCESS", Context::new()).await?;
    payments.handle().flush().await?;
    if payments
        .handle()
        .instance(payment)
        .await
        .is_some_and(|view| &*view.current_state == "Validated")
    {
        payments.handle().send_event(payment, "COMPLETE", Context::new()).await?;
    }
    // The order hears back over the bus.
    wait_for("the order ends its payment", async || {
        // A finished order leaves the live set; its last state stays in the store.
        let state = match orders.handle().instance(order).await {
            Some(view) => view.current_state.to_string(),
            None => orders.handle().store()?.instance(order).await.ok()??.state,
        };
        (state != "PendingPayment").then_some(state)
    })
    .await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("BROKER_URL").unwrap_or_else(|_| "memory".into());
    let bus = xcomponent_bus::open(&url, &BusOptions::default()).await?;
    let payments = service("payment.yaml", payment_rules(), bus.clone(), "payment-service").await?;
    let orders = service("order.yaml", Handlers::new(), bus.clone(), "order-service").await?;

    let paid = flow(&orders, &payments, &format!("BUS-{}-1", std::process::id()), "visa").await?;
    println!("visa order over {}: {paid}", bus.backend());
    if paid != "Paid" {
        bail!("the visa order should be Paid, it is {paid}");
    }
    let refused =
        flow(&orders, &payments, &format!("BUS-{}-2", std::process::id()), "cash").await?;
    println!("cash order over {}: {refused}", bus.backend());
    if refused != "Cancelled" {
        bail!("the cash order should be Cancelled, it is {refused}");
    }
    orders.shutdown().await;
    payments.shutdown().await;
    Ok(())
}
