package consulcfg

import (
	"bytes"
	"encoding/json"

	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Consul agent ports. HTTP stays plain on 127.0.0.1 (client_addr); HTTPS and
// gRPC are also reachable from other members on servers (see addresses).
const (
	portServerRPC = 8300
	portSerfLAN   = 8301
	portSerfWAN   = 8302
	portHTTP      = 8500
	portGRPC      = 8502
	portHTTPS     = 8503
	portDNS       = 8600
)

// agentConfig is the agent config file. Field order is the key order of the
// JSON, so the bytes are stable. Pointers and omitempty keep keys that one
// Consul version does not know out of the other's file.
type agentConfig struct {
	Datacenter            string       `json:"datacenter"`
	PrimaryDatacenter     string       `json:"primary_datacenter,omitempty"`
	NodeName              string       `json:"node_name"`
	Server                bool         `json:"server"`
	BootstrapExpect       int          `json:"bootstrap_expect,omitempty"`
	Domain                string       `json:"domain,omitempty"`
	DataDir               string       `json:"data_dir"`
	LogLevel              string       `json:"log_level"`
	BindAddr              string       `json:"bind_addr"`
	AdvertiseAddr         string       `json:"advertise_addr"`
	ClientAddr            string       `json:"client_addr"`
	Addresses             *agentAddrs  `json:"addresses,omitempty"`
	Ports                 agentPorts   `json:"ports"`
	RetryJoin             []string     `json:"retry_join"`
	RetryJoinWAN          []string     `json:"retry_join_wan,omitempty"`
	Encrypt               string       `json:"encrypt"`
	EncryptVerifyIncoming bool         `json:"encrypt_verify_incoming"`
	EncryptVerifyOutgoing bool         `json:"encrypt_verify_outgoing"`
	CAFile                string       `json:"ca_file,omitempty"`
	CertFile              string       `json:"cert_file,omitempty"`
	KeyFile               string       `json:"key_file,omitempty"`
	VerifyIncoming        *bool        `json:"verify_incoming,omitempty"`
	VerifyOutgoing        *bool        `json:"verify_outgoing,omitempty"`
	VerifyServerHostname  *bool        `json:"verify_server_hostname,omitempty"`
	TLS                   *agentTLS    `json:"tls,omitempty"`
	Connect               agentConnect `json:"connect"`
	ACL                   *agentACL    `json:"acl,omitempty"`
}

type agentAddrs struct {
	DNS   string `json:"dns"`
	GRPC  string `json:"grpc"`
	HTTPS string `json:"https"`
}

type agentPorts struct {
	DNS   int `json:"dns"`
	HTTP  int `json:"http"`
	HTTPS int `json:"https"`
	GRPC  int `json:"grpc"`
}

// agentTLS is the Consul >= 1.12 stanza.
type agentTLS struct {
	Defaults    tlsDefaults    `json:"defaults"`
	InternalRPC tlsInternalRPC `json:"internal_rpc"`
	GRPC        tlsGRPC        `json:"grpc"`
}

type tlsDefaults struct {
	CAFile         string `json:"ca_file"`
	CertFile       string `json:"cert_file"`
	KeyFile        string `json:"key_file"`
	VerifyIncoming bool   `json:"verify_incoming"`
	VerifyOutgoing bool   `json:"verify_outgoing"`
}

type tlsInternalRPC struct {
	VerifyServerHostname bool `json:"verify_server_hostname"`
}

// tlsGRPC overrides tls.defaults for the gRPC port. Envoy fetches its xDS
// config there without a client certificate, so with verify_incoming
// inherited from the defaults it is refused and Connect proxies get no
// config (hashicorp/consul#13088, #13124).
type tlsGRPC struct {
	VerifyIncoming bool `json:"verify_incoming"`
}

type agentConnect struct {
	Enabled bool `json:"enabled"`
}

func (c *cluster) agentConfig(in Input, n *inventory.Node, tokens NodeTokens) ([]byte, error) {
	yes := true
	cfg := agentConfig{
		Datacenter:    n.Datacenter,
		NodeName:      n.Name,
		Server:        n.IsServer(),
		DataDir:       c.consul.DataDir,
		LogLevel:      c.consul.LogLevel,
		BindAddr:      n.Address, // a go-sockaddr template passes through: the agent resolves it
		AdvertiseAddr: n.Address,
		// HTTP (8500) stays plain and local; verify_incoming makes HTTPS
		// demand client certificates.
		ClientAddr: "127.0.0.1",
		Ports:      agentPorts{DNS: portDNS, HTTP: portHTTP, HTTPS: portHTTPS, GRPC: portGRPC},
		RetryJoin:  c.joinLAN[n.Datacenter],
		Encrypt:    in.GossipKey,
		// False only while gossip encryption is being turned on in a running cluster.
		EncryptVerifyIncoming: !in.GossipTransition,
		EncryptVerifyOutgoing: !in.GossipTransition,
		Connect:               agentConnect{Enabled: true},
	}
	if c.consul.Domain != "consul" && c.consul.Domain != "consul." {
		cfg.Domain = c.consul.Domain
	}
	if n.IsServer() {
		cfg.BootstrapExpect = c.servers[n.Datacenter]
		// Servers answer HTTPS, gRPC and DNS for the other members (the
		// firewall admits only members); plain HTTP stays on loopback.
		both := "127.0.0.1 " + n.Address
		cfg.Addresses = &agentAddrs{DNS: both, GRPC: both, HTTPS: both}
		if c.top.MultiDC() {
			cfg.PrimaryDatacenter = c.primary
			cfg.RetryJoinWAN = c.joinWAN
		}
	}
	if c.top.MultiDC() && cfg.PrimaryDatacenter == "" {
		// Clients need it too: Connect's CA and intentions live in the primary.
		cfg.PrimaryDatacenter = c.primary
	}
	if c.tlsBlk {
		cfg.TLS = &agentTLS{
			Defaults: tlsDefaults{
				CAFile: c.paths.ca, CertFile: c.paths.cert, KeyFile: c.paths.key,
				VerifyIncoming: true, VerifyOutgoing: true,
			},
			InternalRPC: tlsInternalRPC{VerifyServerHostname: true},
			GRPC:        tlsGRPC{VerifyIncoming: false},
		}
	} else {
		cfg.CAFile, cfg.CertFile, cfg.KeyFile = c.paths.ca, c.paths.cert, c.paths.key
		cfg.VerifyIncoming, cfg.VerifyOutgoing, cfg.VerifyServerHostname = &yes, &yes, &yes
	}
	if c.aclOn {
		cfg.ACL = &agentACL{Enabled: true, DefaultPolicy: "deny", DownPolicy: "extend-cache",
			TokenTTL: ACLTokenTTL.String(), Tokens: agentACLTokens{Agent: tokens.Agent, Replication: tokens.Replication}}
	}
	return marshalJSON(cfg)
}

// marshalJSON renders v with 2-space indent and a trailing newline, without
// HTML escaping (so go-sockaddr templates stay readable).
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Redact returns content with the value of every "encrypt" key (the gossip
// key) and every ACL token ("agent", "token") replaced by its fingerprint,
// for showing an agent config or a services file in a diff or a log.
// Content without such a key comes back unchanged (as a copy).
func Redact(content []byte) []byte {
	return secretRE.ReplaceAllFunc(content, func(m []byte) []byte {
		sub := secretRE.FindSubmatch(m)
		var val string
		if err := json.Unmarshal(append(append([]byte{'"'}, sub[3]...), '"'), &val); err != nil {
			val = string(sub[3])
		}
		fp := fingerprint.Gossip(val)
		if isTokenKey(string(sub[2])) {
			fp = fingerprint.Token(val)
		}
		out := append([]byte{}, sub[1]...)
		out = append(out, "<redacted "+fp+">"...)
		return append(out, sub[4]...)
	})
}

// GossipKeyFingerprint identifies a gossip key without revealing it:
// "sha256:" and the first 16 hex digits of the SHA-256 of the decoded key,
// the form `mtlsctl status` compares with the state directory's (see
// [fingerprint.Gossip]).
func GossipKeyFingerprint(key string) string { return fingerprint.Gossip(key) }
