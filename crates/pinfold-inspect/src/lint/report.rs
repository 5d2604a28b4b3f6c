//! Machine-readable renderings of lint findings: a JSON array and SARIF 2.1.0.

use serde::Serialize;
use serde_json::{json, Value};

use super::{Finding, RuleId, Severity};

/// The findings of one file.
#[derive(Debug, Clone, Copy)]
pub struct FileFindings<'a> {
    /// The file as the user named it (`-` for stdin is shown as `<stdin>`).
    pub file: &'a str,
    /// Its findings.
    pub findings: &'a [Finding],
}

/// One finding as JSON, fields in this order: `{id, severity, file, line, column, message,
/// hint}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JsonFinding<'a> {
    /// Rule ID (`PF002`).
    pub id: &'static str,
    /// `error`, `warning` or `info`.
    pub severity: Severity,
    /// The file as named by the user.
    pub file: &'a str,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: &'a str,
    /// How to fix it.
    pub hint: &'a str,
}

/// All findings as one list (serialize it for the JSON array), in file order.
pub fn to_json<'a>(files: &[FileFindings<'a>]) -> Vec<JsonFinding<'a>> {
    files
        .iter()
        .flat_map(|f| {
            f.findings.iter().map(|x| JsonFinding {
                id: x.rule.id(),
                severity: x.severity,
                file: f.file,
                line: x.line,
                column: x.column,
                message: &x.message,
                hint: &x.hint,
            })
        })
        .collect()
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A SARIF 2.1.0 log with one run: every rule in `tool.driver.rules`, one result per finding.
pub fn to_sarif(files: &[FileFindings<'_>]) -> Value {
    let rules: Vec<Value> = RuleId::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id(),
                "name": format!("{r:?}"),
                "shortDescription": { "text": r.title() },
                "help": { "text": r.hint() },
                "defaultConfiguration": { "level": sarif_level(r.severity()) },
            })
        })
        .collect();
    let results: Vec<Value> = files
        .iter()
        .flat_map(|f| {
            f.findings.iter().map(move |x| {
                let index = RuleId::ALL.iter().position(|r| *r == x.rule).unwrap_or(0);
                json!({
                    "ruleId": x.rule.id(),
                    "ruleIndex": index,
                    "level": sarif_level(x.severity),
                    "message": { "text": format!("{} (hint: {})", x.message, x.hint) },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": f.file },
                            "region": { "startLine": x.line, "startColumn": x.column },
                        }
                    }],
                })
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "pinfold lint",
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding() -> Finding {
        Finding {
            rule: RuleId::NotPinned,
            severity: Severity::Warning,
            line: 3,
            column: 6,
            message: "base image ruby:3.3 is not pinned by digest".into(),
            hint: "pin it".into(),
        }
    }

    #[test]
    fn json_has_the_fields() {
        let f = [finding()];
        let v = serde_json::to_value(to_json(&[FileFindings {
            file: "Dockerfile",
            findings: &f,
        }]))
        .unwrap();
        assert_eq!(v[0]["id"], "PF002");
        assert_eq!(v[0]["severity"], "warning");
        assert_eq!(v[0]["file"], "Dockerfile");
        assert_eq!(v[0]["line"], 3);
        assert_eq!(v[0]["column"], 6);
        assert_eq!(v[0]["hint"], "pin it");
    }

    #[test]
    fn sarif_structure() {
        let f = [finding()];
        let v = to_sarif(&[FileFindings {
            file: "Dockerfile",
            findings: &f,
        }]);
        assert_eq!(v["version"], "2.1.0");
        assert!(v["$schema"].as_str().unwrap().contains("sarif"));
        let run = &v["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            RuleId::ALL.len()
        );
        let r = &run["results"][0];
        assert_eq!(r["ruleId"], "PF002");
        assert_eq!(r["level"], "warning");
        assert_eq!(r["ruleIndex"], 1);
        assert!(r["message"]["text"].as_str().unwrap().contains("ruby:3.3"));
        let loc = &r["locations"][0]["physicalLocation"];
        assert_eq!(loc["artifactLocation"]["uri"], "Dockerfile");
        assert_eq!(loc["region"]["startLine"], 3);
    }
}
