//! Drawing fresh identifiers. The core never draws an id (it reads no clock); the runtime does,
//! here, with UUID v7: time-ordered, and ordered by creation within a process.

use xcomponent_core::instance::{EventId, InstanceId};
use xcomponent_core::message::MessageId;

/// An identifier type the runtime can draw a fresh value of.
pub trait DrawId: Sized {
    /// A fresh, time-ordered id (UUID v7).
    fn draw() -> Self;
}

macro_rules! draw_v7 {
    ($($name:ty),*) => {$(
        impl DrawId for $name {
            fn draw() -> Self {
                Self(uuid::Uuid::now_v7())
            }
        }
    )*};
}

draw_v7!(InstanceId, EventId, MessageId);
