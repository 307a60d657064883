//! Business code: handlers registered by method name for `triggeredMethod`, `onEntry` and `onExit`.
//!
//! A handler gets the `HookCall` (event, instance data to update, and a `Sender`). If it returns an
//! error or panics, its changes to the data are undone, the failure is recorded as a
//! `hook_error`, and the transition goes on: business code can never corrupt or delete an instance.
//!
//! A method can also be mapped to a webhook (`Handlers::webhooks`, `webhook`): the hook then
//! changes nothing during the transition; it is recorded as a call to make once the transition is
//! stored, and the endpoint's reply is applied later as an event of its own. A Rust handler
//! registered for the same method wins over a webhook.

use crate::webhook::{Webhook, Webhooks};
use rustc_hash::FxHashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use xcomponent_core::effect::HookKind;
use xcomponent_core::engine::{HookCall, Hooks};
use xcomponent_core::instance::Context;

/// The error type handlers return.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// A registered handler.
pub type Handler = Arc<dyn Fn(&mut HookCall<'_>) -> Result<(), HandlerError> + Send + Sync>;

/// Handlers by method name, optionally scoped to one component.
#[derive(Clone, Default)]
pub struct Handlers {
    global: FxHashMap<Box<str>, Handler>,
    scoped: FxHashMap<(Box<str>, Box<str>), Handler>,
    webhooks: Webhooks,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("global", &self.global.len())
            .field("scoped", &self.scoped.len())
            .field("webhooks", &self.webhooks.len())
            .finish()
    }
}

impl Handlers {
    /// No handlers.
    pub fn new() -> Handlers {
        Handlers::default()
    }

    /// Registers `handler` for `method` in every component.
    pub fn on<F>(mut self, method: &str, handler: F) -> Handlers
    where
        F: Fn(&mut HookCall<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.global.insert(method.into(), Arc::new(handler));
        self
    }

    /// Registers `handler` for `method` in `component` only (wins over a global one).
    pub fn on_component<F>(mut self, component: &str, method: &str, handler: F) -> Handlers
    where
        F: Fn(&mut HookCall<'_>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.scoped.insert((component.into(), method.into()), Arc::new(handler));
        self
    }

    /// Maps methods to webhooks (added to those mapped before; a later mapping of the same
    /// method wins).
    pub fn webhooks(mut self, webhooks: Webhooks) -> Handlers {
        self.webhooks = self.webhooks.merge(webhooks);
        self
    }

    /// Whether nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.scoped.is_empty() && self.webhooks.is_empty()
    }

    /// Whether some method is mapped to a webhook.
    pub(crate) fn has_webhooks(&self) -> bool {
        !self.webhooks.is_empty()
    }

    /// The webhook `method` is mapped to in `component`, if any.
    pub(crate) fn webhook(&self, component: &str, method: &str) -> Option<&Arc<Webhook>> {
        self.webhooks.find(component, method)
    }

    fn find(&self, component: &str, method: &str) -> Option<&Handler> {
        if !self.scoped.is_empty()
            && let Some(handler) = self.scoped.get(&(Box::from(component), Box::from(method)))
        {
            return Some(handler);
        }
        self.global.get(method)
    }

    /// The `Hooks` view for one component.
    pub(crate) fn for_component<'a>(&'a self, component: &'a str) -> ComponentHooks<'a> {
        ComponentHooks { handlers: self, component, calls: Vec::new() }
    }
}

/// A hook mapped to a webhook, reached by a step: the call to make once the step is stored.
#[derive(Debug)]
pub(crate) struct PendingCall {
    pub kind: HookKind,
    pub method: String,
    pub state: String,
    pub event: String,
    pub payload: Context,
    /// The data as the hook saw it.
    pub context: Context,
}

/// Handlers seen from one component; implements the engine's `Hooks`.
pub(crate) struct ComponentHooks<'a> {
    handlers: &'a Handlers,
    component: &'a str,
    /// Webhook calls the step reached, in order.
    pub calls: Vec<PendingCall>,
}

impl Hooks for ComponentHooks<'_> {
    fn call(&mut self, mut call: HookCall<'_>) -> Result<(), String> {
        let Some(handler) = self.handlers.find(self.component, call.method) else {
            if self.handlers.webhook(self.component, call.method).is_some() {
                self.calls.push(PendingCall {
                    kind: call.kind,
                    method: call.method.to_owned(),
                    state: call.state.to_owned(),
                    event: call.event.name.to_owned(),
                    payload: call.event.payload.clone(),
                    context: call.context.clone(),
                });
            }
            return Ok(());
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| handler(&mut call)));
        let error = match outcome {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => error.to_string(),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                format!("handler panicked: {text}")
            }
        };
        Err(error)
    }
}
