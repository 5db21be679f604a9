//! A throwaway OpenLDAP server (Debian's `slapd`) for the tests.
//!
//! [`shared`] starts one slapd per test binary on random free ports of
//! 127.0.0.1, in a temporary directory: a `slapd.conf` (mdb backend, root DN
//! with a `slappasswd` hash), a directory seeded offline with `slapadd`
//! (people, groups, a service account: see the constants), and a test CA with
//! a server certificate for `ldaps://` and StartTLS.
//!
//! slapd runs under a small `sh` guard whose standard input is a pipe held by
//! this process: when the test binary exits (or the [`Slapd`] is dropped) the
//! pipe closes, and the guard stops slapd and removes the directory. A static
//! is never dropped, so this is what cleans up after the shared server.
//!
//! If the binaries are missing and the tests run as root, the Debian packages
//! `slapd` and `ldap-utils` are installed with apt (non-interactively);
//! otherwise the tests fail saying what to install.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

pub const BASE_DN: &str = "dc=example,dc=org";
pub const PEOPLE_DN: &str = "ou=people,dc=example,dc=org";
pub const GROUPS_DN: &str = "ou=groups,dc=example,dc=org";
/// alice, bob and the odd user.
pub const USERS_GROUP: &str = "cn=fhir-users,ou=groups,dc=example,dc=org";
/// alice only.
pub const ADMINS_GROUP: &str = "cn=fhir-admins,ou=groups,dc=example,dc=org";
/// A groupOfUniqueNames (`uniqueMember`) holding bob only.
pub const AUDITORS_GROUP: &str = "cn=fhir-auditors,ou=groups,dc=example,dc=org";
pub const TEMPLATE: &str = "uid={user},ou=people,dc=example,dc=org";

pub const SERVICE_DN: &str = "cn=hearth-service,dc=example,dc=org";
pub const SERVICE_PASSWORD: &str = "service-Secret-1";

pub const ALICE_PASSWORD: &str = "alice-Secret-1";
pub const BOB_PASSWORD: &str = "bob-Secret-2";
/// carol is in no group.
pub const CAROL_PASSWORD: &str = "carol-Secret-3";
/// bob and carol share this `description`: a filter on it finds two entries.
pub const SHARED_DESCRIPTION: &str = "night-shift";

/// A `uid` holding every character special to a DN or a filter, with the
/// leading `#`; a member of fhir-users.
pub const ODD_USER: &str = "#o'brien, (ops)*+=;<>\"\\x";
pub const ODD_PASSWORD: &str = "odd-Secret-4";
/// Its DN, escaped by hand (RFC 4514).
const ODD_DN: &str = "uid=\\#o'brien\\, (ops)*\\+\\=\\;\\<\\>\\\"\\\\x,ou=people,dc=example,dc=org";

const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PASSWORD: &str = "root-Secret-0";

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running slapd.
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT` (plain; StartTLS is offered).
    pub ldap_url: String,
    /// `ldaps://127.0.0.1:PORT`; slapd also listens on 127.0.0.2 at this
    /// port, a name its certificate does not hold.
    pub ldaps_url: String,
    /// The CA that signed the server certificate (PEM).
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the server presents (PEM).
    pub untrusted_ca_file: PathBuf,
    /// Closing it stops slapd (see the module docs).
    guard_stdin: Option<ChildStdin>,
    guard: Child,
}

/// The slapd shared by every test of this binary, started on first use.
pub fn shared() -> &'static Slapd {
    static SLAPD: OnceLock<Slapd> = OnceLock::new();
    SLAPD.get_or_init(Slapd::start)
}

impl Drop for Slapd {
    fn drop(&mut self) {
        drop(self.guard_stdin.take());
        let _ = self.guard.wait();
    }
}

struct Tools {
    slapd: PathBuf,
    slapadd: PathBuf,
    slappasswd: PathBuf,
}

