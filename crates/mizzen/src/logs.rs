//! `mizzen logs NAME [-f]`: the output of a replica's app (`reviews-v2-1`), or of every
//! replica of a Deployment (`reviews-v2`), from the mesh's log files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::up::state::StateDir;

/// How often `-f` looks for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// `mizzen logs`' options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// A replica (`reviews-v2-1`), a Deployment (`reviews-v2`), or a `mizzen run` name.
    name: String,
    /// Keep printing output as it comes.
    #[arg(short = 'f', long)]
    follow: bool,
    /// The state directory; default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// The log files of `name`: its own, or those of its replicas (`NAME-<n>.log`).
fn files_of(logs: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let own = logs.join(format!("{name}.log"));
    if own.is_file() {
        return Ok(vec![own]);
    }
    let prefix = format!("{name}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .with_context(|| format!("no logs in {}", logs.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let file = p.file_name().unwrap_or_default().to_string_lossy();
            file.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".log"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    anyhow::ensure!(
        !files.is_empty(),
        "no replica or deployment {name:?} has logs in {}",
        logs.display()
    );
    Ok(files)
}

/// Prints the logs, prefixed with the replica's name when there are several; with
/// `-f`, keeps printing until interrupted.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::resolve(args.state_dir.clone())?;
    let files = files_of(&state.logs_dir(), &args.name)?;
    let prefixed = files.len() > 1;
    let mut readers = files
        .iter()
        .map(|path| {
            let name = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
            Ok((name, file, String::new()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    loop {
        for (name, file, partial) in &mut readers {
            let mut text = String::new();
            // Restarted from the top if the file was truncated.
            if file.metadata()?.len() < file.stream_position()? {
                file.seek(SeekFrom::Start(0))?;
            }
            file.read_to_string(&mut text)?;
            partial.push_str(&text);
            while let Some(end) = partial.find('\n') {
                let line: String = partial.drain(..=end).collect();
                if prefixed {
                    write!(out, "[{name}] {line}")?;
                } else {
                    write!(out, "{line}")?;
                }
            }
        }
        out.flush()?;
        if !args.follow {
            for (name, _, partial) in &readers {
                if !partial.is_empty() {
                    if prefixed {
                        writeln!(out, "[{name}] {partial}")?;
                    } else {
                        writeln!(out, "{partial}")?;
                    }
                }
            }
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_name_means_its_replicas_logs() {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "reviews-v2-1.log",
            "reviews-v2-2.log",
            "reviews-v3-1.log",
            "reviews-v2-x.log",
        ] {
            std::fs::write(dir.path().join(file), format!("from {file}\n")).unwrap();
        }
        let files = files_of(dir.path(), "reviews-v2").unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["reviews-v2-1.log", "reviews-v2-2.log"]);
        assert_eq!(files_of(dir.path(), "reviews-v3-1").unwrap().len(), 1);
        assert!(files_of(dir.path(), "ratings").is_err());

        // The state directory's logs are under `logs/`.
        let state = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(dir.path(), state.path().join("logs")).unwrap();
        let args = Args {
            name: "reviews-v2".into(),
            follow: false,
            state_dir: Some(state.path().to_owned()),
        };
        let mut out = Vec::new();
        run(&args, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[reviews-v2-1] from reviews-v2-1.log\n[reviews-v2-2] from reviews-v2-2.log\n"
        );
    }
}
