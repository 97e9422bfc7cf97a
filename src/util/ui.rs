//! Output for people and for the programs that read ours, and the one reader of stdin.
//!
//! Nothing here panics: `println!` and `eprintln!` panic when the other end of the pipe is
//! gone (`doctor | head -1`), so clippy.toml bans them and all output goes through here.
//! A closed or broken stdout is the reader's choice to stop, as in ripgrep: the command
//! ends quietly. Any other write failure (a full disk) is an error the command reports.

use std::fmt;
use std::io::{self, Read, Write};
use std::process::ExitCode;

/// A message for the person at the terminal, on stderr. Failures to write it are ignored:
/// there is nowhere left to report them.
pub(crate) fn note(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// All of stdin, refused (after reading at most one byte more) when it is longer than `max`:
/// what docker and the kubelet send is small, and nothing else may make us hold more.
pub(crate) fn read_stdin(max: u64) -> anyhow::Result<Vec<u8>> {
    read_bounded(io::stdin().lock(), max)
}

fn read_bounded(input: impl Read, max: u64) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read stdin: {e}"))?;
    if bytes.len() as u64 > max {
        anyhow::bail!("the input on stdin is larger than {max} bytes");
    }
    Ok(bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_read_up_to_its_bound() {
        assert_eq!(read_bounded(&b"gcr.io\n"[..], 7).unwrap(), b"gcr.io\n");
        let e = read_bounded(&b"gcr.io\n"[..], 6).unwrap_err();
        assert_eq!(e.to_string(), "the input on stdin is larger than 6 bytes");
    }
}
