//! Embedding the runtime in a Rust program: load two YAML components, register business code for
//! the `checkPaymentMethod` hook, and drive orders through payment, on the embedded store.
//!
//! Run with `cargo run -p order-payment-example`. It checks its own outcome and exits non-zero if
//! the flow does not end as expected (CI runs it).

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use xcomponent_core::definition::Definition;
use xcomponent_core::{Context, InstanceId};
use xcomponent_runtime::{Handlers, InstanceFilter, RuntimeBuilder, RuntimeHandle};

/// Payment methods the business accepts.
const ACCEPTED_METHODS: [&str; 3] = ["visa", "mastercard", "cb"];

fn load(file: &str) -> anyhow::Result<Definition> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    let loaded = xcomponent_core::load::load_component_file(&path).map_err(|diagnostics| {
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        anyhow!("{} is invalid:\n{}", path.display(), text.join("\n"))
    })?;
    Definition::compile(loaded.component)
        .map_err(|errors| anyhow!("{file} does not compile: {errors:?}"))
}

/// Business code: accept known card types, refuse the rest. The decision is sent as an event to
/// the payment itself; it is processed right after the PROCESS transition is stored.
fn handlers() -> Handlers {
    Handlers::new().on("checkPaymentMethod", |call| {
        let method =
            call.context.get("paymentMethod").and_then(|value| value.as_str()).unwrap_or("");
        let decision = if ACCEPTED_METHODS.contains(&method) { "VALIDATE" } else { "REJECT" };
        call.context.insert("checkedMethod".into(), json!(method));
        call.sender.send_to_self(decision, Context::new());
        Ok(())
    })
}

fn object(value: serde_json::Value) -> Context {
    match value {
        serde_json::Value::Object(map) => map,
        _ => Context::new(),
    }
}

async fn payment_of(handle: &RuntimeHandle, order_id: &str) -> anyhow::Result<InstanceId> {
    handle.flush().await?;
    let filter = InstanceFilter {
        component: Some("PaymentComponent".into()),
        text: Some(order_id.into()),
        limit: 10,
        ..InstanceFilter::default()
    };
    let payment = handle
        .instances(filter)
        .await
        .into_iter()
        .find(|view| view.context.get("orderId") == Some(&json!(order_id)));
    payment.map(|view| view.id).ok_or_else(|| anyhow!("no payment was created for {order_id}"))
}

async fn state_of(handle: &RuntimeHandle, id: InstanceId) -> anyhow::Result<String> {
    handle.flush().await?;
    if let Some(view) = handle.instance(id).await {
        return Ok(view.current_state.to_string());
    }
    let store = handle.store().ok_or_else(|| anyhow!("no store"))?;
    let record = store.instance(id).await?.ok_or_else(|| anyhow!("instance {id} is unknown"))?;
    Ok(record.state)
}

async fn order(
    handle: &RuntimeHandle,
    order_id: &str,
    method: &str,
) -> anyhow::Result<(InstanceId, InstanceId)> {
    let context = object(
        json!({"orderId": order_id, "amount": 99.5, "customerId": "C-7", "paymentMethod": method}),
    );
    let order = handle.create_instance("OrderComponent", "Order", context).await?;
    handle.send_event(order, "SUBMIT", Context::new()).await?;
    let payment = payment_of(handle, order_id).await?;
    handle.send_event(payment, "PROCESS", Context::new()).await?;
    Ok((order, payment))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("order-payment-example-{}", std::process::id()));
    std::fs::create_dir_all(&data).context("creating the data directory")?;
    let url = format!("sqlite://{}", data.join("example.db").display());
    let store = xcomponent_store::open(&url, &xcomponent_store::StoreOptions::default()).await?;
    let runtime = RuntimeBuilder::new()
        .component(load("order.yaml")?)
        .component(load("payment.yaml")?)
        .handlers(handlers())
        .store(Arc::clone(&store))
        .start()
        .await?;
    let handle = runtime.handle();

    let (paid_order, paid_payment) = order(&handle, "ORD-1", "visa").await?;
    handle.send_event(paid_payment, "COMPLETE", Context::new()).await?;
    let paid_state = state_of(&handle, paid_order).await?;
    println!(
        "ORD-1 (visa): order is {paid_state}, payment is {}",
        state_of(&handle, paid_payment).await?
    );
    if paid_state != "Paid" {
        bail!("ORD-1 should be Paid, it is {paid_state}");
    }

    let (refused_order, refused_payment) = order(&handle, "ORD-2", "cash").await?;
    let refused_state = state_of(&handle, refused_order).await?;
    println!(
        "ORD-2 (cash): order is {refused_state}, payment is {}",
        state_of(&handle, refused_payment).await?
    );
    if refused_state != "Cancelled" {
        bail!("ORD-2 should be Cancelled, it is {refused_state}");
    }

    let history = store.history(paid_order).await?;
    println!("ORD-1 history:");
    for event in &history {
        println!(
            "  #{:<2} {:<18} {:>15} -> {}",
            event.seq, event.event_type, event.state_before, event.state_after
        );
    }
    let chain = store.correlated(history[0].correlation_id, 100).await?;
    println!("events in ORD-1's causal chain: {}", chain.len());
    runtime.shutdown().await;
    std::fs::remove_dir_all(&data).ok();
    Ok(())
}
