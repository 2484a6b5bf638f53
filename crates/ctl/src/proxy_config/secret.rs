//! `proxy-config secret`: the certificates the proxy holds from SDS, warming ones
//! first, each with its type, state, validity and serial number.

use std::time::SystemTime;

use serde_json::Value;

use super::Prefix;
use super::dump::{Dump, Section, field, list, path, str_field};
use super::x509::{self, Certificate};
use crate::table::Table;

/// What istioctl prints when the proxy holds no SDS secret.
pub(crate) const NONE: &str = "No active or warming secrets found.\n";

/// One row of the table: a secret, or one trust domain's bundle of a SPIFFE validator.
struct Item<'a> {
    name: &'a str,
    state: &'static str,
    certificate: Option<Certificate>,
    trust_domain: Option<&'a str>,
}

/// The secret table: RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER,
/// NOT BEFORE, and TRUST DOMAIN when a SPIFFE validator names trust domains; validity
/// is judged at `now`.
pub(crate) fn summary(dump: &Dump, prefix: Prefix, now: SystemTime) -> String {
    let section = dump.section(Section::Secrets);
    let warming = section.map_or(&[][..], |s| list(s, "dynamic_warming_secrets"));
    let active = section.map_or(&[][..], |s| list(s, "dynamic_active_secrets"));
    if warming.is_empty() && active.is_empty() {
        return NONE.to_owned();
    }
    let mut items = Vec::new();
    for (entries, state) in [(warming, "WARMING"), (active, "ACTIVE")] {
        for entry in entries {
            let state = if state == "ACTIVE" && str_field(entry, "version_info") == "uninitialized"
            {
                "UNINITIALIZED"
            } else {
                state
            };
            items.extend(items_of(entry, state));
        }
    }
    let with_domains = items.iter().any(|i| i.trust_domain.is_some());
    let mut header = vec![
        "RESOURCE NAME",
        "TYPE",
        "STATUS",
        "VALID CERT",
        "SERIAL NUMBER",
        "NOT AFTER",
        "NOT BEFORE",
    ];
    if with_domains {
        header.push("TRUST DOMAIN");
    }
    let mut table = Table::new(header);
    for item in items {
        let cert = item.certificate.as_ref();
        let mut row = vec![
            prefix.name("secret", item.name),
            cert.map_or("", |c| if c.is_ca { "CA" } else { "Cert Chain" })
                .to_owned(),
            item.state.to_owned(),
            cert.is_some_and(|c| c.valid_at(now)).to_string(),
            cert.map(|c| c.serial.clone()).unwrap_or_default(),
            cert.map(|c| c.not_after.rfc3339.clone())
                .unwrap_or_default(),
            cert.map(|c| c.not_before.rfc3339.clone())
                .unwrap_or_default(),
        ];
        if with_domains {
            let domain = item
                .trust_domain
                .map(str::to_owned)
                .or_else(|| cert.and_then(|c| c.trust_domain.clone()));
            row.push(domain.unwrap_or_default());
        }
        table.row(row);
    }
    table.render()
}

/// The rows of one secret: its certificate chain or trusted CA, or each trust domain's
/// bundle of a SPIFFE validator.
fn items_of<'a>(entry: &'a Value, state: &'static str) -> Vec<Item<'a>> {
    let name = str_field(entry, "name");
    let secret = field(entry, "secret").unwrap_or(&Value::Null);
    let domains = path(
        secret,
        &[
            "validation_context",
            "custom_validator_config",
            "typed_config",
        ],
    )
    .map(|c| list(c, "trust_domains"))
    .unwrap_or_default();
    if !domains.is_empty() {
        return domains
            .iter()
            .map(|d| Item {
                name,
                state,
                certificate: certificate(field(d, "trust_bundle")),
                trust_domain: Some(str_field(d, "name")),
            })
            .collect();
    }
    let chain = path(secret, &["tls_certificate", "certificate_chain"]);
    let ca = path(secret, &["validation_context", "trusted_ca"]);
    vec![Item {
        name,
        state,
        certificate: certificate(chain).or_else(|| certificate(ca)),
        trust_domain: None,
    }]
}

/// The first certificate of a `DataSource`'s inline PEM: `inline_bytes` (base64 in a
/// dump, as Envoy and istio-agent write it) or `inline_string` (as Mizzen's proxy
/// keeps a PEM written inline); none when absent or unreadable, which istioctl shows
/// as an invalid certificate with no details.
fn certificate(source: Option<&Value>) -> Option<Certificate> {
    let source = source?;
    let pem = match (
        str_field(source, "inline_bytes"),
        str_field(source, "inline_string"),
    ) {
        ("", "") => return None,
        ("", text) => text.as_bytes().to_vec(),
        (bytes, _) => x509::base64(bytes).ok()?,
    };
    x509::first_certificate(&pem).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_proxy_without_secrets_says_so() {
        let dump = Dump::from_value(json!({"configs": []}), "d").unwrap();
        assert_eq!(summary(&dump, Prefix::Off, SystemTime::now()), NONE);
    }

    #[test]
    fn unreadable_and_missing_certificates_show_as_invalid() {
        let dump = Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
                "dynamic_active_secrets": [
                    {"name": "default", "version_info": "uninitialized", "secret": {"name": "default"}},
                    {"name": "broken", "secret": {"tls_certificate": {"certificate_chain": {"inline_bytes": "bm90IGEgY2VydA=="}}}}
                ]
            }]}),
            "d",
        )
        .unwrap();
        assert_eq!(
            summary(&dump, Prefix::Kind, SystemTime::now()),
            "\
RESOURCE NAME      TYPE     STATUS            VALID CERT     SERIAL NUMBER     NOT AFTER     NOT BEFORE
secret/default              UNINITIALIZED     false                                          
secret/broken               ACTIVE            false                                          
"
        );
    }
}
