//! A private OpenLDAP `slapd` on a free loopback port (PEERS.md): its own cn=config, one mdb
//! database for `dc=example,dc=org`, and a service account limited to 500 entries per search,
//! as many production servers are.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, random_hex};

/// The suffix of the test directory.
pub const SUFFIX: &str = "dc=example,dc=org";
/// The service account scimsync binds as; searches over 500 entries need paging.
pub const SERVICE_DN: &str = "cn=scimsync,ou=services,dc=example,dc=org";
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";

/// A running slapd; stopped (SIGTERM by pid) and removed when dropped.
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    /// `ldaps://127.0.0.1:PORT/`, with [`Slapd::start_tls`].
    pub ldaps_url: Option<String>,
    /// The PEM of the CA that signed the server certificate (for `127.0.0.1`), with
    /// [`Slapd::start_tls`].
    pub ca_file: Option<PathBuf>,
    /// The service account's password.
    pub service_password: String,
    root_password: String,
    dir: tempfile::TempDir,
    pid: Option<u32>,
}

impl Slapd {
    /// Starts a slapd holding the base entries (`ou=People`, `ou=Groups`, `ou=services` and
    /// the service account) plus `ldif`, which is loaded with `slapadd` before the start (much
    /// faster than `ldapadd`). slapadd adds `entryUUID` and the other operational attributes.
    pub fn start(ldif: &str) -> Slapd {
        Slapd::start_with(ldif, false)
    }

    /// Like [`Slapd::start`], with TLS: a fresh CA and a certificate for `127.0.0.1`, made
    /// with the `openssl` command; StartTLS on `url`, and `ldaps_url` besides.
    pub fn start_tls(ldif: &str) -> Slapd {
        Slapd::start_with(ldif, true)
    }

    fn start_with(ldif: &str, tls: bool) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("scimsync-slapd-")
            .tempdir()
            .expect("create a temporary directory");
        let root_password = random_hex(12);
        let service_password = random_hex(12);
        let d = dir.path();
        std::fs::create_dir_all(d.join("slapd.d")).expect("mkdir slapd.d");
        std::fs::create_dir_all(d.join("data")).expect("mkdir data");
        if tls {
            make_certificates(d);
        }
        std::fs::write(d.join("config.ldif"), config_ldif(d, &root_password, tls))
            .expect("write config");
        run(Command::new(sbin("slapadd"))
            .args(["-n", "0", "-F"])
            .arg(d.join("slapd.d"))
            .arg("-l")
            .arg(d.join("config.ldif")));
        let data = format!("{}\n{ldif}", base_ldif(&service_password));
        std::fs::write(d.join("data.ldif"), data).expect("write data");
        run(Command::new(sbin("slapadd"))
            .args(["-q", "-n", "1", "-F"])
            .arg(d.join("slapd.d"))
            .arg("-l")
            .arg(d.join("data.ldif")));

        let mut slapd = Slapd {
            url: String::new(),
            port: 0,
            ldaps_url: None,
            ca_file: tls.then(|| d.join("ca.pem")),
            service_password,
            root_password,
            dir,
            pid: None,
        };
        // A port taken between free_port() and slapd's bind makes slapd exit: try another.
        for _ in 0..5 {
            let port = free_port();
            let url = format!("ldap://127.0.0.1:{port}/");
            let ldaps = format!("ldaps://127.0.0.1:{}/", free_port());
            let listen = if tls {
                format!("{url} {ldaps}")
            } else {
                url.clone()
            };
            let status = Command::new(sbin("slapd"))
                .arg("-F")
                .arg(slapd.dir.path().join("slapd.d"))
                .args(["-h", &listen])
                .stdin(Stdio::null())
                .status()
                .expect("run slapd");
            if !status.success() {
                continue;
            }
            slapd.url = url;
            slapd.port = port;
            slapd.ldaps_url = tls.then_some(ldaps);
            slapd.pid = Some(slapd.wait_for_pid());
            slapd.wait_until_ready();
            return slapd;
        }
        panic!("slapd did not start on any of 5 free ports");
    }

    fn wait_for_pid(&self) -> u32 {
        let path = self.dir.path().join("slapd.pid");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "slapd wrote no pid file {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("ldapsearch")
                .args([
                    "-x",
                    "-H",
                    &self.url,
                    "-b",
                    "",
                    "-s",
                    "base",
                    "-o",
                    "nettimeout=2",
                ])
                .output()
                .expect("run ldapsearch");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd at {} is not answering: {}",
                self.url,
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory slapd runs in (its config, data and pid file).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ldapsearch -x` as the service account, with `args` after the bind options; returns
    /// the exit code and the output.
    pub fn search_as_service(&self, args: &[&str]) -> Output {
        Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url,
                "-D",
                SERVICE_DN,
                "-w",
                &self.service_password,
            ])
            .args(args)
            .output()
            .expect("run ldapsearch")
    }

    /// Applies LDIF changes (`changetype: add/modify/delete`) as the root DN.
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).expect("write change.ldif");
        run(Command::new("ldapmodify")
            .args([
                "-x",
                "-H",
                &self.url,
                "-D",
                ROOT_DN,
                "-w",
                &self.root_password,
                "-f",
            ])
            .arg(&path));
    }

    /// Stops slapd (SIGTERM) and waits until it is gone; the port is then refused.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid.take() else { return };
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// slapd and slapadd are in /usr/sbin, which is not always on a test's PATH.
fn sbin(name: &str) -> PathBuf {
    let p = Path::new("/usr/sbin").join(name);
    if p.exists() {
        p
    } else {
        PathBuf::from(name)
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("run {cmd:?}: {e} (is slapd installed? scripts/install-peers installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 (EC P-256, valid two days).
fn make_certificates(d: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").args(args).current_dir(d));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=scimsync test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}

fn config_ldif(dir: &Path, root_password: &str, tls: bool) -> String {
    let d = dir.display();
    let tls = if tls {
        format!("olcTLSCACertificateFile: {d}/ca.pem\nolcTLSCertificateFile: {d}/server.pem\nolcTLSCertificateKeyFile: {d}/server.key\n")
    } else {
        String::new()
    };
    format!(
        r#"dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcArgsFile: {d}/slapd.args
{tls}
dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: back_mdb

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: size.soft=500 size.hard=500 size.pr=500 size.prtotal=unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {d}/data
olcSuffix: {SUFFIX}
olcRootDN: {ROOT_DN}
olcRootPW: {root_password}
olcDbNoSync: TRUE
olcDbMaxSize: 1073741824
olcDbIndex: objectClass eq
olcDbIndex: entryUUID eq
olcDbIndex: uid,mail eq
olcLimits: {{0}}dn.exact="{SERVICE_DN}" size.soft=500 size.hard=500 size.pr=500 size.prtotal=unlimited
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to * by * read
"#
    )
}

fn base_ldif(service_password: &str) -> String {
    format!(
        r#"dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=People,{SUFFIX}
objectClass: organizationalUnit
ou: People

dn: ou=Groups,{SUFFIX}
objectClass: organizationalUnit
ou: Groups

dn: ou=services,{SUFFIX}
objectClass: organizationalUnit
ou: services

dn: {SERVICE_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: scimsync
userPassword: {service_password}
"#
    )
}
