//! A private D-Bus session bus with an unlocked gnome-keyring on it: the headless Secret
//! Service the tests (`SecretService` in support/mod.rs) and the benchmarks (benches/helper.rs
//! includes this file by path) run the helper against. Standard library only.

use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// dbus-daemon and gnome-keyring-daemon for one HOME, both killed when this is dropped.
pub(crate) struct Session {
    /// The bus address, for `DBUS_SESSION_BUS_ADDRESS`.
    pub(crate) address: String,
    children: Vec<Child>,
}

impl Session {
    /// Starts the bus, then gnome-keyring on it for `home`, unlocked with `password`, and
    /// returns once the keyring has announced itself (its collection may need a moment more).
    pub(crate) fn launch(home: &Path, password: &[u8]) -> io::Result<Session> {
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let printed = first_line(dbus.stdout.take());
        let mut session = Session {
            address: printed.trim().to_owned(),
            children: vec![dbus],
        };
        if !session.address.starts_with("unix:") {
            return Err(io::Error::other(format!("dbus-daemon printed {printed:?}")));
        }
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("HOME", home)
            .env("DBUS_SESSION_BUS_ADDRESS", &session.address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let unlocked = keyring
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(password));
        let ready = first_line(keyring.stdout.take());
        session.children.insert(0, keyring);
        unlocked.transpose()?;
        if !ready.starts_with("GNOME_KEYRING_CONTROL=") {
            return Err(io::Error::other(format!("gnome-keyring printed {ready:?}")));
        }
        Ok(session)
    }
}

impl Session {
    /// gnome-keyring's process id (tests stop it to play a hung keyring).
    #[allow(dead_code)] // the benchmarks never stop it
    pub(crate) fn keyring_pid(&self) -> u32 {
        self.children[0].id()
    }
}

fn first_line(pipe: Option<impl io::Read>) -> String {
    let mut line = String::new();
    if let Some(pipe) = pipe {
        let _ = BufReader::new(pipe).read_line(&mut line);
    }
    line
}

impl Drop for Session {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
