//! `pinfold token` and `pinfold audit`: API tokens and the audit log, through a running
//! server's `/api/v1/tokens` and `/api/v1/audit`.

use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::mirror::{Api, ServerArg};

/// `pinfold token`
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    server: ServerArg,
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its secret is printed once (stored only as a hash).
    Create {
        /// Whose token (default: the caller; another user's needs admin).
        #[arg(long)]
        user: Option<String>,
        /// What it may do at most: `repository:<glob>:<actions>`, space-separated entries,
        /// actions pull, push, delete, promote, admin.
        #[arg(long)]
        scope: String,
        /// Lifetime: `<n>s`, `<n>m`, `<n>h` or `<n>d` (default: until revoked).
        #[arg(long, value_parser = parse_duration)]
        expires: Option<u64>,
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (yours; an admin sees all, or --user's).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token id (from `token list`).
        id: String,
    },
}

/// `30d` → seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: expected <n>s, <n>m, <n>h or <n>d")),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected <n>s, <n>m, <n>h or <n>d"))?;
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{text:?}: out of range"))
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or("-").to_owned()
}

/// Runs one `pinfold token` command.
///
/// # Errors
/// The server cannot be reached or refuses.
pub async fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    match args.command {
        TokenCommand::Create {
            user,
            scope,
            expires,
            json,
        } => {
            let body = json!({"user": user, "scope": scope, "expires_in_seconds": expires});
            let url = format!("{}/api/v1/tokens", api.base);
            let answer = api
                .call(api.client.post(url).json(&body), "token create")
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("{}", text(&answer, "secret"));
                eprintln!(
                    "token {} for {} (scope {}, expires {}); the secret above is shown only once",
                    text(&answer, "id"),
                    text(&answer, "user"),
                    text(&answer, "scope"),
                    answer["expires_at"].as_str().unwrap_or("never"),
                );
            }
        }
        TokenCommand::List { user, json } => {
            let path = match &user {
                Some(u) => format!("/api/v1/tokens?user={u}"),
                None => "/api/v1/tokens".to_owned(),
            };
            let answer = api.get(&path, "token list").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                println!("ID\tUSER\tSCOPE\tEXPIRES\tREVOKED");
                for t in answer.as_array().context("token list: expected an array")? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        text(t, "id"),
                        text(t, "user"),
                        text(t, "scope"),
                        t["expires_at"].as_str().unwrap_or("never"),
                        t["revoked_at"].as_str().unwrap_or("-"),
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                bail!("token revoke: {id:?} is not a token id");
            }
            let url = format!("{}/api/v1/tokens/{id}", api.base);
            api.call(api.client.delete(url), "token revoke").await?;
            eprintln!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pinfold audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    server: ServerArg,
    /// Only events at or after this RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Only this actor's events.
    #[arg(long)]
    actor: Option<String>,
    /// At most this many events (default 1000).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `pinfold audit`.
///
/// # Errors
/// The server cannot be reached or refuses.
pub async fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.server).await?;
    let url = format!("{}/api/v1/audit", api.base);
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    if let Some(since) = args.since {
        query.push(("since", since));
    }
    if let Some(actor) = args.actor {
        query.push(("actor", actor));
    }
    let answer = api.call(api.client.get(url).query(&query), "audit").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("TIME\tACTOR\tCLIENT\tACTION\tTARGET\tOUTCOME");
    for e in answer.as_array().context("audit: expected an array")? {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            text(e, "at"),
            text(e, "actor"),
            text(e, "client"),
            text(e, "action"),
            text(e, "target"),
            text(e, "outcome"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(super::parse_duration("90s"), Ok(90));
        assert!(super::parse_duration("0d").is_err());
        assert!(super::parse_duration("3w").is_err());
        assert!(super::parse_duration("d").is_err());
    }
}
