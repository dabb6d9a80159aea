//! systemd readiness (`Type=notify`): one datagram to `$NOTIFY_SOCKET`, written by
//! hand (the protocol is a line of text over a Unix datagram socket). Without the
//! variable (not under systemd) every call does nothing. Never fails the caller.

use std::os::unix::net::UnixDatagram;

/// The server listens and answers: `READY=1`.
pub fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// Shutdown has begun: `STOPPING=1`.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(message: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    if let Err(e) = send_to(&path, message) {
        crate::warn!("systemd notify ({message}): {e}");
    }
}

fn send_to(path: &std::ffi::OsStr, message: &str) -> std::io::Result<()> {
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    // `@name` is an abstract socket (Linux); anything else is a path.
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(message.as_bytes(), &addr)?;
    } else {
        socket.send_to(message.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_reaches_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
