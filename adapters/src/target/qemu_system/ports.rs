//! Ports into a guest: the `hostfwd` rules QEMU set up at launch and readiness (the guest's
//! sshd greeting through its forward), and forwards added at run time over QMP.

use super::process::Qemu;
use super::qmp::{self, Qmp};
use crate::text::error_chain;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Wait until the guest's sshd answers through its forwarded port; returns the `hostfwd` map.
pub(super) async fn wait_ready(
    qemu: &Qemu,
    ssh_port: u16,
    deadline: Instant,
) -> Result<HashMap<u16, u16>, String> {
    let remaining = || deadline.saturating_duration_since(Instant::now());
    let mut qmp = tokio::select! {
        q = Qmp::connect(&qemu.qmp, remaining().min(Duration::from_secs(30))) => q.map_err(|e| error_chain(&e))?,
        exit = qemu.ended() => return Err(format!("QEMU {exit} while starting")),
    };
    let usernet = qmp.hmp("info usernet").await.map_err(|e| error_chain(&e))?;
    drop(qmp);
    let hostfwd: HashMap<u16, u16> = qmp::parse_hostfwd(&usernet).into_iter().collect();
    let Some(&port) = hostfwd.get(&ssh_port) else {
        return Err(format!(
            "QEMU set up no forward for guest port {ssh_port}:\n{usernet}"
        ));
    };
    loop {
        if let Some(exit) = qemu.exited() {
            return Err(format!("QEMU {exit} before the guest's sshd answered"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the guest's sshd did not answer on 127.0.0.1:{port} within the boot timeout"
            ));
        }
        if ssh_banner(port).await {
            return Ok(hostfwd);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Does an SSH server greet on 127.0.0.1:`port`? (QEMU's user network accepts the connection
/// itself and closes it when nothing listens in the guest.)
async fn ssh_banner(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let mut buf = [0u8; 64];
        let mut got = 0;
        while got < 4 {
            let n = s.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                return None;
            }
            got += n;
        }
        Some(buf.starts_with(b"SSH-"))
    };
    tokio::time::timeout(Duration::from_secs(3), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// `hostfwd_add` from an ephemeral port on 127.0.0.1 to guest `port`; returns the host port.
pub(super) async fn add_hostfwd(qemu: &Qemu, port: u16) -> Option<u16> {
    let mut q = Qmp::connect(&qemu.qmp, Duration::from_secs(5)).await.ok()?;
    let before: Vec<(u16, u16)> = qmp::parse_hostfwd(&q.hmp("info usernet").await.ok()?);
    let out = q
        .hmp(&format!(
            "hostfwd_add net0 tcp:127.0.0.1:0-10.0.2.15:{port}"
        ))
        .await
        .ok()?;
    if !out.trim().is_empty() {
        tracing::debug!("hostfwd_add for guest port {port}: {}", out.trim());
        return None;
    }
    let after = qmp::parse_hostfwd(&q.hmp("info usernet").await.ok()?);
    after
        .into_iter()
        .find(|(g, h)| *g == port && !before.iter().any(|(_, bh)| bh == h))
        .map(|(_, h)| h)
}

pub(super) async fn remove_hostfwd(qemu: &Qemu, host: u16) {
    if let Ok(mut q) = Qmp::connect(&qemu.qmp, Duration::from_secs(5)).await {
        let _ = q
            .hmp(&format!("hostfwd_remove net0 tcp:127.0.0.1:{host}"))
            .await;
    }
}

/// Does a service answer behind a `hostfwd` port? QEMU accepts on the host side and closes at
/// once when the guest refuses; a listening service keeps the connection open (or greets).
pub(super) async fn reachable(host: u16) -> bool {
    let Ok(Ok(mut s)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", host)),
    )
    .await
    else {
        return false;
    };
    let mut buf = [0u8; 1];
    match tokio::time::timeout(Duration::from_millis(700), s.read(&mut buf)).await {
        Err(_) => true,
        Ok(Ok(n)) => n > 0,
        Ok(Err(_)) => false,
    }
}
