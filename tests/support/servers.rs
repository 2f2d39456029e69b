//! Servers for the tests of both crates: private ones a test starts on a free loopback port and
//! kills by the PID it started (Redis, nginx, a password-only PostgreSQL cluster), and a password
//! account on this machine's MariaDB.
//!
//! One file, included by each test crate that needs it with
//! `#[path = "…/tests/support/servers.rs"] mod servers;` (the e2e binary from `tests/e2e/main.rs`,
//! the adapters' `tests/middleware.rs` and `tests/sql.rs`).

#![allow(
    dead_code,
    reason = "each test crate including this file uses a part of it"
)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Does something accept connections on 127.0.0.1:`port`?
pub(crate) fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// A server process this test started; killed by its PID (SIGKILL) when dropped, also when the
/// test panics.
pub(crate) struct Server {
    child: Child,
    pub(crate) port: u16,
    /// A scratch directory of the test's, removed once the server is dead.
    remove: Option<PathBuf>,
}

impl Server {
    /// Spawn `cmd` (stdout and stderr to `log`) and wait up to 15 s until it listens on `port`;
    /// fails the test, with the log, when it exits first or does not listen in time.
    pub(crate) fn start(name: &str, port: u16, log: &Path, cmd: &mut Command) -> Server {
        let out = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let mut s = Server {
            child,
            port,
            remove: None,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listening(port) {
            if let Ok(Some(st)) = s.child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("{name} exited with {st} before listening on {port}: {log}");
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port} within 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// Also remove `dir` (a scratch directory of the test's) when dropped, after the kill.
    pub(crate) fn removing(mut self, dir: PathBuf) -> Server {
        self.remove = Some(dir);
        self
    }

    /// The PID of the server this test started.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the server (by the PID this test started) and reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.remove {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A private `redis-server` on a free port (no persistence, data and log in `dir`), asking for
/// `password` if one is given.
pub(crate) fn redis(dir: &Path, password: Option<&str>) -> Server {
    let port = free_port();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .arg("--dir")
    .arg(dir);
    if let Some(pw) = password {
        cmd.args(["--requirepass", pw]);
    }
    let log = dir.join(format!("redis-{port}.log"));
    Server::start("redis-server", port, &log, &mut cmd)
}

/// The adaptest test docroot, as `scripts/services.sh` writes it (see suites/mw/http.toml):
/// `index.html`, `中文.txt` and `big.bin` (5 MiB of [`pattern`]).
pub(crate) fn write_docroot(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    std::fs::write(
        root.join("index.html"),
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head><meta charset=\"utf-8\"><title>adaptest</title></head>\n<body><p>adaptest docroot — 适配测试</p></body>\n</html>\n",
    )
    .unwrap();
    std::fs::write(root.join("中文.txt"), "中文文件名 ok\n").unwrap();
    std::fs::write(root.join("big.bin"), pattern(5 << 20)).unwrap();
}

/// `n` bytes of the repeating pattern 0-9a-zA-Z (the docroot's `big.bin`).
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    const A: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    (0..n).map(|i| A[i % A.len()]).collect()
}

/// One nginx process (no master, no daemon: the PID held is the server) on a free port,
/// serving the test docroot from `dir/www`, plus `/upload` (takes up to 16 MiB, answers
/// "uploaded") and `/hello` (answers "hello" with an `X-Adaptest: yes` header).
///
/// With `tls`, it speaks only TLS, with a certificate for 127.0.0.1 and localhost signed by a test
/// CA whose certificate is `dir/ca.pem` (all made with the openssl CLI).
pub(crate) fn nginx(dir: &Path, tls: bool) -> Server {
    let port = free_port();
    let root = dir.join("www");
    write_docroot(&root);
    let d = dir.display();
    let listen = if tls {
        // A CA, and a server certificate it signs (a self-signed CA cannot be the server's own).
        let script = "set -e\n\
            openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=adaptest-test-ca -keyout ca.key -out ca.pem\n\
            openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out server.csr\n\
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext\n\
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out cert.pem\n";
        let st = Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(st.success(), "making the test certificates");
        format!(
            "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {d}/cert.pem;\n    ssl_certificate_key {d}/key.pem;"
        )
    } else {
        format!("listen 127.0.0.1:{port};")
    };
    let conf = format!(
        "daemon off;\nmaster_process off;\nerror_log {d}/nginx-error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n  access_log off;\n\
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         server {{\n    {listen}\n    root {root};\n    keepalive_requests 1000;\n\
         location = /upload {{ client_max_body_size 16m; return 200 \"uploaded\\n\"; }}\n\
         location = /hello {{ add_header X-Adaptest yes; return 200 \"hello\\n\"; }}\n  }}\n}}\n",
        root = root.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut cmd = Command::new("nginx");
    cmd.arg("-p").arg(dir).arg("-c").arg(dir.join("nginx.conf"));
    let name = if tls { "nginx (TLS)" } else { "nginx" };
    Server::start(name, port, &dir.join("nginx.log"), &mut cmd)
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A throwaway PostgreSQL cluster that asks for passwords (this machine's server trusts every
/// local connection, so it cannot reject one): `initdb` as the `postgres` user into a scratch
/// directory, listening on a free port of 127.0.0.1; stopped (by its own `pg_ctl`) and removed
/// when dropped.
pub(crate) struct PasswordPg {
    dir: PathBuf,
    pub(crate) port: u16,
}

impl PasswordPg {
    /// A cluster whose superuser `postgres` has `password`.
    pub(crate) fn start(password: &str) -> PasswordPg {
        let dir = std::env::temp_dir().join(format!(
            "adaptest-pwpg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("pw"), password).unwrap();
        let chown = Command::new("chown")
            .arg("-R")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(chown.success());
        let data = dir.join("data").display().to_string();
        let pwfile = dir.join("pw").display().to_string();
        as_postgres(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            &data,
            "-U",
            "postgres",
            "-A",
            "scram-sha-256",
            "--pwfile",
            &pwfile,
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.display()
        );
        let log = dir.join("log").display().to_string();
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &data,
            "-o",
            &opts,
            "-l",
            &log,
            "-w",
            "start",
        ]);
        PasswordPg { dir, port }
    }
}

impl PasswordPg {
    /// `pg_ctl stop -m fast`: the server ends every session (SQLSTATE 57P01) and shuts down.
    pub(crate) fn stop_fast(&self) {
        let data = self.dir.join("data").display().to_string();
        as_postgres(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            &data,
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }
}

impl Drop for PasswordPg {
    fn drop(&mut self) {
        let data = self.dir.join("data").display().to_string();
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .args([
                &format!("{PG_BIN}/pg_ctl"),
                "-D",
                &data,
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run a command as the `postgres` user; fails the test with its stderr when it fails.
fn as_postgres(args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run SQL on this machine's MariaDB as root (database `test`); fails the test when it fails.
pub(crate) fn mariadb(sql: &str) {
    let out = Command::new("mysql")
        .args(["-h", "127.0.0.1", "-u", "root", "test", "-e", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A user of this machine's MariaDB (at `%` and `localhost`) with a password, allowed to read
/// the `test` database; dropped when dropped.
pub(crate) struct MariaUser(String);

impl MariaUser {
    pub(crate) fn create(name: &str, password: &str) -> MariaUser {
        let user = MariaUser(name.to_string());
        mariadb(&user.drop_sql());
        for host in ["%", "localhost"] {
            mariadb(&format!(
                "create user '{name}'@'{host}' identified by '{password}'"
            ));
            mariadb(&format!("grant select on test.* to '{name}'@'{host}'"));
        }
        user
    }

    fn drop_sql(&self) -> String {
        let n = &self.0;
        format!("drop user if exists '{n}'@'%', '{n}'@'localhost'")
    }
}

impl Drop for MariaUser {
    fn drop(&mut self) {
        let _ = Command::new("mysql")
            .args(["-h", "127.0.0.1", "-u", "root", "-e"])
            .arg(self.drop_sql())
            .output();
    }
}
