//! What keyless trusts for TLS, loaded when the first `https://` connection needs it.
//!
//! Parsing the system's roots was most of a cold exchange's CPU: 18.4 M of the 21.7 M
//! instructions of `aws credentials --no-cache` against the lab (BENCHMARKS.md, "Profile"), for
//! a lab, metadata servers and ECS/IMDS endpoints that are plain `http://`. So the certificate
//! verifier handed to rustls loads its roots on its first certificate check, once per process:
//! a process that never speaks TLS never reads them.
//!
//! One source is parsed, the first of (docs/security.md, "What keyless trusts for TLS"):
//!
//! 1. `SSL_CERT_FILE` and/or `SSL_CERT_DIR` when either is set: exactly those. If they yield no
//!    certificate, every `https://` connection fails naming them; nothing else is trusted
//!    instead.
//! 2. The system's bundle file (`/etc/ssl/certs/ca-certificates.crt` on Debian and Ubuntu,
//!    `/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem` on RHEL, `/etc/ssl/cert.pem` on
//!    Alpine: the first that exists, as OpenSSL finds it), and not the directory beside it,
//!    which holds the same roots a file each (reading both doubled the cost).
//! 3. The system's certificate directory (`/etc/ssl/certs`, …) when there is no bundle file.
//! 4. Mozilla's roots compiled into keyless (`webpki-roots`), when the system has no store at
//!    all (a `scratch` image, or one without `ca-certificates`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::classify::{Class, Classify};

/// Where the trusted roots came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `SSL_CERT_FILE` and/or `SSL_CERT_DIR`.
    Environment,
    /// The system's bundle file.
    SystemBundle(PathBuf),
    /// The system's certificate directory (there was no bundle file).
    SystemDirectory(PathBuf),
    /// Mozilla's roots compiled into keyless (the system has no store).
    Compiled,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment => f.write_str("SSL_CERT_FILE/SSL_CERT_DIR"),
            Self::SystemBundle(path) | Self::SystemDirectory(path) => {
                write!(f, "{}", path.display())
            }
            Self::Compiled => f.write_str("Mozilla's roots compiled into keyless"),
        }
    }
}

/// Why no root could be trusted.
#[derive(Debug, thiserror::Error)]
pub enum RootsError {
    /// `SSL_CERT_FILE`/`SSL_CERT_DIR` are set and hold no usable certificate. They replace the
    /// system's store, so nothing is trusted rather than something the operator did not choose.
    #[error("{variables} holds no usable CA certificate{detail}\n  hint: point SSL_CERT_FILE at a readable PEM bundle (or SSL_CERT_DIR at a directory of PEM files), or unset both to trust the system's store")]
    NoneInEnvironment {
        /// The variables as set, `SSL_CERT_FILE=…` and/or `SSL_CERT_DIR=…`.
        variables: String,
        /// What the loader reported (`: …`), or nothing.
        detail: String,
    },
}

impl Classify for RootsError {
    fn class(&self) -> Class {
        Class::Usage
    }
}

/// Where to look for roots: the process's environment and the system's usual places, read when
/// the roots are first needed (tests give their own).
#[derive(Clone, Debug, Default)]
pub struct Locations {
    /// `SSL_CERT_FILE`.
    pub env_file: Option<PathBuf>,
    /// `SSL_CERT_DIR`, split on `:`.
    pub env_dirs: Vec<PathBuf>,
    /// The system's bundle file, if one exists.
    pub system_bundle: Option<PathBuf>,
    /// The system's certificate directories that exist.
    pub system_dirs: Vec<PathBuf>,
}

