//! A private PostgreSQL server on a free loopback port, for the state backend's tests: its own
//! cluster in a temporary directory, password authentication over TCP, stopped and removed
//! when dropped. As root (CI), it runs as the `postgres` user the Debian package creates.
//! [`Postgres::start_tls`] starts one that accepts TCP over TLS only, with a certificate for
//! `localhost` and `127.0.0.1` from a CA of its own ([`Postgres::ca_pem_path`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, random_hex};

/// The superuser the tests connect as.
pub const USER: &str = "scimsync";

pub struct Postgres {
    pub port: u16,
    /// The superuser's password.
    pub password: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The directory of PostgreSQL's programs (`/usr/lib/postgresql/N/bin`), the newest.
fn bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/install-peers)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL with initdb")
}

/// A command run as the `postgres` user when this process is root (initdb refuses root).
fn as_owner(program: PathBuf) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A new CA: its parameters (to sign with) and key.
fn new_ca(name: &str) -> (rcgen::CertificateParams, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    (params, rcgen::KeyPair::generate().expect("CA key"))
}

/// A self-signed CA certificate, PEM: one that signed nothing of the server's.
pub fn unrelated_ca_pem() -> String {
    let (params, key) = new_ca("scimsync test: an unrelated CA");
    params.self_signed(&key).expect("self-sign").pem()
}

/// Writes a CA and a server certificate for `localhost` and `127.0.0.1` into `dir` (ca.pem,
/// server.crt, server.key), the key readable by the server's user only, as PostgreSQL demands.
fn write_tls_files(dir: &Path) {
    let (ca_params, ca_key) = new_ca("scimsync test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let key = rcgen::KeyPair::generate().expect("server key");
    let cert = params
        .signed_by(&key, &issuer)
        .expect("sign the server's certificate");
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write server.crt");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write server.key");
    let _ = Command::new("chmod")
        .arg("600")
        .arg(dir.join("server.key"))
        .status();
    let _ = Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.join("server.crt"))
        .arg(dir.join("server.key"))
        .status();
}

impl Postgres {
    /// A server that takes password authentication over plain TCP.
    pub fn start() -> Postgres {
        Postgres::launch(false)
    }

    /// A server that takes TCP connections over TLS only (pg_hba.conf has `hostssl` lines and
    /// no `host` line), with a certificate from the CA at [`Postgres::ca_pem_path`].
    pub fn start_tls() -> Postgres {
        Postgres::launch(true)
    }

    /// The CA that signed the server's certificate (after [`Postgres::start_tls`]).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn launch(tls: bool) -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("scimsync-pg-")
            .tempdir()
            .expect("create a temporary directory");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir data");
        let password = random_hex(12);
        std::fs::write(dir.path().join("pwfile"), format!("{password}\n")).expect("pwfile");
        // The server's user must reach and own its directory.
        let _ = Command::new("chmod").arg("755").arg(dir.path()).status();
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status();
        let bin = bin_dir();
        let out = as_owner(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", dir.path().join("pwfile").display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let mut postgres = as_owner(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"]);
        if tls {
            write_tls_files(dir.path());
            // Over TCP only TLS; the harness's own psql keeps the Unix socket.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all ::1/128 scram-sha-256\n",
            )
            .expect("write pg_hba.conf");
            postgres.args(["-c", "ssl=on"]);
            for (setting, file) in [
                ("ssl_cert_file", "server.crt"),
                ("ssl_key_file", "server.key"),
            ] {
                postgres
                    .arg("-c")
                    .arg(format!("{setting}={}", dir.path().join(file).display()));
            }
        }
        let child = postgres
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres");
        let pg = Postgres {
            port,
            password,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "postgres did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        pg
    }

    /// Creates a database and returns its URL (without the password).
    pub fn database(&self, name: &str) -> String {
        self.query("postgres", &format!("CREATE DATABASE {name}"));
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL in `database` as the superuser, over the Unix socket; returns what it printed
    /// (unaligned, tuples only).
    pub fn query(&self, database: &str, sql: &str) -> String {
        let out = as_owner(bin_dir().join("psql"))
            .args(["-h", &self.dir.path().display().to_string()])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database])
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Postgres {
    /// Stops the server (a fast shutdown: every connection is closed).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGINT to the postmaster itself (runuser does not pass it on): PostgreSQL's fast
            // shutdown. Its pid is the first line of postmaster.pid.
            let pidfile = self.dir.path().join("data/postmaster.pid");
            let pid = std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.lines().next().map(str::to_owned))
                .unwrap_or_else(|| child.id().to_string());
            let _ = Command::new("kill").args(["-INT", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
