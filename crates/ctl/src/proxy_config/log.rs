//! `proxy-config log`: a proxy's logger levels, read and changed through its admin
//! `/logging` endpoint (which takes POSTs only), with istioctl's `--level` syntax.

use std::net::SocketAddr;

use anyhow::bail;

/// The levels Envoy knows, by the names `--level` accepts.
const LEVELS: [(&str, &str); 8] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warning", "warning"),
    ("warn", "warning"),
    ("error", "error"),
    ("critical", "critical"),
    ("off", "off"),
];

/// The level `--reset` restores, Envoy's (and Istio's) default.
const DEFAULT_LEVEL: &str = "warning";

/// What to do to the proxy's loggers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogChange {
    /// Only show the levels.
    Show,
    /// Set every logger back to `warning`.
    Reset,
    /// istioctl's `--level`: `LEVEL` for every logger, or `[LOGGER:]LEVEL,…`.
    Levels(String),
}

/// One change: a logger (every logger when `None`) and its new level.
#[derive(Debug, PartialEq, Eq)]
struct SetLevel {
    logger: Option<String>,
    level: &'static str,
}

/// Applies `change` to the proxy whose admin is at `admin` and returns the loggers'
/// levels as the proxy then reports them.
pub fn run(admin: SocketAddr, change: &LogChange) -> anyhow::Result<String> {
    let changes = match change {
        LogChange::Show => return crate::http::post(admin, "/logging"),
        LogChange::Reset => vec![SetLevel {
            logger: None,
            level: DEFAULT_LEVEL,
        }],
        LogChange::Levels(spec) => parse(spec)?,
    };
    if changes.iter().any(|c| c.logger.is_some()) {
        let listing = crate::http::post(admin, "/logging")?;
        let known = loggers(&listing);
        if let Some(unknown) = changes
            .iter()
            .filter_map(|c| c.logger.as_deref())
            .find(|l| !known.contains(l))
        {
            bail!("unrecognized logger name: {unknown}");
        }
    }
    // Every logger first, so a named logger's level is not overwritten after.
    let (all, named): (Vec<_>, Vec<_>) = changes.iter().partition(|c| c.logger.is_none());
    let mut response = String::new();
    for c in all.iter().chain(&named) {
        let query = match &c.logger {
            None => format!("level={}", c.level),
            Some(logger) => format!("{logger}={}", c.level),
        };
        response = crate::http::post(admin, &format!("/logging?{query}"))?;
    }
    Ok(response)
}

/// Reads `--level`: a bare level sets every logger; `logger:level` or `logger=level`
/// (optionally `namespace::logger:level`) sets one.
fn parse(spec: &str) -> anyhow::Result<Vec<SetLevel>> {
    spec.split(',')
        .map(|entry| {
            let entry = entry.rsplit("::").next().unwrap_or(entry);
            let (logger, level) = match entry.split_once([':', '=']) {
                Some((logger, level)) => (Some(logger.to_owned()), level),
                None => (None, entry),
            };
            let Some((_, level)) = LEVELS.iter().find(|(name, _)| *name == level) else {
                bail!("unrecognized logging level: {level}");
            };
            Ok(SetLevel { logger, level })
        })
        .collect()
}

/// The logger names in Envoy's `/logging` answer (`active loggers:` then `  name: level`).
fn loggers(listing: &str) -> Vec<&str> {
    listing
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.trim().split_once(':').map(|(name, _)| name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_levels_for_all_loggers_or_named_ones() {
        let set = |logger: Option<&str>, level| SetLevel {
            logger: logger.map(str::to_owned),
            level,
        };
        assert_eq!(parse("debug").unwrap(), [set(None, "debug")]);
        assert_eq!(
            parse("http:debug,redis=warn,envoy::router:trace").unwrap(),
            [
                set(Some("http"), "debug"),
                set(Some("redis"), "warning"),
                set(Some("router"), "trace")
            ]
        );
        assert_eq!(
            parse("xxx").unwrap_err().to_string(),
            "unrecognized logging level: xxx"
        );
        assert_eq!(
            parse("http:yyy").unwrap_err().to_string(),
            "unrecognized logging level: yyy"
        );
    }

    #[test]
    fn reads_logger_names_from_envoys_listing() {
        let listing = "active loggers:\n  admin: warning\n  http: debug\n";
        assert_eq!(loggers(listing), ["admin", "http"]);
    }

    #[test]
    fn reads_logger_names_from_a_real_envoy_listing() {
        let Some(data) = mizzen_api::testdata::istio_data() else {
            return;
        };
        let listing = std::fs::read_to_string(
            data.join("istioctl/writer/envoy/logging/testdata/logging.txt"),
        )
        .unwrap();
        let names = loggers(&listing);
        assert_eq!(names.len(), 40);
        assert!(names.contains(&"http") && names.contains(&"wasm"));
    }
}
