/** The manual: a short usage for a bare `mtlskit`, and each command's synopsis, EXAMPLES and EXIT CODES. */

/** EXIT_CODES_TEXT is printed in every command's help. */
export const EXIT_CODES_TEXT = `EXIT CODES
  0  success
  1  findings (check, inspect, probe, verify); a certificate due (status); explain: nothing recognised
  2  invalid input: bad flags or an invalid manifest; nothing was written
  3  could not do the job: unreadable files, a lock held by another apply, a damaged PKI`;

/** SHORT_USAGE is what a bare `mtlskit` prints. */
export const SHORT_USAGE = `mtlskit: a manifest becomes a private CA and every service's mutual-TLS certificates.

Usage:
  mtlskit init                          write a commented starter mtlskit.yaml
  mtlskit plan                          show what apply would create, keep or re-issue, and why
  mtlskit inspect cert.pem key.pem      show certificates, chains, keys and CSRs readably, with their lints
  mtlskit apply                         issue everything into ./pki (idempotent, crash-safe)
  mtlskit apply -f cluster.yaml --pki /etc/mtls
  mtlskit apply --reissue gateway       rotate one service's key and certificate
  mtlskit ca rotate prepare             replace the CA with no outage: prepare, activate, retire
  mtlskit revoke gateway --reason keyCompromise  put it on the CRL; the next apply re-issues it
  mtlskit check                         prove every declared connection will handshake; name what to fix
  mtlskit csr --service web --out DIR   on web's host (csr: true): its key and a CSR; the key never leaves
  mtlskit sign web.csr --service web    on the CA's host: check the CSR against the manifest, sign it
  mtlskit status --nagios               every certificate's expiry and its CA's, most urgent first (a Sensu check)
  mtlskit export --format kubernetes    copy out as Secrets; also flat PEM files per host, env files, .p12
  mtlskit config nats --service nats    a ready-to-paste TLS snippet (nats, postgres, nginx, etcd, serviceradar)
  mtlskit metrics --listen 127.0.0.1:9469  serve Prometheus metrics: expiry, renewal, findings, the last apply
  mtlskit explain "x509: ..."           say what a TLS error means and how to fix it
  mtlskit probe 10.0.0.5:8443 --as api  connect to a live endpoint as a service and judge what it presents
  mtlskit verify cert.pem --ca root.pem  is it valid (openssl verify -x509_strict, Go)? each reason with its fix
  sudo mtlskit trust install            put the CA into the system trust store (and NSS); uninstall, status
  mtlskit ca offline --to /media/usb/ca-key.pem  move the CA key out; apply --ca-key FILE when it must sign
  mtlskit token create web --ttl 15m    a single-use enrollment token for web's agent (csr: true), printed once
  mtlskit ledger list --service web     the certificates the online CA issued; ledger show SERIAL, ledger backup FILE
  mtlskit serve --listen 127.0.0.1:8443  the online CA: agents enroll with a token, renew with their certificate
  mtlskit ui --listen 127.0.0.1:8080     a live web dashboard: inventory, expiry timeline, connection graph, rotation, online CA
  mtlskit agent --server URL --service web --token-file t --fingerprint FP --out DIR  enroll, renew on its own

Commands: init, plan, apply, ca, check, status, export, metrics, config, inspect, explain, probe, verify, trust, csr, sign, revoke, token, ledger, serve, ui, agent, schema. Run \`mtlskit COMMAND --help\` for details, \`mtlskit --version\` for the version.
`;
