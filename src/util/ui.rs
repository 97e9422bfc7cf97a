//! Output for people and for the programs that read ours.
//!
//! Nothing here panics: `println!` and `eprintln!` panic when the other end of the pipe is
//! gone (`doctor | head -1`), so clippy.toml bans them and all output goes through here.
//! A closed or broken stdout is the reader's choice to stop, as in ripgrep: the command
//! ends quietly. Any other write failure (a full disk) is an error the command reports.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// A message for the person at the terminal, on stderr. Failures to write it are ignored:
/// there is nowhere left to report them.
pub(crate) fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// Standard output, for a command's answer.
pub(crate) fn stdout() -> io::StdoutLock<'static> {
    io::stdout().lock()
}

/// Whether an error means the reader went away (a broken pipe somewhere in its causes).
pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a human-facing command: errors are reported on stderr; a reader that
/// stopped reading is not an error.
pub(crate) fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            note(format_args!("docker-credential-gcp: error: {e:#}"));
            ExitCode::FAILURE
        }
    }
}
