//! Certificates for the tests of the API over TCP with mutual TLS, made with
//! `openssl`: throwaway CAs, and server and client certificates they sign.

use std::path::Path;
use std::process::Command;

/// True when `openssl` can be run.
pub fn have_openssl() -> bool {
    Command::new("openssl").arg("version").output().is_ok()
}

/// Runs `openssl ARGS...` in `dir`; panics if it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key `name.key` and a certificate `name.pem` that CA `ca` signs for `cn`
/// (with the names `localhost` and 127.0.0.1) and extended key usage `eku`.
pub fn issue(dir: &Path, ca: &str, name: &str, cn: &str, eku: &str) {
    let ext = format!("{name}.ext");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
}

/// A self-signed CA: `ca.key` and `ca.pem` in `dir`.
pub fn make_ca(dir: &Path, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{ca}.key"),
            "-out",
            &format!("{ca}.pem"),
            "-days",
            "1",
            "-subj",
            &format!("/CN={ca}"),
        ],
    );
}
