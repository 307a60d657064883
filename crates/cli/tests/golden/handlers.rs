//! Business handlers the golden cases register, by case name: the code the examples' YAML
//! refers to (`triggeredMethod`, `onEntry`), written the way the original's demos and guides
//! describe it. Cases not listed here run without business code.

use serde_json::{Value, json};
use xcomponent_core::engine::HookCall;
use xcomponent_core::instance::Context;
use xcomponent_runtime::{HandlerError, Handlers};

fn object(value: Value) -> Context {
    match value {
        Value::Object(map) => map,
        _ => Context::new(),
    }
}

fn number(context: &Context, key: &str) -> f64 {
    context.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// Sets `key` to `value`, kept as an integer when it is one.
fn set_number(context: &mut Context, key: &str, value: f64) {
    let json =
        if value.fract() == 0.0 && value.abs() < 1e15 { json!(value as i64) } else { json!(value) };
    context.insert(key.to_owned(), json);
}

/// The handlers of one case.
pub fn for_case(case: &str) -> Handlers {
    match case {
        "distributed-order-component"
        | "distributed-redis-order-component"
        | "distributed-kafka-order-component" => payment_demo(),
        "event-accumulation-demo" => accumulation(None),
        "explicit-transitions-demo" => {
            accumulation(Some("ORDER_UPDATE")).on("updateRiskMetrics", update_risk_metrics)
        }
        "advanced-patterns-demo" => accumulation(Some("ORDER_EXECUTION_UPDATE"))
            .on("updateRiskMetrics", update_risk_metrics)
            .on("handleExpiration", |call| notify_risk(call, "ORDER_EXPIRED"))
            .on("notifyCompletion", |call| notify_risk(call, "ORDER_COMPLETED")),
        "complete-workflow-all-features" => Handlers::new()
            .on("notifyOrderPaymentSuccess", |call| tell_order(call, "PAYMENT_SUCCESS"))
            .on("notifyOrderPaymentFailed", |call| tell_order(call, "PAYMENT_FAILED"))
            .on("notifyOrderDispatched", |call| tell_order(call, "SHIPMENT_DISPATCHED"))
            .on("notifyOrderDelivered", |call| tell_order(call, "DELIVERY_CONFIRMED")),
        "subscription-lifecycle-component" => Handlers::new().on("scheduleRetryPayment", |call| {
            let retries = number(call.context, "retryCount") + 1.0;
            set_number(call.context, "retryCount", retries);
            Ok(())
        }),
        "ecommerce-fsm-SportShopComponent" => Handlers::new()
            .on("onItemAdded", |call| cart_items(call, 1.0))
            .on("onItemRemoved", |call| cart_items(call, -1.0)),
        _ => Handlers::new(),
    }
}

/// The order/payment demo's business rule: only some card types are accepted.
fn payment_demo() -> Handlers {
    Handlers::new().on("checkPaymentMethod", |call| {
        let method = call
            .context
            .get("paymentMethod")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let event = if matches!(method.as_str(), "visa" | "mastercard" | "cb") {
            "VALIDATE"
        } else {
            "REJECT"
        };
        call.sender.send_to_self(event, Context::new());
        Ok(())
    })
}

/// Accumulates `quantity` of each execution into `executedQuantity`; once `totalQuantity` is
/// reached, sends FULLY_EXECUTED to itself. With `update`, also tells the risk monitors.
fn accumulation(update: Option<&'static str>) -> Handlers {
    Handlers::new().on("accumulateExecution", move |call| {
        let executed =
            number(call.context, "executedQuantity") + number(call.event.payload, "quantity");
        set_number(call.context, "executedQuantity", executed);
        if let Some(event) = update {
            notify_risk(call, event)?;
        }
        if executed >= number(call.context, "totalQuantity") {
            call.sender.send_to_self("FULLY_EXECUTED", Context::new());
        }
        Ok(())
    })
}

/// Broadcasts an order event to the RiskMonitor machine; its matching rules read
/// `payload.customerId`, so the customer goes under `payload`.
fn notify_risk(call: &mut HookCall<'_>, event: &str) -> Result<(), HandlerError> {
    let payload = object(json!({
        "payload": {
            "customerId": call.context.get("customerId").cloned().unwrap_or(Value::Null),
            "orderId": call.context.get("orderId").cloned().unwrap_or(Value::Null),
            "quantity": call.event.payload.get("quantity").cloned().unwrap_or(json!(0)),
        }
    }));
    call.sender.broadcast("RiskMonitor", None, event, payload);
    Ok(())
}

/// Counts the updates a risk monitor received and the quantity they carried.
fn update_risk_metrics(call: &mut HookCall<'_>) -> Result<(), HandlerError> {
    let quantity = call
        .event
        .payload
        .get("payload")
        .and_then(|inner| inner.get("quantity"))
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let updates = number(call.context, "updates") + 1.0;
    let exposure = number(call.context, "exposure") + quantity;
    set_number(call.context, "updates", updates);
    set_number(call.context, "exposure", exposure);
    Ok(())
}

/// Tells the Order whose `Id` is this instance's `orderId` (the Order's rules match on it).
fn tell_order(call: &mut HookCall<'_>, event: &str) -> Result<(), HandlerError> {
    let Some(order) = call.context.get("orderId").cloned() else {
        return Err("no orderId in the data".into());
    };
    call.sender.broadcast("Order", None, event, object(json!({ "orderId": order })));
    Ok(())
}

/// Keeps `itemCount` up to date (by the payload's `quantity`, default 1).
fn cart_items(call: &mut HookCall<'_>, sign: f64) -> Result<(), HandlerError> {
    let quantity = call.event.payload.get("quantity").and_then(Value::as_f64).unwrap_or(1.0);
    let count = (number(call.context, "itemCount") + sign * quantity).max(0.0);
    set_number(call.context, "itemCount", count);
    Ok(())
}
