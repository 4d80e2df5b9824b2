// SierraDB from redigo (Debian golang-github-gomodule-redigo-dev), default settings (RESP2).
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run examples/clients/go/redigo.go [port]
//
// Consumers use EPREAD ... BLOCK (redigo's PubSubConn only understands Redis's own pushes).
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/gomodule/redigo/redis"
)

func asMap(v interface{}) map[string]interface{} {
	flat := v.([]interface{})
	m := map[string]interface{}{}
	for i := 0; i < len(flat); i += 2 {
		m[string(flat[i].([]byte))] = flat[i+1]
	}
	return m
}

func str(v interface{}) string { return string(v.([]byte)) }

func check(ok bool, what string) {
	if !ok {
		fmt.Fprintln(os.Stderr, "failed:", what)
		os.Exit(1)
	}
}

func must(v interface{}, err error) interface{} {
	if err != nil {
		panic(err)
	}
	return v
}

func main() {
	addr := "127.0.0.1:9090"
	if len(os.Args) > 1 {
		addr = "127.0.0.1:" + os.Args[1]
	}
	dial := func() redis.Conn { return must(redis.Dial("tcp", addr)).(redis.Conn) }
	r := dial()
	defer r.Close()
	b := make([]byte, 4)
	rand.Read(b)
	stream := "account-" + hex.EncodeToString(b)

	// Append with an expected version; a conflict's error code reaches the caller.
	opened := asMap(must(r.Do("EAPPEND", stream, "Opened", "PAYLOAD", `{"owner":"ann"}`,
		"EXPECTED_VERSION", "empty")))
	must(r.Do("EAPPEND", stream, "Deposited", "PAYLOAD", `{"amount":10}`, "EXPECTED_VERSION", 0))
	_, err := r.Do("EAPPEND", stream, "Deposited", "EXPECTED_VERSION", 0)
	check(err != nil && strings.HasPrefix(err.Error(), "WRONGVER"), fmt.Sprint(err))
	partition := opened["partition_id"].(int64)

	// Several events in one partition, atomically.
	multi := asMap(must(r.Do("EMAPPEND", str(opened["partition_key"]), stream, "A", stream, "B")))
	var multiVersions []int64
	for _, e := range multi["events"].([]interface{}) {
		multiVersions = append(multiVersions, asMap(e)["stream_version"].(int64))
	}
	check(reflect.DeepEqual(multiVersions, []int64{2, 3}), "EMAPPEND")

	// Read back by stream, by partition and by event id.
	var names []string
	for _, e := range asMap(must(r.Do("ESCAN", stream, "-", "+")))["events"].([]interface{}) {
		names = append(names, str(asMap(e)["event_name"]))
	}
	check(reflect.DeepEqual(names, []string{"Opened", "Deposited", "A", "B"}), "ESCAN")
	seq := opened["partition_sequence"]
	byPartition := asMap(must(r.Do("EPSCAN", partition, seq, seq)))["events"].([]interface{})
	check(str(asMap(byPartition[0])["event_id"]) == str(opened["event_id"]), "EPSCAN")
	check(str(asMap(must(r.Do("EGET", str(opened["event_id"]))))["event_name"]) == "Opened", "EGET")

	// Page to the end.
	var versions []int64
	for start := int64(0); ; {
		page := asMap(must(r.Do("ESCAN", stream, start, "+", "COUNT", 3)))
		for _, e := range page["events"].([]interface{}) {
			start = asMap(e)["stream_version"].(int64)
			versions = append(versions, start)
		}
		if page["has_more"].(int64) == 0 {
			break
		}
		start++
	}
	check(reflect.DeepEqual(versions, []int64{0, 1, 2, 3}), "paging")

	// 50 pipelined appends: Send buffers, Flush writes them at once, Receive reads the replies.
	for i := 0; i < 50; i++ {
		r.Send("EAPPEND", stream, "Piped", "PAYLOAD", i)
	}
	must(nil, r.Flush())
	for i := 0; i < 50; i++ {
		check(asMap(must(r.Receive()))["stream_version"].(int64) == int64(i+4), "pipeline")
	}

	// Binary payload round trip.
	blob := make([]byte, 1024)
	for i := range blob {
		blob[i] = byte(i % 256)
	}
	stored := asMap(must(r.Do("EAPPEND", stream, "Blob", "PAYLOAD", blob)))
	back := asMap(must(r.Do("EGET", str(stored["event_id"]))))
	check(reflect.DeepEqual(back["payload"].([]byte), blob), "binary payload")

	// A consumer follows the partition from sequence 0 into live events while another
	// connection appends; every event once, in order.
	const live = 30
	done := make(chan struct{})
	go func() {
		w := dial()
		defer w.Close()
		for i := 0; i < live; i++ {
			must(w.Do("EAPPEND", stream, "Live", "PAYLOAD", i))
		}
		close(done)
	}()
	consumer := dial() // a blocked read holds its connection
	defer consumer.Close()
	var seen []map[string]interface{}
	position := int64(0)
	writerDone := false
	for {
		select {
		case <-done:
			writerDone = true
		default:
		}
		if writerDone && position > must(redis.Int64(r.Do("EPSEQ", partition))).(int64) {
			break
		}
		reply := must(consumer.Do("EPREAD", "COUNT", 100, "BLOCK", 2000, "FROM", partition, position))
		flat := reply.([]interface{})
		for i := 1; i < len(flat); i += 2 {
			for _, e := range asMap(flat[i])["events"].([]interface{}) {
				event := asMap(e)
				check(event["partition_sequence"].(int64) == position, "in order")
				seen = append(seen, event)
				position++
			}
		}
	}
	var mine, liveSeen []string
	n := int64(0)
	for _, e := range seen {
		if str(e["stream_id"]) != stream {
			continue
		}
		check(e["stream_version"].(int64) == n, "every version once")
		n++
		mine = append(mine, str(e["event_name"]))
		if str(e["event_name"]) == "Live" {
			liveSeen = append(liveSeen, str(e["payload"]))
		}
	}
	for i := 0; i < live; i++ {
		check(liveSeen[i] == fmt.Sprint(i), "live events")
	}
	check(len(liveSeen) == live, "live events")
	fmt.Println("OK redigo")
}
