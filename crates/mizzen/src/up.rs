//! `mizzen up [DIR]`: the local mesh. For now it runs the config store on DIR: it loads
//! and validates the config, prints what is in force, and reports every change and every
//! refused edit until Ctrl-C.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use mizzen_pilot::store::{ChangeKind, ConfigStore, DirStore, Problem};

/// Runs until Ctrl-C.
pub async fn run(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "config directory {} does not exist (run `mizzen up DIR` with a directory of Istio/Kubernetes YAML)",
        dir.display()
    );
    let store = DirStore::open(dir)
        .with_context(|| format!("opening config directory {}", dir.display()))?;
    let mut changes = store.subscribe();
    let mut problems = store.problems();
    let mut out = std::io::stdout().lock();

    let snapshot = &changes.initial;
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (key, _) in snapshot.iter() {
        *by_kind.entry(key.kind.clone()).or_default() += 1;
    }
    let counts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(
        out,
        "Config from {} at revision {}: {} objects ({})",
        dir.display(),
        snapshot.revision,
        snapshot.len(),
        counts.join(", ")
    )?;
    for (key, _) in snapshot.iter() {
        writeln!(out, "  {key}")?;
    }
    print_problems(&mut out, &problems.borrow_and_update())?;
    writeln!(
        out,
        "Watching {} for changes (Ctrl-C to stop)",
        dir.display()
    )?;
    out.flush()?;

    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            batch = changes.next() => {
                let Some(batch) = batch else { break };
                for change in &batch.changes {
                    let verb = match change.kind {
                        ChangeKind::Added => "added",
                        ChangeKind::Updated => "updated",
                        ChangeKind::Removed => "removed",
                    };
                    writeln!(out, "revision {}: {verb} {}", batch.revision(), change.key)?;
                }
            }
            changed = problems.changed() => {
                if changed.is_err() { break }
                print_problems(&mut out, &problems.borrow_and_update())?;
            }
        }
        out.flush()?;
    }
    writeln!(out, "Stopped.")?;
    Ok(())
}

fn print_problems(out: &mut impl Write, problems: &[Problem]) -> std::io::Result<()> {
    for problem in problems {
        writeln!(out, "refused (last good version stays in force): {problem}")?;
    }
    Ok(())
}
