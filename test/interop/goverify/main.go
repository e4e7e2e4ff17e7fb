// Command goverify verifies certificates with Go's crypto/x509, the way a Go TLS peer does, for
// mtlskit's interop suite. It reads a JSON array of cases on stdin and writes one JSON result per
// case, in order, on stdout:
//
//	case:   {"ca": FILE, "cert": FILE, "untrusted": FILE, "usage": "server"|"client"|"any", "hosts": [NAME|IP...], "at": RFC3339}
//	result: {"ok": BOOL, "error": TEXT}
//
// Roots come from the CA file only (never the system pool); the leaf is the first certificate of
// the cert file, and any further certificates there or in "untrusted" are intermediates. "usage"
// sets KeyUsages to serverAuth, clientAuth or ExtKeyUsageAny (no purpose, as `openssl verify`
// without -purpose; Verify's default would be serverAuth), "at" sets CurrentTime (default: the clock), and every
// host is checked with VerifyHostname, as crypto/tls does with ServerName. A malformed case is
// reported as that case's error; only unreadable input or output ends the program with status 2.
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

type verifyCase struct {
	CA        string   `json:"ca"`
	Cert      string   `json:"cert"`
	Untrusted string   `json:"untrusted"`
	Usage     string   `json:"usage"`
	Hosts     []string `json:"hosts"`
	At        string   `json:"at"`
}

type result struct {
	OK    bool   `json:"ok"`
	Error string `json:"error"`
}

// readCerts parses every CERTIFICATE block of a PEM file.
func readCerts(file string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", file)
	}
	return certs, nil
}

var usages = map[string]x509.ExtKeyUsage{"server": x509.ExtKeyUsageServerAuth, "client": x509.ExtKeyUsageClientAuth, "any": x509.ExtKeyUsageAny}

// verify runs one case; the error is what a Go peer would report.
func verify(c verifyCase) error {
	usage, ok := usages[c.Usage]
	if !ok {
		return fmt.Errorf("usage %q: want server, client or any", c.Usage)
	}
	cas, err := readCerts(c.CA)
	if err != nil {
		return err
	}
	certs, err := readCerts(c.Cert)
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: x509.NewCertPool(), Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{usage}}
	for _, ca := range cas {
		opts.Roots.AddCert(ca)
	}
	intermediates := certs[1:]
	if c.Untrusted != "" {
		more, err := readCerts(c.Untrusted)
		if err != nil {
			return err
		}
		intermediates = append(intermediates, more...)
	}
	for _, ic := range intermediates {
		opts.Intermediates.AddCert(ic)
	}
	if c.At != "" {
		if opts.CurrentTime, err = time.Parse(time.RFC3339, c.At); err != nil {
			return fmt.Errorf("at: %w", err)
		}
	}
	if _, err := certs[0].Verify(opts); err != nil {
		return err
	}
	var failed []string
	for _, h := range c.Hosts {
		if err := certs[0].VerifyHostname(h); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if len(failed) > 0 {
		return errors.New(strings.Join(failed, "; "))
	}
	return nil
}

func main() {
	var cases []verifyCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "goverify: reading cases:", err)
		os.Exit(2)
	}
	results := make([]result, len(cases))
	for i, c := range cases {
		if err := verify(c); err != nil {
			results[i] = result{Error: err.Error()}
		} else {
			results[i] = result{OK: true}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "goverify: writing results:", err)
		os.Exit(2)
	}
}
