//! Status checks: conditions in which Istio (or its Gateway API controller) reports
//! that an object is not, or only partly, in effect.

use serde_json::Value;

use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::{Kind, Object};

/// `conditions.ConditionAnalyzer`: negative status conditions on Services,
/// ServiceEntries, AuthorizationPolicies, Gateway API Gateways and their routes' parents.
pub struct Conditions;

/// The collections whose status carries conditions, and whether they sit per parent
/// (`status.parents[].conditions`, as on routes) or at the top (`status.conditions`).
const WITH_CONDITIONS: [(Collection, bool); 6] = [
    (Collection::of(Kind::Service), false),
    (Collection::of(Kind::ServiceEntry), false),
    (Collection::of(Kind::AuthorizationPolicy), false),
    (Collection::K8S_GATEWAY, false),
    (Collection::HTTP_ROUTE, true),
    (Collection::GRPC_ROUTE, true),
];

/// The object's `status`, as written.
fn status(entry: &Entry) -> Option<Value> {
    match &entry.object {
        Object::Service(svc) => svc
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok()),
        Object::ServiceEntry(r) => r.status.clone(),
        Object::AuthorizationPolicy(r) => r.status.clone(),
        Object::Other(o) => o.rest.get("status").cloned(),
        _ => None,
    }
}

/// True for conditions Istio writes: Istio's own (`istio.io/…`) and those of unprefixed
/// type (Gateway API's and Istio's policy ones); other controllers' (`argocd…/Synced`)
/// are theirs to explain.
fn istio_owned(kind: &str) -> bool {
    match kind.split_once('/') {
        Some((domain, _)) => domain == "istio.io" || domain.ends_with(".istio.io"),
        None => true,
    }
}

/// True when the condition says the object is not (fully) in effect.
fn negative(condition: &Value) -> bool {
    let field = |name: &str| condition[name].as_str().unwrap_or_default();
    field("status") == "False" || field("reason") == "PartiallyInvalid"
}

impl Analyzer for Conditions {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "conditions.ConditionAnalyzer".into(),
            description: "Checks for negative status conditions on resources",
            inputs: WITH_CONDITIONS.iter().map(|(c, _)| *c).collect(),
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (collection, per_parent) in WITH_CONDITIONS {
            for entry in ctx.collection(collection) {
                let Some(status) = status(entry) else {
                    continue;
                };
                let lists: Vec<&Value> = if per_parent {
                    status["parents"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| &p["conditions"])
                        .collect()
                } else {
                    vec![&status["conditions"]]
                };
                let conditions = lists.into_iter().filter_map(Value::as_array).flatten();
                for condition in conditions {
                    let field = |name: &str| condition[name].as_str().unwrap_or_default();
                    if istio_owned(field("type")) && negative(condition) {
                        out.push(entry.message(
                            catalogue::NEGATIVE_CONDITION_STATUS,
                            args![field("type"), field("reason"), field("message")],
                        ));
                    }
                }
            }
        }
    }
}
