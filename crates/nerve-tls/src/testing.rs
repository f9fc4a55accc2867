//! A throwaway public key infrastructure for tests: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, and client certificates, made with the `openssl` command as an operator would.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{ClientAuth, TlsSettings};

/// PEM files in one directory.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestPki {
    /// Makes the CA and the server certificate under `dir`. Panics if `openssl` fails: a test cannot go on.
    pub fn generate(dir: &Path) -> TestPki {
        let ca_cert = dir.join("ca.pem");
        let ca_key = dir.join("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3650",
            "-subj",
            "/CN=Nerve Test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            s(&ca_key),
            "-out",
            s(&ca_cert),
        ]);
        let pki = TestPki {
            dir: dir.to_path_buf(),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            ca_cert,
            ca_key,
        };
        pki.sign(
            "server",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki
    }

    /// Makes a client certificate with `subject` (openssl's `/O=Acme/CN=alice` form); returns the
    /// certificate and key files.
    pub fn client(&self, name: &str, subject: &str) -> (PathBuf, PathBuf) {
        self.sign(name, subject, "extendedKeyUsage=clientAuth\n")
    }

    /// TLS settings for the server certificate.
    pub fn settings(&self, client_auth: ClientAuth) -> TlsSettings {
        TlsSettings {
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            ca_file: Some(self.ca_cert.clone()),
            client_auth,
        }
    }

    fn sign(&self, name: &str, subject: &str, extensions: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{extensions}"))
            .expect("extensions file written");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            subject,
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&csr),
            "-CA",
            s(&self.ca_cert),
            "-CAkey",
            s(&self.ca_key),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            s(&ext),
            "-out",
            s(&cert),
        ]);
        (cert, key)
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
