//! Running another program with a deadline: gcloud and credential executables for tokens,
//! docker for its version and its daemon's mirrors.
//!
//! The deadline holds whatever the child does. Its output is read on threads, so a chatty
//! child never blocks on a full pipe; a child still running at the deadline is killed with its
//! whole process group; a child that exits but leaves a background process holding its stdout
//! (a wrapper script doing `sleep 30 &`) does not keep us waiting for end-of-file; a child
//! printing more than the limit is stopped and reported as such.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::util::env;

/// Largest output accepted on stdout or stderr.
pub(crate) const OUTPUT_LIMIT: usize = 1024 * 1024;

/// How long to keep reading a child's pipes after it exited, before its leftovers are killed.
const LINGER: Duration = Duration::from_millis(100);

#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// Why a child did not produce a result.
#[derive(Debug)]
pub(crate) enum ProcessError {
    Spawn(std::io::Error),
    Wait(std::io::Error),
    TimedOut,
    TooMuchOutput(&'static str),
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProcessError::Spawn(e) => write!(f, "cannot be started: {e}"),
            ProcessError::Wait(e) => write!(f, "could not be waited for: {e}"),
            ProcessError::TimedOut => f.write_str("did not finish in time and was stopped"),
            ProcessError::TooMuchOutput(stream) => write!(
                f,
                "printed more than {} MiB on {stream} and was stopped",
                OUTPUT_LIMIT / (1024 * 1024)
            ),
        }
    }
}

impl std::error::Error for ProcessError {}