impl Locations {
    /// This process's: `SSL_CERT_FILE`/`SSL_CERT_DIR`, else where OpenSSL looks on this system.
    pub fn of_process() -> Self {
        let env_file = std::env::var_os("SSL_CERT_FILE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let env_dirs: Vec<PathBuf> = std::env::var_os("SSL_CERT_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if env_file.is_some() || !env_dirs.is_empty() {
            return Self {
                env_file,
                env_dirs,
                ..Self::default()
            };
        }
        let probed = openssl_probe::probe();
        Self {
            system_bundle: probed.cert_file,
            system_dirs: probed.cert_dir,
            ..Self::default()
        }
    }

    /// Reads the first source that applies (see the module doc) into a store.
    pub fn load(&self) -> Result<(RootCertStore, Origin), RootsError> {
        if self.env_file.is_some() || !self.env_dirs.is_empty() {
            let mut errors = Vec::new();
            let mut certs = Vec::new();
            if let Some(file) = &self.env_file {
                read(Some(file), None, &mut certs, &mut errors);
            }
            for dir in &self.env_dirs {
                read(None, Some(dir), &mut certs, &mut errors);
            }
            let store = store_of(certs);
            if store.is_empty() {
                return Err(RootsError::NoneInEnvironment {
                    variables: self.env_variables(),
                    detail: errors.iter().map(|e| format!(": {e}")).collect(),
                });
            }
            return Ok((store, Origin::Environment));
        }
        if let Some(file) = &self.system_bundle {
            let mut certs = Vec::new();
            read(Some(file), None, &mut certs, &mut Vec::new());
            let store = store_of(certs);
            if !store.is_empty() {
                return Ok((store, Origin::SystemBundle(file.clone())));
            }
        }
        for dir in &self.system_dirs {
            let mut certs = Vec::new();
            read(None, Some(dir), &mut certs, &mut Vec::new());
            let store = store_of(certs);
            if !store.is_empty() {
                return Ok((store, Origin::SystemDirectory(dir.clone())));
            }
        }
        let store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Ok((store, Origin::Compiled))
    }

    fn env_variables(&self) -> String {
        let mut set = Vec::new();
        if let Some(file) = &self.env_file {
            set.push(format!("SSL_CERT_FILE={}", file.display()));
        }
        if !self.env_dirs.is_empty() {
            let dirs: Vec<String> = self
                .env_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            set.push(format!("SSL_CERT_DIR={}", dirs.join(":")));
        }
        set.join(" and ")
    }
}

fn read(
    file: Option<&Path>,
    dir: Option<&Path>,
    certs: &mut Vec<CertificateDer<'static>>,
    errors: &mut Vec<String>,
) {
    let result = rustls_native_certs::load_certs_from_paths(file, dir);
    certs.extend(result.certs);
    errors.extend(result.errors.iter().map(ToString::to_string));
}

fn store_of(certs: Vec<CertificateDer<'static>>) -> RootCertStore {
    let mut store = RootCertStore::empty();
    // A file may hold a certificate webpki cannot use as an anchor; the rest still count.
    store.add_parsable_certificates(certs);
    store
}

/// The verifier keyless gives rustls: webpki's verification (chain, name, validity, signatures)
/// over roots loaded on its first certificate check. The handshake signatures it checks without
/// them, so only a certificate to verify triggers the load.
#[derive(Debug)]
pub struct LazyRoots {
    locations: Option<Locations>,
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Loaded>,
}

/// The verifier over the loaded roots and where they came from, or why there are none.
type Loaded = Result<(Arc<WebPkiServerVerifier>, Origin), Arc<RootsError>>;

impl LazyRoots {
    /// Roots from `locations` (tests); [`process`] is the one everything else shares.
    pub fn at(locations: Locations) -> Arc<Self> {
        Arc::new(Self::new(Some(locations)))
    }

    fn new(locations: Option<Locations>) -> Self {
        Self {
            locations,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            verifier: OnceLock::new(),
        }
    }

    /// Where the roots came from, once a certificate check has loaded them; `None` before.
    pub fn loaded(&self) -> Option<Result<&Origin, &RootsError>> {
        self.verifier
            .get()
            .map(|v| v.as_ref().map(|(_, origin)| origin).map_err(|e| &**e))
    }

    fn verifier(&self) -> Result<&WebPkiServerVerifier, rustls::Error> {
        let loaded = self.verifier.get_or_init(|| {
            let locations = match &self.locations {
                Some(given) => given.clone(),
                None => Locations::of_process(),
            };
            let (store, origin) = locations.load().map_err(Arc::new)?;
            tracing::debug!(roots = store.len(), from = %origin, "loaded the TLS roots");
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
                    .build()
                    .expect("a store that is not empty builds a verifier");
            Ok((verifier, origin))
        });
        match loaded {
            Ok((verifier, _)) => Ok(verifier),
            Err(e) => Err(rustls::Error::Other(rustls::OtherError(e.clone()))),
        }
    }

