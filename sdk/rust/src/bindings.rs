//! The generated guest bindings for `wit/action.wit`, and the glue between
//! them and the SDK's types. Not part of the public API.

#![allow(clippy::too_many_arguments)] // generated

wit_bindgen::generate!({
    path: "../../wit",
    world: "action",
    pub_export_macro: true,
    export_macro_name: "export_component",
    default_bindings_module: "allama_sdk::bindings",
});

use crate::{Error, ErrorKind};
use allama::action::types;

/// Convert the WIT context, call `dispatch`, convert the error back.
pub fn run(
    dispatch: fn(&str, &str, &crate::Context) -> crate::Result<String>,
    action: &str,
    input: &str,
    ctx: types::Context,
) -> Result<String, types::ActionError> {
    let ctx = crate::Context {
        run_id: ctx.run_id,
        step_id: ctx.step_id,
        idempotency_key: ctx.idempotency_key,
        attempt: ctx.attempt,
    };
    dispatch(action, input, &ctx).map_err(to_wit)
}

fn to_wit(e: Error) -> types::ActionError {
    let kind = match e.kind {
        ErrorKind::InvalidInput => types::ErrorKind::InvalidInput,
        ErrorKind::Unauthorized => types::ErrorKind::Unauthorized,
        ErrorKind::NotFound => types::ErrorKind::NotFound,
        ErrorKind::RateLimited(ms) => types::ErrorKind::RateLimited(ms),
        ErrorKind::Upstream(s) => types::ErrorKind::Upstream(s),
        ErrorKind::Timeout => types::ErrorKind::Timeout,
        ErrorKind::Denied => types::ErrorKind::Denied,
        ErrorKind::Internal => types::ErrorKind::Internal,
    };
    types::ActionError {
        kind,
        message: e.message,
        retryable: e.retryable,
    }
}
