//! `gateway certs ...`: issues the district's certificates with rcgen: the CA (`init-ca`), the
//! broker's server certificate (`server`) and one client certificate per edge box (`box`), as
//! PEM files that `[broker.tls]` and an edge agent's `[mqtt.tls]` use as they are. A box
//! certificate's Organization is the box's tenant id ([`crate::broker::tenants::tenant_of_box`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::broker::tenants::tenant_of_box;

/// Common name of every district CA this command makes (the CA's own key tells districts apart).
const CA_NAME: &str = "heating gateway CA";

/// File names inside the folders.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";
pub const BOX_CERT: &str = "box.pem";
pub const BOX_KEY: &str = "box.key";

/// Why a certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path} already exists; certificates are never overwritten: remove it or choose another --out folder")]
    Exists { path: String },
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub files: Vec<PathBuf>,
    /// The tenant id (box certificates only).
    pub tenant: Option<String>,
}

fn file_error(path: &Path, error: impl std::fmt::Display) -> CertError {
    CertError::File {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|e| file_error(path, format!("cannot be read: {e}")))
}

/// Writes every file or none: refuses when any exists; keys are created with mode 0600.
fn write_all(files: &[(PathBuf, String, bool)]) -> Result<(), CertError> {
    for (path, _, _) in files {
        if path.exists() {
            return Err(CertError::Exists {
                path: path.display().to_string(),
            });
        }
    }
    for (path, contents, secret) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| file_error(parent, format!("cannot be created: {e}")))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(if *secret { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = secret;
        use std::io::Write as _;
        options
            .open(path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .map_err(|e| file_error(path, format!("cannot be written: {e}")))?;
    }
    Ok(())
}

fn validity(params: &mut CertificateParams, days: u32) -> Result<(), CertError> {
    if days == 0 {
        return Err(CertError::Invalid("--days must be at least 1".into()));
    }
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for boxes whose clock is a little behind.
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
    Ok(())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = name;
    params
}

/// `gateway certs init-ca`: a new CA key and self-signed certificate in `out`.
pub fn init_ca(out: &Path, days: u32) -> Result<Issued, CertError> {
    let key = KeyPair::generate()?;
    let mut params = ca_params();
    validity(&mut params, days)?;
    let cert = params.self_signed(&key)?;
    let files = vec![
        (out.join(CA_CERT), cert.pem(), false),
        (out.join(CA_KEY), key.serialize_pem(), true),
    ];
    write_all(&files)?;
    Ok(Issued {
        files: files.into_iter().map(|(path, _, _)| path).collect(),
        tenant: None,
    })
}

/// The CA of folder `ca` as an issuer: its key, and its certificate rebuilt from the key (the
/// same subject and key identifier as `ca.pem`, which is checked to hold that key).
struct Issuer {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

fn load_ca(ca: &Path) -> Result<Issuer, CertError> {
    let key_path = ca.join(CA_KEY);
    let cert_path = ca.join(CA_CERT);
    let key = KeyPair::from_pem(&read(&key_path)?)
        .map_err(|e| file_error(&key_path, format!("is not a PEM private key: {e}")))?;
    let pem = read(&cert_path)?;
    let der = rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or_else(|| file_error(&cert_path, "holds no PEM certificate"))?
        .map_err(|e| file_error(&cert_path, format!("is not PEM: {e}")))?;
    let public = key.public_key_der();
    if !der.windows(public.len()).any(|w| w == public.as_slice()) {
        return Err(file_error(
            &cert_path,
            format!("is not the certificate of the key {}", key_path.display()),
        ));
    }
    let cert = ca_params().self_signed(&key)?;
    Ok(Issuer { cert, key, pem })
}

/// `gateway certs server`: the broker's certificate for `hosts` (DNS names or IP addresses
/// the boxes connect to), signed by the CA in `ca`.
pub fn server(ca: &Path, hosts: &[String], out: &Path, days: u32) -> Result<Issued, CertError> {
    if hosts.is_empty() {
        return Err(CertError::Invalid(
            "at least one --host is needed (the name or address boxes connect to)".into(),
        ));
    }
    let issuer = load_ca(ca)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days)?;
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key)?;
    let files = vec![
        (out.join(SERVER_CERT), cert.pem(), false),
        (out.join(SERVER_KEY), key.serialize_pem(), true),
    ];
    write_all(&files)?;
    Ok(Issued {
        files: files.into_iter().map(|(path, _, _)| path).collect(),
        tenant: None,
    })
}

