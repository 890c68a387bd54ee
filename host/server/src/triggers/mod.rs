//! How runs start without a person: webhooks and schedules.
//!
//! - A playbook with a `webhook` trigger answers at
//!   `POST /hooks/{workspace}/{playbook}` ([`crate::routes::hooks`]). Its
//!   signing keys are the workspace secret [`webhook_secret_name`] (several
//!   keys separated by spaces are all accepted, for rotation); delivery ids
//!   are remembered ([`deliveries`]) so a retried delivery starts one run.
//! - A playbook with `schedule` triggers is started by [`schedules`].
//!
//! Only enabled playbooks are started by either; manual runs always may.

pub mod deliveries;
pub mod schedules;

use allama_playbook::{Trigger, WebhookSignature};

/// The workspace secret holding a playbook's webhook keys:
/// `WEBHOOK_` and the id in capitals, `-` as `_` (`triage-phish` →
/// `WEBHOOK_TRIAGE_PHISH`).
pub fn webhook_secret_name(playbook: &str) -> String {
    format!(
        "WEBHOOK_{}",
        playbook.to_ascii_uppercase().replace('-', "_")
    )
}

/// The playbook's webhook trigger's signature scheme, if it has one.
pub fn webhook_of(pb: &allama_playbook::Playbook) -> Option<WebhookSignature> {
    pb.triggers.iter().find_map(|t| match t {
        Trigger::Webhook { signature } => Some(*signature),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn secret_names_are_valid_secret_names() {
        for (id, name) in [
            ("triage", "WEBHOOK_TRIAGE"),
            ("triage-phish", "WEBHOOK_TRIAGE_PHISH"),
            ("0day_alerts", "WEBHOOK_0DAY_ALERTS"),
        ] {
            assert_eq!(super::webhook_secret_name(id), name);
            allama_store::names::check_secret(name).unwrap();
        }
    }
}
