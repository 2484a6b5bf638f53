//! Istio's configuration analysis (`istioctl analyze`): analyzers that look at a whole set
//! of objects for problems no single object shows (a route to a host that does not
//! exist, two gateways claiming one port…), reporting them with Istio's message codes,
//! levels and texts.
//!
//! Build a [`Context`] with [`ContextBuilder`], pick analyzers ([`analyzers::all`],
//! [`analyzers::by_name`]) and [`run`] them.

pub mod analyzers;
pub mod catalogue;
mod context;
pub mod mesh;
mod message;

pub use context::{Collection, Context, ContextBuilder, Entry};
pub use mesh::{MeshConfig, MeshNetworks};
pub use message::{ANALYSIS_DOCS, Finding, Level, Message, MessageType, Subject, UnknownLevel};

use std::collections::{BTreeSet, HashMap};

use crate::object::ObjectKey;

/// The annotation with which an object silences codes about itself (`*` for all).
pub const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";

/// What an analyzer is and what it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// The name `--analyzer` selects it by, as Istio names it.
    pub name: String,
    /// What it checks.
    pub description: &'static str,
    /// The collections it reads: when a source cannot provide one, it is skipped.
    pub inputs: Vec<Collection>,
}

/// One check over a [`Context`].
pub trait Analyzer: Send + Sync {
    /// Its name, description and inputs.
    fn metadata(&self) -> Metadata;

    /// Appends a message to `out` for every problem found in `ctx`.
    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>);
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Every message, in the order the analyzers reported them.
    pub messages: Vec<Message>,
    /// The analyzers that ran.
    pub executed: Vec<String>,
    /// The analyzers skipped because a collection they read has no source.
    pub skipped: Vec<String>,
}

/// Runs `analyzers` over `ctx`, skipping those whose inputs `ctx` cannot provide.
pub fn run(ctx: &Context, analyzers: &[Box<dyn Analyzer>]) -> Analysis {
    let mut analysis = Analysis::default();
    for analyzer in analyzers {
        let meta = analyzer.metadata();
        if meta.inputs.iter().all(|&c| ctx.provides(c)) {
            analyzer.analyze(ctx, &mut analysis.messages);
            analysis.executed.push(meta.name);
        } else {
            analysis.skipped.push(meta.name);
        }
    }
    analysis
}

/// The messages as istioctl reports them: without those an object's
/// [`SUPPRESS_ANNOTATION`] silences, most serious first, each once.
pub fn reportable(messages: Vec<Message>, ctx: &Context) -> Vec<Message> {
    let suppressed_codes: HashMap<&ObjectKey, &str> = ctx
        .entries()
        .iter()
        .filter_map(|e| Some((e.key(), e.annotation(SUPPRESS_ANNOTATION)?)))
        .collect();
    let annotated = |m: &Message| {
        m.subject
            .as_ref()
            .and_then(|s| suppressed_codes.get(&s.key))
            .is_some_and(|codes| codes.split(',').any(|c| c == "*" || c == m.ty.code))
    };
    let mut kept: Vec<(String, Message)> = messages
        .into_iter()
        .filter(|m| !annotated(m))
        .map(|m| (m.to_string(), m))
        .collect();
    kept.sort_by(|(a_line, a), (b_line, b)| {
        (std::cmp::Reverse(a.level()), a.ty.code, &a.subject, a_line).cmp(&(
            std::cmp::Reverse(b.level()),
            b.ty.code,
            &b.subject,
            b_line,
        ))
    });
    let mut seen = BTreeSet::new();
    kept.into_iter()
        .filter(|(line, _)| seen.insert(line.clone()))
        .map(|(_, m)| m)
        .collect()
}

/// Builds a message's argument list from values of any displayable types.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { vec![$($arg.to_string()),*] };
}
pub(crate) use args;
