//! `GET /api/v1/upstreams`: the configured upstreams (never their passwords).

use axum::extract::State;
use axum::Json;
use pinfold_mirror::TagPolicy;
use serde::Serialize;

use crate::registry::Registry;

/// One upstream as the API shows it.
#[derive(Debug, Serialize)]
pub struct UpstreamView {
    name: String,
    url: String,
    username: Option<String>,
    policy: TagPolicy,
    refresh_seconds: u64,
    cooldown_seconds: u64,
    default: bool,
    redirect_hosts: Vec<String>,
}

/// Every configured upstream, in configuration order.
pub async fn list(State(registry): State<Registry>) -> Json<Vec<UpstreamView>> {
    let views = registry
        .mirror()
        .map(|m| {
            m.upstreams()
                .iter()
                .map(|u| {
                    let c = &u.config;
                    UpstreamView {
                        name: c.name.clone(),
                        url: c.url.clone(),
                        username: c.username.clone(),
                        policy: c.policy,
                        refresh_seconds: c.refresh_seconds,
                        cooldown_seconds: c.cooldown_seconds,
                        default: c.default,
                        redirect_hosts: c.redirect_hosts.clone(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Json(views)
}
