//! The docker-credential-gcp program; everything is in the library (`src/lib.rs`).
//!
//! On Linux the program skips std's runtime start-up (`#![no_main]` and a C `main`). That
//! start-up reads /proc/self/maps to find the main thread's stack guard, installs an alternate
//! signal stack and SIGSEGV/SIGBUS handlers that print "stack overflow" before aborting, and
//! checks that fds 0-2 are open. A cached `get` is a handful of syscalls, so that work was a
//! measurable part of it (BENCHMARKS.md, "start-up steps"). What matters of it is kept here:
//! SIGPIPE is ignored (a closed pipe is an error we report, not a silent kill) and closed
//! standard fds are reopened on /dev/null (so no file we open lands on fd 1 and receives a
//! token meant for stdout). A stack overflow still cannot run past the kernel's guard gap; it
//! ends in SIGSEGV without the message. Other platforms keep std's start-up.

#![cfg_attr(target_os = "linux", no_main)]

use std::process::ExitCode;

#[cfg(not(target_os = "linux"))]
fn main() -> ExitCode {
    docker_credential_gcp::run()
}

#[cfg(target_os = "linux")]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: called once, before any other thread exists; both only change this process's
    // signal disposition and file descriptor table.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        reopen_closed_stdio();
    }
    // std reads the arguments glibc passes to its .init_array functions, so `env::args` works
    // without std's `main`.
    let code = docker_credential_gcp::run();
    // std's runtime would flush stdout after `main`; every command flushes its own answer,
    // and this catches anything left in the buffer.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    status(code)
}

/// Opens /dev/null on each of fds 0-2 that is closed, as std's start-up does.
///
/// # Safety
/// Must run before anything else opens files (single-threaded start-up).
#[cfg(target_os = "linux")]
unsafe fn reopen_closed_stdio() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a valid array of three pollfd; a zero timeout does not block.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for pfd in fds {
        if pfd.revents & libc::POLLNVAL != 0 {
            let flags = if pfd.fd == 0 {
                libc::O_RDONLY
            } else {
                libc::O_RDWR
            };
            // SAFETY: a NUL-terminated path; the lowest free fd (the closed one) is used.
            unsafe { libc::open(c"/dev/null".as_ptr(), flags) };
        }
    }
}

/// The numeric exit status of `code` (the program only uses 0, 1 and 2).
#[cfg(target_os = "linux")]
fn status(code: ExitCode) -> libc::c_int {
    (0..=255u8)
        .find(|c| ExitCode::from(*c) == code)
        .map_or(1, libc::c_int::from)
}