    /// A rustls client configuration that verifies servers against these roots, offering HTTP/2
    /// and HTTP/1.1 as reqwest's own configuration does.
    pub fn client_config(self: &Arc<Self>) -> rustls::ClientConfig {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3")
            // "dangerous" is rustls's name for any verifier of one's own: this one is webpki's.
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }
}

/// The roots of this process, shared by every client it builds.
pub fn process() -> Arc<LazyRoots> {
    static PROCESS: OnceLock<Arc<LazyRoots>> = OnceLock::new();
    PROCESS
        .get_or_init(|| Arc::new(LazyRoots::new(None)))
        .clone()
}

impl ServerCertVerifier for LazyRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A CA, and a certificate for `localhost` it signed (PEM, and the server's rustls config).
    struct Pki {
        ca_pem: String,
        server: Arc<rustls::ServerConfig>,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &rcgen::Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        Pki {
            ca_pem: ca.pem(),
            server: Arc::new(server),
        }
    }

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";

    /// Answers every connection with [`ANSWER`], over TLS when `tls` is given; the base URL.
    async fn serve(tls: Option<Arc<rustls::ServerConfig>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(config) => {
                            let acceptor = tokio_rustls::TlsAcceptor::from(config);
                            if let Ok(stream) = acceptor.accept(socket).await {
                                answer(stream).await;
                            }
                        }
                        None => answer(socket).await,
                    }
                });
            }
        });
        format!("{scheme}://localhost:{port}/")
    }

    async fn answer(mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) {
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request).await;
        let _ = stream.write_all(ANSWER).await;
        let _ = stream.shutdown().await;
    }

    async fn get(roots: &Arc<LazyRoots>, url: &str) -> Result<String, String> {
        let client = crate::wire::http::build_with(roots).unwrap();
        match client.get(url).send().await {
            Ok(response) => Ok(response.text().await.unwrap()),
            Err(e) => Err(crate::wire::error_chain(&e)),
        }
    }

    fn env_file(path: &Path) -> Locations {
        Locations {
            env_file: Some(path.to_path_buf()),
            ..Locations::default()
        }
    }

    #[tokio::test]
    async fn an_http_request_never_loads_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let roots = LazyRoots::at(env_file(&dir.path().join("never-read.pem")));
        let url = serve(None).await;
        assert_eq!(get(&roots, &url).await.unwrap(), "hello");
        assert!(roots.loaded().is_none(), "{:?}", roots.loaded());
    }

    #[tokio::test]
    async fn a_server_signed_by_the_ca_in_ssl_cert_file_is_trusted_and_by_no_other_store() {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &pki.ca_pem).unwrap();
        let url = serve(Some(pki.server.clone())).await;

        let roots = LazyRoots::at(env_file(&ca));
        assert_eq!(get(&roots, &url).await.unwrap(), "hello");
        assert_eq!(get(&roots, &url).await.unwrap(), "hello");
        assert_eq!(roots.loaded().unwrap().unwrap(), &Origin::Environment);

        // The compiled roots (what a store-less system trusts) do not know this CA.
        let compiled = LazyRoots::at(Locations::default());
        let err = get(&compiled, &url).await.unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
        assert_eq!(compiled.loaded().unwrap().unwrap(), &Origin::Compiled);
    }

    #[tokio::test]
    async fn an_ssl_cert_file_without_certificates_fails_naming_it() {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let url = serve(Some(pki.server)).await;
        let roots = LazyRoots::at(env_file(&missing));
        let err = get(&roots, &url).await.unwrap_err();
        assert!(
            err.contains(&format!("SSL_CERT_FILE={}", missing.display())),
            "{err}"
        );
        assert!(err.contains("hint: point SSL_CERT_FILE"), "{err}");
        let loaded = roots.loaded().unwrap().unwrap_err();
        assert_eq!(loaded.class(), Class::Usage);
    }

    #[test]
    fn one_source_is_read_the_bundle_before_the_directory_else_the_compiled_roots() {
        let (first, second) = (pki(), pki());
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, &first.ca_pem).unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::write(certs.join("a.pem"), &first.ca_pem).unwrap();
        std::fs::write(certs.join("b.pem"), &second.ca_pem).unwrap();

        let system = Locations {
            system_bundle: Some(bundle.clone()),
            system_dirs: vec![certs.clone()],
            ..Locations::default()
        };
        let (store, origin) = system.load().unwrap();
        assert_eq!((store.len(), origin), (1, Origin::SystemBundle(bundle)));

        let only_dir = Locations {
            system_dirs: vec![certs.clone()],
            ..Locations::default()
        };
        let (store, origin) = only_dir.load().unwrap();
        assert_eq!((store.len(), origin), (2, Origin::SystemDirectory(certs)));

        let (store, origin) = Locations::default().load().unwrap();
        assert_eq!(origin, Origin::Compiled);
        assert!(store.len() > 100, "{}", store.len());
    }
}