/// `gateway certs box`: the client certificate of edge box `box_id` (its `agent_id`, the
/// household's `edge_box` in the registry), signed by the CA in `ca`, with a copy of the CA
/// certificate, all in `out`.
pub fn edge_box(ca: &Path, box_id: &str, out: &Path, days: u32) -> Result<Issued, CertError> {
    wire::DeviceId::parse(box_id)
        .map_err(|e| CertError::Invalid(format!("--box {box_id:?}: {e}")))?;
    let issuer = load_ca(ca)?;
    let tenant = tenant_of_box(box_id);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, box_id);
    // rumqttd takes the tenant id from the first Organization of the subject.
    params
        .distinguished_name
        .push(DnType::OrganizationName, tenant.as_str());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days)?;
    let cert = params.signed_by(&key, &issuer.cert, &issuer.key)?;
    let files = vec![
        (out.join(BOX_CERT), cert.pem(), false),
        (out.join(BOX_KEY), key.serialize_pem(), true),
        (out.join(CA_CERT), issuer.pem.clone(), false),
    ];
    write_all(&files)?;
    Ok(Issued {
        files: files.into_iter().map(|(path, _, _)| path).collect(),
        tenant: Some(tenant),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gateway-certs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_box_certificate_carries_its_tenant_and_files_are_never_overwritten() {
        let dir = scratch("box");
        init_ca(&dir.join("ca"), 30).expect("ca");
        assert!(matches!(
            init_ca(&dir.join("ca"), 30),
            Err(CertError::Exists { .. })
        ));
        let issued = edge_box(&dir.join("ca"), "box-0001", &dir.join("box"), 30).expect("box");
        assert_eq!(issued.tenant.as_deref(), Some("boxX0001"));
        let pem = std::fs::read_to_string(dir.join("box").join(BOX_CERT)).expect("written");
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one")
            .expect("pem");
        assert!(der.windows(8).any(|w| w == b"boxX0001"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("box").join(BOX_KEY))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(matches!(
            edge_box(&dir.join("ca"), "Box 1", &dir.join("other"), 30),
            Err(CertError::Invalid(_))
        ));
        server(
            &dir.join("ca"),
            &["127.0.0.1".into()],
            &dir.join("server"),
            30,
        )
        .expect("server");
        assert!(matches!(
            server(&dir.join("ca"), &[], &dir.join("server2"), 30),
            Err(CertError::Invalid(_))
        ));
    }

    #[test]
    fn a_ca_folder_whose_key_does_not_match_its_certificate_is_refused() {
        let dir = scratch("mismatch");
        init_ca(&dir.join("a"), 30).expect("a");
        init_ca(&dir.join("b"), 30).expect("b");
        std::fs::copy(dir.join("b").join(CA_KEY), dir.join("a").join(CA_KEY)).expect("copy");
        let error = edge_box(&dir.join("a"), "box-1", &dir.join("box"), 30)
            .expect_err("mismatch")
            .to_string();
        assert!(
            error.contains("is not the certificate of the key"),
            "{error}"
        );
        let error = edge_box(&dir.join("none"), "box-1", &dir.join("box"), 30)
            .expect_err("missing")
            .to_string();
        assert!(error.contains("ca.key: cannot be read"), "{error}");
    }
}
