//! pinfold-apt against real Debian tools: signatures checked by `gpgv` and `sqv` (the verifiers
//! apt runs), with the key given as the `signed-by` file apt would use.

mod signatures;

/// Whether `tool` runs here; skips (returns false) locally when missing, panics in CI, where
/// scripts/test installs it.
pub fn require_tool(tool: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{tool} is required in CI (scripts/test installs it)"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}
