package rotate

import (
	"context"
	"time"

	"github.com/hashicorp/consul/api"
)

// KeyringAPI is the part of Consul's operator keyring API a gossip rotation
// uses (/v1/operator/keyring). Install, use and remove reach every pool (the
// LAN of every datacenter and the WAN); each call is a Serf query, answered
// or timed out per member.
type KeyringAPI interface {
	KeyringInstall(ctx context.Context, key string) error
	KeyringList(ctx context.Context) ([]*api.KeyringResponse, error)
	KeyringUse(ctx context.Context, key string) error
	KeyringRemove(ctx context.Context, key string) error
}

// MemberLister lists the members one agent sees: the LAN pool of its
// datacenter, or (wan) the servers of every datacenter.
type MemberLister interface {
	Members(ctx context.Context, wan bool) ([]*api.AgentMember, error)
}

// Agent is what a gossip rotation needs from one Consul agent.
type Agent interface {
	KeyringAPI
	MemberLister
}

// Client adapts a consul/api client (e.g. one tunnelled over SSH to
// 127.0.0.1:8500 on a node) to [Agent].
type Client struct {
	API *api.Client
	// Token is the ACL token, if the cluster uses ACLs.
	Token string
}

var _ Agent = (*Client)(nil)

func (c *Client) w(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{Token: c.Token}).WithContext(ctx)
}

func (c *Client) q(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{Token: c.Token}).WithContext(ctx)
}

// KeyringInstall installs key on every member of every pool.
func (c *Client) KeyringInstall(ctx context.Context, key string) error {
	return c.API.Operator().KeyringInstall(key, c.w(ctx))
}

// KeyringList lists the keys of every pool, with per-key member counts.
func (c *Client) KeyringList(ctx context.Context) ([]*api.KeyringResponse, error) {
	return c.API.Operator().KeyringList(c.q(ctx))
}

// KeyringUse makes key the primary key of every member.
func (c *Client) KeyringUse(ctx context.Context, key string) error {
	return c.API.Operator().KeyringUse(key, c.w(ctx))
}

// KeyringRemove removes key from every member; members whose primary key it
// still is refuse.
func (c *Client) KeyringRemove(ctx context.Context, key string) error {
	return c.API.Operator().KeyringRemove(key, c.w(ctx))
}

// Members lists the LAN (or WAN) members the agent sees.
func (c *Client) Members(ctx context.Context, wan bool) ([]*api.AgentMember, error) {
	type result struct {
		m   []*api.AgentMember
		err error
	}
	// Agent().Members takes no options: bound it with ctx here.
	ch := make(chan result, 1)
	go func() {
		m, err := c.API.Agent().Members(wan)
		ch <- result{m, err}
	}()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Serf's default gossip intervals in Consul: the keyring query timeout scales
// with them.
const (
	LANGossipInterval = 200 * time.Millisecond
	WANGossipInterval = 500 * time.Millisecond
)

// QueryTimeout is how long a Serf query, and so one keyring operation on one
// pool, may take in a pool of n members: gossip interval × 16 (Serf's
// QueryTimeoutMult) × ceil(log10(n+1)). On the LAN (200 ms) that is 3.2 s up
// to 9 members, 6.4 s up to 99, 9.6 s up to 999; the WAN gossips every
// 500 ms, so 8 s up to 9 servers. interval 0 means the LAN's.
func QueryTimeout(n int, interval time.Duration) time.Duration {
	if interval <= 0 {
		interval = LANGossipInterval
	}
	if n < 1 {
		n = 1
	}
	digits := 0
	for m := n + 1; m > 1; m = (m + 9) / 10 {
		digits++
	}
	return time.Duration(digits) * 16 * interval
}
