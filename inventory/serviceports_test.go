package inventory

import (
	"errors"
	"strings"
	"testing"
)

// Proxy ranges must stay clear of the components' own ports (issue 9,
// item 3); line 7 of baseYAML is the postgres range.
func TestServicePortCollisions(t *testing.T) {
	tests := []struct {
		name, ports string
		field, msg  string // msg "" = accepted
	}{
		{"router over the management APIs", "router: 8080-8180", "ports.router", "router range 8080-8180 includes Apigee service port(s) 8080 (management-server management API), 8081 (router management API), 8082 (message-processor management API), 8083 (qpid Qpid Server API), and 1 more"},
		{"shared openldap on LDAP's own port", "openldap: 10389-10389", "ports.openldap", "openldap range 10389-10389 includes Apigee service port(s) 10389 (openldap LDAP)"},
		{"shared postgres over 10389", "postgres: 10388-10390", "ports.postgres", "10389 (openldap LDAP)"},
		{"zookeeper over its own ports", "zookeeper: 2000-2999", "ports.zookeeper", "2181 (zookeeper client connections), 2888 (zookeeper quorum)"},
		{"cassandra over 9042", "cassandra: 9000-9099", "ports.cassandra", "9000 (ui Edge UI), 9001 (router default virtual host), 9042 (cassandra CQL native protocol)"},
		{"egress on the router health check", "egress: 15999-15999", "ports.egress", "15999 (router load balancer health check)"},
		{"Consul keeps its own message", "qpid: 8500-8599", "ports.qpid", "includes Consul's port 8500"},
		{"Apigee's default postgres range holds 10389", "postgres: 10300-10399", "", ""},
		{"a widened postgres range too", "postgres: 10300-10499\n  qpid: 11400-11499", "", ""},
		{"clear of every service port", "router: 20600-20699\n  openldap: 20200-20200", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := strings.Replace(baseYAML, "postgres: 10300-10399", tt.ports, 1)
			top, err := Parse("cluster.yaml", []byte(doc))
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				a, err := AssignPorts(top, nil)
				if err != nil {
					t.Fatal(err)
				}
				for _, n := range top.Nodes {
					for _, p := range a.All(n.Name) {
						if isServicePort(p) {
							t.Errorf("node %s got service port %d", n.Name, p)
						}
					}
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.Line != 7 {
						t.Errorf("line %d, want 7: %s", p.Line, p)
					}
					return
				}
			}
			t.Errorf("no problem %s: %q in:\n%v", tt.field, tt.msg, err)
		})
	}
}

// A linear range that holds a service port never hands it out.
func TestAssignPortsSkipsServicePorts(t *testing.T) {
	doc := strings.Replace(baseYAML, "postgres: 10300-10399", "postgres: 10387-10399", 1)
	top, err := Parse("cluster.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	a, err := AssignPorts(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range top.Nodes {
		for _, p := range a.Ports(n.Name, "postgres") {
			if p == 10389 {
				t.Fatalf("node %s got OpenLDAP's 10389 for postgres: %v", n.Name, a.Ports(n.Name, "postgres"))
			}
		}
	}
	// A previous assignment on the port is not kept either.
	for _, n := range top.Nodes {
		if n.Has(Postgres) {
			prev := &Assignment{Nodes: map[string]map[string][]int{n.Name: {"postgres": {10388, 10389, 10390}}}}
			again, err := AssignPorts(top, prev)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range again.Ports(n.Name, "postgres") {
				if p == 10389 {
					t.Fatal("kept a previous assignment on 10389")
				}
			}
		}
	}
}