impl Slapd {
    pub fn start() -> Slapd {
        let tools = tools();
        let dir = tempfile::Builder::new()
            .prefix("hearth-slapd-")
            .tempdir()
            .unwrap()
            // The guard removes it when slapd stops (a static is never dropped).
            .keep();
        std::fs::create_dir(dir.join("db")).unwrap();

        let (ca_file, untrusted_ca_file) = write_pki(&dir);
        let conf = dir.join("slapd.conf");
        std::fs::write(&conf, slapd_conf(&dir, &hash(&tools, ROOT_PASSWORD))).unwrap();
        let seed = dir.join("seed.ldif");
        std::fs::write(&seed, seed_ldif(&tools)).unwrap();
        run(Command::new(&tools.slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed));

        let (ldap_port, ldaps_port) = free_ports();
        let ldap_url = format!("ldap://127.0.0.1:{ldap_port}");
        let ldaps_url = format!("ldaps://127.0.0.1:{ldaps_port}");
        let log = dir.join("slapd.log");
        let mut guard = Command::new("sh")
            .arg("-c")
            .arg(GUARD_SCRIPT)
            .env("SLAPD", &tools.slapd)
            // 127.0.0.2 (loopback too, on Linux) is not in the certificate.
            .env(
                "SLAPD_URLS",
                format!("{ldap_url}/ {ldaps_url}/ ldaps://127.0.0.2:{ldaps_port}/"),
            )
            .env("SLAPD_CONF", &conf)
            .env("SLAPD_LOG", &log)
            .env("SLAPD_DIR", &dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let guard_stdin = guard.stdin.take();
        let slapd = Slapd {
            ldap_url,
            ldaps_url,
            ca_file,
            untrusted_ca_file,
            guard_stdin,
            guard,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        for port in [ldap_port, ldaps_port] {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(&log).unwrap_or_default();
                    panic!(
                        "slapd did not listen on {addr} within {START_TIMEOUT:?}; its log:\n{log}"
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        slapd
    }
}

/// Starts slapd in the foreground (`-d 0`), waits for end of input, then
/// stops slapd and removes its directory.
const GUARD_SCRIPT: &str = r#"
"$SLAPD" -h "$SLAPD_URLS" -f "$SLAPD_CONF" -d 0 </dev/null >>"$SLAPD_LOG" 2>&1 &
pid=$!
cat >/dev/null
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$SLAPD_DIR"
"#;

/// slapd and its tools: Debian puts them in /usr/sbin, which is often not on
/// a user's PATH.
fn tools() -> Tools {
    if let Some(tools) = find_tools() {
        return tools;
    }
    if is_root() {
        eprintln!("slapd not found: installing the Debian packages slapd and ldap-utils");
        let install = || {
            Command::new("apt-get")
                .args([
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "slapd",
                    "ldap-utils",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        if !install() {
            let _ = Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
            install();
        }
        // The package may have started a system slapd on port 389; these
        // tests use their own instance and ports, so it does not matter.
    }
    find_tools().unwrap_or_else(|| {
        panic!(
            "the LDAP tests need OpenLDAP's slapd, slapadd and slappasswd (not found in \
             /usr/sbin, /usr/local/sbin, /usr/local/libexec or PATH); install them with \
             `sudo DEBIAN_FRONTEND=noninteractive apt-get install -y slapd ldap-utils`"
        )
    })
}

fn find_tools() -> Option<Tools> {
    Some(Tools {
        slapd: find("slapd")?,
        slapadd: find("slapadd")?,
        slappasswd: find("slappasswd")?,
    })
}

fn find(name: &str) -> Option<PathBuf> {
    let fixed = [
        "/usr/sbin",
        "/usr/local/sbin",
        "/usr/local/libexec",
        "/usr/libexec",
    ];
    let path = std::env::var_os("PATH").unwrap_or_default();
    fixed
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn run(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `{SSHA}` hash of `password` made by slappasswd.
fn hash(tools: &Tools, password: &str) -> String {
    let out = Command::new(&tools.slappasswd)
        .args(["-s", password])
        .output()
        .unwrap();
    assert!(out.status.success(), "slappasswd failed");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Two ports nothing listens on right now (held together so they differ).
fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn slapd_conf(dir: &Path, root_hash: &str) -> String {
    let schema = first_existing(&["/etc/ldap/schema", "/etc/openldap/schema"])
        .expect("no OpenLDAP schema directory (/etc/ldap/schema)");
    // Debian builds the backends as modules; other builds may link mdb in.
    let modules = first_existing(&["/usr/lib/ldap", "/usr/lib64/openldap", "/usr/lib/openldap"])
        .filter(|m| m.join("back_mdb.la").exists() || m.join("back_mdb.so").exists())
        .map(|m| format!("modulepath \"{}\"\nmoduleload back_mdb\n", m.display()))
        .unwrap_or_default();
    let d = dir.display();
    let s = schema.display();
    format!(
        r#"include "{s}/core.schema"
include "{s}/cosine.schema"
include "{s}/inetorgperson.schema"
pidfile "{d}/slapd.pid"
argsfile "{d}/slapd.args"
{modules}
TLSCACertificateFile "{d}/ca.pem"
TLSCertificateFile "{d}/server.crt"
TLSCertificateKeyFile "{d}/server.key"

database mdb
maxsize 16777216
suffix "{BASE_DN}"
rootdn "{ROOT_DN}"
rootpw {root_hash}
directory "{d}/db"

access to attrs=userPassword
    by self write
    by anonymous auth
    by * none
access to *
    by users read
    by * none
"#
    )
}

fn seed_ldif(tools: &Tools) -> String {
    let mut ldif = String::new();
    let mut entry = |text: String| {
        ldif.push_str(&text);
        ldif.push('\n');
    };
    entry(format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n"
    ));
    entry(format!(
        "dn: {PEOPLE_DN}\nobjectClass: organizationalUnit\nou: people\n"
    ));
    entry(format!(
        "dn: {GROUPS_DN}\nobjectClass: organizationalUnit\nou: groups\n"
    ));
    entry(format!(
        "dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
         cn: hearth-service\nuserPassword: {}\n",
        hash(tools, SERVICE_PASSWORD)
    ));
    let person = |uid: &str, dn: &str, password: &str, extra: &str| {
        format!(
            "dn: {dn}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}\n\
             userPassword: {}\n{extra}",
            hash(tools, password)
        )
    };
    entry(person(
        "alice",
        &format!("uid=alice,{PEOPLE_DN}"),
        ALICE_PASSWORD,
        "",
    ));
    let shared = format!("description: {SHARED_DESCRIPTION}\n");
    entry(person(
        "bob",
        &format!("uid=bob,{PEOPLE_DN}"),
        BOB_PASSWORD,
        &shared,
    ));
    entry(person(
        "carol",
        &format!("uid=carol,{PEOPLE_DN}"),
        CAROL_PASSWORD,
        &shared,
    ));
    entry(person(ODD_USER, ODD_DN, ODD_PASSWORD, ""));
    entry(format!(
        "dn: {USERS_GROUP}\nobjectClass: groupOfNames\ncn: fhir-users\n\
         member: uid=alice,{PEOPLE_DN}\nmember: uid=bob,{PEOPLE_DN}\nmember: {ODD_DN}\n"
    ));
    entry(format!(
        "dn: {ADMINS_GROUP}\nobjectClass: groupOfNames\ncn: fhir-admins\n\
         member: uid=alice,{PEOPLE_DN}\n"
    ));
    entry(format!(
        "dn: {AUDITORS_GROUP}\nobjectClass: groupOfUniqueNames\ncn: fhir-auditors\n\
         uniqueMember: uid=bob,{PEOPLE_DN}\n"
    ));
    ldif
}

/// Writes the test CA (`ca.pem`), the server certificate for 127.0.0.1 and
/// localhost signed by it (`server.crt`, `server.key`), and an unrelated CA
/// (`untrusted-ca.pem`). Returns the two CA files.
fn write_pki(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), Issuer::new(params, key))
    };
    let (ca_pem, issuer) = ca("Hearth LDAP test CA");
    let (untrusted_pem, _) = ca("Hearth LDAP untrusted CA");
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(text.as_bytes()).unwrap();
        path
    };
    write("server.crt", &cert.pem());
    write("server.key", &key.serialize_pem());
    (
        write("ca.pem", &ca_pem),
        write("untrusted-ca.pem", &untrusted_pem),
    )
}
