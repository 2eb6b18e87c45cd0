package delayproxy

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestDelaysEachRoundTrip(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			c.Write(line)
		}
	}()
	const rtt = 40 * time.Millisecond
	p, err := Start(echo.Addr().String(), rtt)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	start := time.Now()
	const trips = 3
	for i := 0; i < trips; i++ {
		c.Write([]byte("ping\n"))
		if line, err := r.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo %q %v", line, err)
		}
	}
	if el := time.Since(start); el < trips*rtt || el > trips*rtt*5 {
		t.Errorf("%d round trips took %v, want about %v", trips, el, trips*rtt)
	}
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hung")
	}
	c.Close()
}
