package controlplane

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// adminUserName is the common name of the client certificate that tests,
// kubectl and kube-controller-manager use. system:masters bypasses RBAC, so
// tests need no role bindings of their own.
const (
	adminUserName  = "socklb-admin"
	adminGroupName = "system:masters"
)

// servingCertDNSNames and servingCertIPs cover the names a client inside a
// test may use for the apiserver: the loopback address it listens on and the
// in-cluster Service name and ClusterIP (the first address of 10.96.0.0/16).
var (
	servingCertDNSNames = []string{
		"localhost",
		"kubernetes",
		"kubernetes.default",
		"kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local",
	}
	servingCertIPs = []net.IP{
		net.ParseIP("127.0.0.1"),
		net.ParseIP("::1"),
		net.ParseIP("10.96.0.1"),
	}
)

// pkiFiles are the paths of the certificates and keys written by writePKI,
// plus the PEM blocks that go into the kubeconfig.
type pkiFiles struct {
	caCertPath        string
	servingCertPath   string
	servingKeyPath    string
	adminCertPath     string
	adminKeyPath      string
	serviceAccountPub string
	serviceAccountKey string
	caCertPEM         []byte
	adminCertPEM      []byte
	adminKeyPEM       []byte
}

type keyPair struct {
	certificate *x509.Certificate
	certPEM     []byte
	key         *ecdsa.PrivateKey
	keyPEM      []byte
}

// writePKI generates a throw-away CA, the apiserver's serving certificate, an
// admin client certificate and the service-account signing key into dir.
// ECDSA P-256 keeps generation in the microseconds; every Kubernetes
// component accepts it.
func writePKI(dir string) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating certificate directory %s: %w", dir, err)
	}
	ca, err := newCertificateAuthority()
	if err != nil {
		return nil, err
	}
	serving, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    servingCertDNSNames,
		IPAddresses: servingCertIPs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing apiserver serving certificate: %w", err)
	}
	admin, err := ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUserName, Organization: []string{adminGroupName}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("issuing admin client certificate: %w", err)
	}
	serviceAccountKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating service-account signing key: %w", err)
	}
	serviceAccountKeyPEM, err := encodePrivateKey(serviceAccountKey)
	if err != nil {
		return nil, err
	}
	serviceAccountPubPEM, err := encodePublicKey(serviceAccountKey.Public())
	if err != nil {
		return nil, err
	}

	files := &pkiFiles{
		caCertPath:        filepath.Join(dir, "ca.crt"),
		servingCertPath:   filepath.Join(dir, "apiserver.crt"),
		servingKeyPath:    filepath.Join(dir, "apiserver.key"),
		adminCertPath:     filepath.Join(dir, "admin.crt"),
		adminKeyPath:      filepath.Join(dir, "admin.key"),
		serviceAccountPub: filepath.Join(dir, "service-account.pub"),
		serviceAccountKey: filepath.Join(dir, "service-account.key"),
		caCertPEM:         ca.certPEM,
		adminCertPEM:      admin.certPEM,
		adminKeyPEM:       admin.keyPEM,
	}
	for path, contents := range map[string][]byte{
		files.caCertPath:        ca.certPEM,
		files.servingCertPath:   serving.certPEM,
		files.servingKeyPath:    serving.keyPEM,
		files.adminCertPath:     admin.certPEM,
		files.adminKeyPath:      admin.keyPEM,
		files.serviceAccountPub: serviceAccountPubPEM,
		files.serviceAccountKey: serviceAccountKeyPEM,
	} {
		if err := os.WriteFile(path, contents, 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return files, nil
}

func newCertificateAuthority() (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating CA key: %w", err)
	}
	template := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "socklb-test-ca"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if err := fillValidity(template); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing CA certificate: %w", err)
	}
	return newKeyPair(der, key)
}

func (ca *keyPair) issue(template *x509.Certificate) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating key: %w", err)
	}
	if err := fillValidity(template); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca.certificate, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %s: %w", template.Subject.CommonName, err)
	}
	return newKeyPair(der, key)
}

// fillValidity backdates NotBefore by an hour so that a clock a little behind
// on another process does not reject a certificate made a moment ago.
func fillValidity(template *x509.Certificate) error {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("generating certificate serial number: %w", err)
	}
	now := time.Now()
	template.SerialNumber = serial
	template.NotBefore = now.Add(-time.Hour)
	template.NotAfter = now.Add(365 * 24 * time.Hour)
	return nil
}

func newKeyPair(der []byte, key *ecdsa.PrivateKey) (*keyPair, error) {
	certificate, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing generated certificate: %w", err)
	}
	keyPEM, err := encodePrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &keyPair{
		certificate: certificate,
		certPEM:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:         key,
		keyPEM:      keyPEM,
	}, nil
}

func encodePrivateKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodePublicKey(key crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// writeKubeconfig embeds the certificates so the file stays usable when
// copied elsewhere, e.g. into a node's network namespace setup.
func writeKubeconfig(path, serverURL string, files *pkiFiles) error {
	encode := base64.StdEncoding.EncodeToString
	contents := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: socklb-test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: socklb-test
  context:
    cluster: socklb-test
    user: %s
current-context: socklb-test
`, serverURL, encode(files.caCertPEM), adminUserName, encode(files.adminCertPEM), encode(files.adminKeyPEM), adminUserName)
	if err := os.WriteFile(path, []byte(contents), 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}
