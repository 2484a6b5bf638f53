//! `schema.ValidationAnalyzer.<Kind>`: each Istio object checked as Istio's validation
//! webhook checks it, errors as IST0106 and warnings as IST0133.

use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::validate::Severity;

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
                let ty = match issue.severity {
                    Severity::Error => catalogue::SCHEMA_VALIDATION_ERROR,
                    Severity::Warning => catalogue::SCHEMA_WARNING,
                };
                out.push(entry.message_at(&issue.path, ty, args![issue]));
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
