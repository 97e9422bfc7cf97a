//! Reading a string value from the Windows registry (the machine's product name, which says
//! whether this is a Google Compute Engine VM, as Google's client libraries read it). Off
//! Windows there is no registry, and every value is absent.

/// `HKEY_LOCAL_MACHINE\key`'s string `value`, or `None` if it is missing or not a string.
pub(crate) fn local_machine_string(key: &str, value: &str) -> Option<String> {
    imp::local_machine_string(key, value)
}

#[cfg(windows)]
mod imp {
    use windows_sys::Win32::System::Registry::{HKEY_LOCAL_MACHINE, RRF_RT_REG_SZ, RegGetValueW};

    pub(super) fn local_machine_string(key: &str, value: &str) -> Option<String> {
        let wide = |s: &str| s.encode_utf16().chain(Some(0)).collect::<Vec<u16>>();
        let (key, value) = (wide(key), wide(value));
        let mut buf = [0u16; 256];
        let mut bytes = (buf.len() * 2) as u32;
        // SAFETY: key and value are NUL-terminated UTF-16; buf is writable for `bytes` bytes, and
        // RegGetValueW NUL-terminates string data it returns.
        let rc = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                std::ptr::null_mut(),
                buf.as_mut_ptr().cast(),
                &mut bytes,
            )
        };
        if rc != 0 {
            return None;
        }
        let chars = (bytes as usize / 2).saturating_sub(1).min(buf.len());
        Some(String::from_utf16_lossy(&buf[..chars]))
    }
}

#[cfg(not(windows))]
mod imp {
    pub(super) fn local_machine_string(_key: &str, _value: &str) -> Option<String> {
        None
    }
}