enum Event {
    Data(Stream, Vec<u8>),
    Eof,
    Overflow(Stream),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Runs `cmd` with stdin closed; see the module documentation for what the deadline covers.
pub(crate) fn run(mut cmd: Command, deadline: Instant) -> Result<Finished, ProcessError> {
    imp::isolate(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ProcessError::Spawn)?;
    let guard = imp::Group::adopt(&child);
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        drain(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        drain(err, Stream::Stderr, tx);
    }
    let result = collect(&mut child, &guard, &rx, deadline);
    if result.is_err() {
        guard.kill(&mut child);
    }
    result
}

fn collect(
    child: &mut Child,
    guard: &imp::Group,
    rx: &Receiver<Event>,
    deadline: Instant,
) -> Result<Finished, ProcessError> {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut open_pipes = 2;
    let mut status = None;
    let mut linger_until = None;
    loop {
        if status.is_none() {
            status = child.try_wait().map_err(ProcessError::Wait)?;
            if status.is_some() {
                linger_until = Some((Instant::now() + LINGER).min(deadline));
            }
        }
        if let Some(status) = status
            && (open_pipes == 0 || linger_until.is_some_and(|t| Instant::now() >= t))
        {
            if open_pipes > 0 {
                // The child is gone but something it started still holds a pipe: stop it.
                guard.kill_leftovers();
                drain_for(rx, Duration::from_millis(50), &mut stdout, &mut stderr);
            }
            return Ok(Finished {
                status,
                stdout,
                stderr,
            });
        }
        if Instant::now() >= deadline {
            return Err(ProcessError::TimedOut);
        }
        match rx.recv_timeout(Duration::from_millis(5)) {
            Ok(Event::Data(Stream::Stdout, b)) => stdout.extend_from_slice(&b),
            Ok(Event::Data(Stream::Stderr, b)) => stderr.extend_from_slice(&b),
            Ok(Event::Eof) => open_pipes -= 1,
            Ok(Event::Overflow(Stream::Stdout)) => {
                return Err(ProcessError::TooMuchOutput("stdout"));
            }
            Ok(Event::Overflow(Stream::Stderr)) => {
                return Err(ProcessError::TooMuchOutput("stderr"));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open_pipes = 0,
        }
    }
}

fn drain_for(rx: &Receiver<Event>, wait: Duration, stdout: &mut Vec<u8>, stderr: &mut Vec<u8>) {
    let until = Instant::now() + wait;
    while let Ok(event) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        match event {
            Event::Data(Stream::Stdout, b) => stdout.extend_from_slice(&b),
            Event::Data(Stream::Stderr, b) => stderr.extend_from_slice(&b),
            _ => {}
        }
    }
}

/// Reads a pipe on its own thread, in chunks, up to the output limit.
fn drain(mut pipe: impl Read + Send + 'static, stream: Stream, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut total = 0;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Event::Eof);
                    return;
                }
                Ok(n) => {
                    total += n;
                    if total > OUTPUT_LIMIT {
                        let _ = tx.send(Event::Overflow(stream));
                        return;
                    }
                    if tx.send(Event::Data(stream, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Starts this program again with `args`, detached: its own session (Unix) or no console
/// (Windows), stdin, stdout and stderr on the null device, not waited for. The caller's pipes
/// (docker reads the helper's stdout to its end) are not held open by it.
pub(crate) fn spawn_detached(args: &[&str]) -> std::io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    imp::detach(&mut cmd);
    // Dropping the handle does not wait; the child is reaped by init when we exit.
    cmd.spawn().map(drop)
}

/// The first file called `name` in a directory on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(unix)]
mod imp {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    /// The child leads a new process group, so its own children can be killed with it.
    pub(super) fn isolate(cmd: &mut Command) {
        cmd.process_group(0);
    }

    /// Its own session: no terminal, not in the caller's process group.
    pub(super) fn detach(cmd: &mut Command) {
        // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// The child's process group (it leads it, see `isolate`).
    pub(super) struct Group(Option<i32>);

    impl Group {
        pub(super) fn adopt(child: &Child) -> Group {
            Group(i32::try_from(child.id()).ok())
        }

        pub(super) fn kill_leftovers(&self) {
            if let Some(pid) = self.0 {
                // SAFETY: kill has no memory-safety preconditions; a negative pid names the
                // process group the child leads (process_group(0) in `isolate`).
                unsafe {
                    libc::kill(-pid, libc::SIGKILL);
                }
            }
        }

        pub(super) fn kill(&self, child: &mut Child) {
            self.kill_leftovers();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::os::windows::process::CommandExt;
    use std::process::{Child, Command};

    /// No console window: a console program started from docker must not flash one.
    pub(super) fn isolate(cmd: &mut Command) {
        /// `CREATE_NO_WINDOW`.
        const CREATE_NO_WINDOW: u32 = 0x0800_0000;
        cmd.creation_flags(CREATE_NO_WINDOW);
    }

    /// No console, not in the caller's process group, and none of the caller's standard
    /// handles. A Windows child inherits every inheritable handle of its parent, and ours are
    /// the pipes docker made for us: a detached child holding our stdout would keep docker
    /// reading until the child exits, which is the wait detaching exists to avoid. So they stop
    /// being inheritable (this process still uses them; the child gets the null devices the
    /// command names).
    pub(super) fn detach(cmd: &mut Command) {
        use windows_sys::Win32::Foundation::{
            HANDLE_FLAG_INHERIT, INVALID_HANDLE_VALUE, SetHandleInformation,
        };
        use windows_sys::Win32::System::Console::{
            GetStdHandle, STD_ERROR_HANDLE, STD_INPUT_HANDLE, STD_OUTPUT_HANDLE,
        };
        /// `DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP`.
        const DETACHED: u32 = 0x0000_0008 | 0x0000_0200;
        cmd.creation_flags(DETACHED);
        for which in [STD_INPUT_HANDLE, STD_OUTPUT_HANDLE, STD_ERROR_HANDLE] {
            // SAFETY: GetStdHandle and SetHandleInformation take no pointers; an invalid or
            // null handle is skipped, and changing a flag of our own handle is always allowed.
            unsafe {
                let handle = GetStdHandle(which);
                if !handle.is_null() && handle != INVALID_HANDLE_VALUE {
                    SetHandleInformation(handle, HANDLE_FLAG_INHERIT, 0);
                }
            }
        }
    }

    /// Windows: the job object that holds the child and everything it starts is `crate::util::job`.
    pub(super) struct Group(Option<crate::util::job::Job>);

    impl Group {
        pub(super) fn adopt(child: &Child) -> Group {
            Group(crate::util::job::Job::assign(child))
        }

        pub(super) fn kill_leftovers(&self) {
            if let Some(job) = &self.0 {
                job.terminate();
            }
        }

        pub(super) fn kill(&self, child: &mut Child) {
            self.kill_leftovers();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn output_and_status_are_collected() {
        let done = run(
            sh("echo out; echo err >&2; exit 3"),
            Instant::now() + Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
        assert_eq!(done.status.code(), Some(3));
    }

    #[test]
    fn a_background_process_holding_stdout_does_not_hold_us() {
        let started = Instant::now();
        let done = run(
            sh("echo tok; sleep 30 & exit 0"),
            Instant::now() + Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(done.stdout, b"tok\n");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn the_deadline_stops_a_hanging_child() {
        let started = Instant::now();
        let err = run(sh("sleep 30"), Instant::now() + Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, ProcessError::TimedOut), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn too_much_output_is_reported_as_such() {
        let err = run(
            sh("head -c 3000000 /dev/zero; sleep 30"),
            Instant::now() + Duration::from_secs(20),
        )
        .unwrap_err();
        assert!(
            matches!(err, ProcessError::TooMuchOutput("stdout")),
            "{err}"
        );
    }
}
