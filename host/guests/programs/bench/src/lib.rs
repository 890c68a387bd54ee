//! The trivial action `allama bench runtime` measures: parse the JSON input,
//! answer with a small JSON object. Nothing else, so the figures show the
//! cost of isolation, not of the action.
wit_bindgen::generate!({ path: "../../../../wit", world: "action" });

use allama::action::types::ErrorKind;

struct Bench;

impl Guest for Bench {
    fn run(_action: String, input: String, _ctx: Context) -> Result<String, ActionError> {
        match serde_json::from_str::<serde_json::Value>(&input) {
            Ok(v) => Ok(format!(
                "{{\"ok\":true,\"fields\":{}}}",
                v.as_object().map_or(0, |o| o.len())
            )),
            Err(e) => Err(ActionError {
                kind: ErrorKind::InvalidInput,
                message: format!("input is not JSON: {e}"),
                retryable: false,
            }),
        }
    }
}

export!(Bench);
