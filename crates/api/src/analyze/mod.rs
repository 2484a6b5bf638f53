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
pub use message::{Level, Message, MessageType, Subject, UnknownLevel};

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

/// Builds a message's argument list from values of any displayable types.
macro_rules! args {
    ($($arg:expr),* $(,)?) => { vec![$($arg.to_string()),*] };
}
pub(crate) use args;
