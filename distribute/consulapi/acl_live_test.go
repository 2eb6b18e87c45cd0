package consulapi

// The ACL system against real Consul agents (`consul agent -dev` with ACLs
// on, default deny): bootstrap, tokens with exactly their rights, the
// anonymous token for DNS only, pruning, uninstall and a new management
// token.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
)

// testUUID is a UUID-shaped ID made from i and kind.
func testUUID(kind, i int) string {
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", 0x10000000+kind, i)
}

func TestACLLive(t *testing.T) {
	for _, version := range []string{"1.6.2", "1.13.9"} {
		t.Run(version, func(t *testing.T) {
			consultest.Binary(t, version) // skips without the binary
			cl, rec := devAgent(t, version, `acl { enabled = true default_policy = "deny" down_policy = "extend-cache" }`)
			c := agentCluster(t, cl)
			rec.base = tokenTransport{c: c, base: rec.base}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			// Before the bootstrap the API refuses what matters (1.6.2
			// answers the keyring with a 500 "denied by ACLs", 1.13 a 403).
			if _, err := cl.Operator().KeyringList(nil); !aclDenied(err) {
				t.Fatalf("keyring without a token: %v, want it denied", err)
			}
			specs := []TokenSpec{
				{AccessorID: testUUID(1, 1), SecretID: testUUID(2, 1), Node: "s1"},
				{AccessorID: testUUID(1, 2), SecretID: testUUID(2, 2), Node: "s1", Service: "zk-2181-10-0-0-1"},
				{AccessorID: testUUID(1, 3), SecretID: testUUID(2, 3), Node: "c1", Service: "egress-10-0-0-4"},
			}
			var saved string
			a := ACLConfig{Enabled: true, Cluster: "t", Tokens: specs, Save: func(s string) error { saved = s; return nil }}
			c.SetACL(a)
			var err error
			for i := 0; i < 60; i++ { // the ACL system may still be starting
				if err = c.EnsureACL(ctx); err == nil {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			if saved == "" || c.Token() != saved {
				t.Fatalf("the management token was not saved and used")
			}
			// With the management token: the keyring answers.
			if _, err := cl.Operator().KeyringList(nil); aclDenied(err) {
				t.Fatalf("keyring with the management token: %v", err)
			}
			// A second sync keeps everything.
			res, err := c.SyncTokens(ctx)
			if err != nil || res.Kept != 3 || res.Created != 0 {
				t.Fatalf("second sync: %+v %v", res, err)
			}
			// Rights: read each token back and check what it holds.
			q := &api.QueryOptions{}
			agent, _, err := cl.ACL().TokenRead(testUUID(1, 1), q)
			if err != nil || len(agent.Policies) != 1 || agent.Policies[0].Name != "mtlsctl-agent-s1" {
				t.Fatalf("agent token: %+v %v", agent, err)
			}
			pol, _, err := cl.ACL().PolicyRead(agent.Policies[0].ID, q)
			if err != nil || !strings.Contains(pol.Rules, `node "s1"`) || strings.Contains(pol.Rules, "operator") || strings.Contains(pol.Rules, "keyring") {
				t.Fatalf("agent policy rules: %v %v", pol, err)
			}
			svc, _, err := cl.ACL().TokenRead(testUUID(1, 2), q)
			if err != nil || len(svc.ServiceIdentities) != 1 || svc.ServiceIdentities[0].ServiceName != "zk-2181-10-0-0-1" || len(svc.Policies) != 0 {
				t.Fatalf("service token: %+v %v", svc, err)
			}
			anon, _, err := cl.ACL().TokenRead(anonymousAccessor, q)
			if err != nil || len(anon.Policies) != 1 || anon.Policies[0].Name != DNSPolicy {
				t.Fatalf("anonymous token: %+v %v", anon, err)
			}

			// What each token may do, asked as that token: the service
			// token registers its own service, not another.
			reg := func(secret, name string) error {
				_, err := cl.Catalog().Register(&api.CatalogRegistration{Node: "intentions-test", Address: "127.0.0.1",
					Service: &api.AgentService{ID: name, Service: name, Port: 1}, SkipNodeUpdate: true}, &api.WriteOptions{Token: secret})
				return err
			}
			if err := reg(testUUID(2, 2), "zk-2181-10-0-0-1"); err != nil {
				t.Errorf("service token cannot register its own service: %v", err)
			}
			if err := reg(testUUID(2, 2), "postgres-5432-10-0-0-9"); !aclDenied(err) {
				t.Errorf("service token registered another service: %v", err)
			}
			// No token at all (anonymous: DNS only): no keyring, no leaf.
			if _, err := cl.Operator().KeyringList(&api.QueryOptions{Token: "00000000-0000-4000-8000-000000000000"}); !aclDenied(err) {
				t.Errorf("keyring with an unknown token: %v, want it denied", err)
			}
			// The agent token: its own node, nothing of the keyring.
			if _, err := cl.Operator().KeyringList(&api.QueryOptions{Token: specs[0].SecretID}); !aclDenied(err) {
				t.Errorf("keyring with an agent token: %v, want it denied", err)
			}

			// A spec dropped: prune deletes its token and nothing else.
			a.Tokens = specs[:2]
			c.SetACL(consulACL(a, saved))
			n, err := c.PruneTokens(ctx)
			if err != nil || n != 1 {
				t.Fatalf("prune: %d %v", n, err)
			}
			if _, _, err := cl.ACL().TokenRead(testUUID(1, 3), q); err == nil {
				t.Errorf("pruned token still there")
			}
			// A new management token replaces the old one.
			newMgmt := testUUID(3, 1)
			if err := c.RenewManagement(ctx, newMgmt, func(s string) error { saved = s; return nil }); err != nil {
				t.Fatalf("renew management: %v", err)
			}
			if saved != newMgmt || c.Token() != newMgmt {
				t.Fatalf("new management token not saved or used")
			}
			if _, _, err := cl.ACL().TokenReadSelf(&api.QueryOptions{Token: specs[0].SecretID}); err != nil {
				t.Errorf("agent token broken by the management rotation: %v", err)
			}
			// Uninstall: mtlsctl's tokens and policies go, the anonymous
			// token loses the DNS policy, the management token stays.
			if _, err := c.DeleteACL(ctx); err != nil {
				t.Fatalf("delete: %v", err)
			}
			list, _, err := cl.ACL().TokenList(q)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range list {
				if strings.HasPrefix(tok.Description, "mtlsctl t: ") && tok.Description != "mtlsctl t: management" {
					t.Errorf("left after uninstall: %s", tok.Description)
				}
			}
			pols, _, _ := cl.ACL().PolicyList(q)
			for _, p := range pols {
				if strings.HasPrefix(p.Name, "mtlsctl-") {
					t.Errorf("policy left after uninstall: %s", p.Name)
				}
			}
		})
	}
}

// aclDenied reports an error that says the ACLs refused the call.
func aclDenied(err error) bool {
	if err == nil {
		return false
	}
	s := err.Error()
	return strings.Contains(s, "403") || strings.Contains(s, "denied") || strings.Contains(s, "ACL not found")
}

func consulACL(a ACLConfig, tok string) ACLConfig { a.Token = tok; return a }
