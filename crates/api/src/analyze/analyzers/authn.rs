//! RequestAuthentication checks: JWKS URIs istiod fetches from any address.

use k8s_openapi::api::apps::v1::Deployment;

use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::security::RequestAuthentication;
use crate::{Kind, Resource};

/// How many RequestAuthentications the message names before it only counts the rest.
const NAMES_SHOWN: usize = 5;

/// `authn.BlockedCIDRsAnalyzer`: with RequestAuthentications in the mesh, istiod fetches
/// the JWKS URIs they name; without `BLOCKED_CIDRS_IN_JWKS_URIS` any user who may write
/// one can make istiod reach internal addresses.
pub struct BlockedCidrs;

/// True when a container of the Deployment's pods sets `BLOCKED_CIDRS_IN_JWKS_URIS`.
fn blocks_cidrs(deployment: &Deployment) -> bool {
    deployment
        .spec
        .template
        .spec
        .iter()
        .flat_map(|p| &p.containers)
        .flat_map(|c| c.env.iter().flatten())
        .any(|e| {
            e.name == "BLOCKED_CIDRS_IN_JWKS_URIS"
                && e.value.as_deref().is_some_and(|v| !v.is_empty())
        })
}

/// The names, the first few in full, then how many more.
fn name_list(names: &[String]) -> String {
    if names.len() <= NAMES_SHOWN {
        return names.join(", ");
    }
    format!(
        "{}, and {} more",
        names[..NAMES_SHOWN].join(", "),
        names.len() - NAMES_SHOWN
    )
}

impl Analyzer for BlockedCidrs {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "authn.BlockedCIDRsAnalyzer".into(),
            description: "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is configured on istiod when RequestAuthentication resources exist",
            inputs: vec![
                Collection::of(Kind::RequestAuthentication),
                Collection::of(Kind::Deployment),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let names: Vec<String> = ctx
            .each::<Resource<RequestAuthentication>>()
            .map(|(entry, _)| format!("{}/{}", entry.namespace(), entry.name()))
            .collect();
        if names.is_empty() {
            return;
        }
        for (entry, deployment) in ctx.each::<Deployment>() {
            if entry.label("app") == Some("istiod") && !blocks_cidrs(deployment) {
                out.push(entry.message(
                    catalogue::JWKS_URI_FETCH_UNRESTRICTED,
                    args![names.len(), name_list(&names)],
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::{ContextBuilder, run};
    use crate::load::Loader;

    const ISTIOD: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: istiod\n  namespace: istio-system\n  labels: {app: istiod}\nspec:\n  selector: {matchLabels: {app: istiod}}\n  template:\n    metadata: {labels: {app: istiod}}\n    spec:\n      containers:\n      - name: discovery\n        image: pilot\n";

    fn messages(text: &str) -> Vec<Message> {
        let mut builder = ContextBuilder::new();
        builder.add_text(&Loader::new().default_namespace(None), text, None);
        run(&builder.build(), &[Box::new(BlockedCidrs)]).messages
    }

    #[test]
    fn unrestricted_istiod_is_reported_once_request_authentication_exists() {
        assert!(messages(ISTIOD).is_empty(), "no RequestAuthentication");
        let ra = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: default}\nspec: {}\n---\n";
        let found = messages(&format!("{ra}{ISTIOD}"));
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].origin().as_deref(),
            Some("Deployment istio-system/istiod")
        );
        assert!(
            found[0]
                .text()
                .contains("1 RequestAuthentication resource(s) exist (default/jwt)")
        );
    }

    #[test]
    fn long_name_lists_are_cut_after_five() {
        let names: Vec<String> = (1..=7).map(|i| format!("ns/ra{i}")).collect();
        assert_eq!(
            name_list(&names),
            "ns/ra1, ns/ra2, ns/ra3, ns/ra4, ns/ra5, and 2 more"
        );
    }
}
