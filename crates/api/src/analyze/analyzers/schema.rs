//! `schema.ValidationAnalyzer.<Kind>`: each Istio object checked as Istio's validation
//! webhook checks it, errors as IST0106 and warnings as IST0133, except the warnings
//! with codes of their own (unreachable VirtualService rules and matches).

use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::validate::{Finding, Severity};

/// Schema validation of the objects of one Istio kind.
pub struct Schema(pub Kind);

impl Analyzer for Schema {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: format!("schema.ValidationAnalyzer.{}", self.0),
            description: "Runs schema validation as an analyzer and reports any violations",
            inputs: vec![Collection::of(self.0)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for entry in ctx.collection(Collection::of(self.0)) {
            for issue in entry.object.validate() {
                let (ty, args) = match (&issue.finding, issue.severity) {
                    (Some(Finding::UnreachableRule { rule, reason }), _) => (
                        catalogue::VIRTUAL_SERVICE_UNREACHABLE_RULE,
                        args![rule, reason],
                    ),
                    (
                        Some(Finding::IneffectiveMatch {
                            rule,
                            matched,
                            earlier,
                        }),
                        _,
                    ) => (
                        catalogue::VIRTUAL_SERVICE_INEFFECTIVE_MATCH,
                        args![rule, matched, earlier],
                    ),
                    (None, Severity::Error) => (catalogue::SCHEMA_VALIDATION_ERROR, args![issue]),
                    (None, Severity::Warning) => (catalogue::SCHEMA_WARNING, args![issue]),
                };
                out.push(entry.message_at(&issue.path, ty, args));
            }
        }
    }
}

/// One schema analyzer per Istio kind.
pub fn all() -> impl Iterator<Item = Schema> {
    Kind::ALL
        .iter()
        .copied()
        .filter(|k| k.is_istio())
        .map(Schema)
}
