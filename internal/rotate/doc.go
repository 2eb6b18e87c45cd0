// Package rotate owns the procedures of mtlsctl's zero-downtime rotations:
// the gossip key (install the new key through the keyring API, wait until
// every member holds it, use it, remove the old one, then push the new
// `encrypt`), node certificates (reissue, push with a reload, verify what
// each agent serves) and the CA rollover (trust old+new, reissue from the
// new CA, drop the old one), each as resumable steps recorded in a small
// progress file in the state directory.
//
// It talks to Consul only through the small interfaces it declares
// ([KeyringAPI], [MemberLister]) and to the nodes only through functions the
// caller passes in (apply, verify), so every step and every failure is
// testable without SSH. It must not open SSH connections, render bundles or
// print a secret: keys are shown as fingerprints.
package rotate
