// The peer server of `npm run bench:xds -- --peer go-control-plane`: go-control-plane's SnapshotCache
// and xDS server (SotW and Delta over ADS) on loopback, serving resources the Node benchmark
// exported from the project's own controlplane/xds code (bench/support/peer-resources.ts), so
// both servers serve the same content. Driven over stdin/stdout, one JSON object per line:
//
//	stdout: {"type":"ready",...} once listening, then one reply per command (same "id")
//	stdin:  {"id":1,"cmd":"change"} (publish the next generation), "gc", "exit"
//
// --snapshot shared (default): every node shares one snapshot (a NodeHash that maps every node to
// one key), one SetSnapshot per change: what a control plane serving identical config to a fleet
// does. --snapshot per-node: each node gets its own snapshot whose ECDS resources carry what ours
// renders per Envoy (the node id in the module URL; nack_on_code_cache_miss false while the filter
// is new to the node, true for a changed module), one SetSnapshot per node per change.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	// Registers the resource message types, so anypb.UnmarshalNew finds them by type URL.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	wasmfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// The export format written by bench/support/peer-resources.ts ([]byte fields are base64 in JSON).
type exportFile struct {
	Generations []generation `json:"generations"`
	// Our per-Envoy ECDS bytes for one node, to check the per-node rendering here matches them.
	EcdsSamples []ecdsSample `json:"ecdsSamples"`
}
type ecdsSample struct {
	NodeID string `json:"nodeId"`
	Name   string `json:"name"`
	Nack   bool   `json:"nack"`
	Value  []byte `json:"value"`
}
type generation struct {
	Types []typeExport `json:"types"`
}
type typeExport struct {
	TypeURL   string           `json:"typeUrl"`
	Version   string           `json:"version"`
	Resources []resourceExport `json:"resources"`
}
type resourceExport struct {
	Name  string `json:"name"`
	Value []byte `json:"value"`
}

const ecdsType = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

// sharedHash maps every node to one snapshot key.
type sharedHash struct{}

func (sharedHash) ID(*core.Node) string { return "shared" }

// built is one generation as a go-control-plane snapshot plus what the driver needs to know of it.
type built struct {
	snapshot *cachev3.Snapshot
	// ECDS type version (SotW version_info) and, per ECDS resource, go-control-plane's own delta
	// resource version (sha256 of the marshalled resource, as cachev3.HashResource computes it).
	ecdsVersion    string
	deltaVersions  map[string]string
	resources      int
	identicalBytes int
	// Resources whose re-encoding differs from the export (same content, other field order).
	reordered []string
	// The canonical ECDS resources, by name (per-node mode renders each node's copy from them).
	ecds map[string]*core.TypedExtensionConfig
	// The ECDS resource bytes, by name: a filter whose bytes changed since a node's first
	// generation is an update for that node (nack_on_code_cache_miss: true).
	ecdsBytes map[string]string
}

func build(g generation) (*built, error) {
	out := &built{
		snapshot: &cachev3.Snapshot{}, deltaVersions: map[string]string{},
		ecds: map[string]*core.TypedExtensionConfig{}, ecdsBytes: map[string]string{},
	}
	for _, t := range g.Types {
		idx := cachev3.GetResponseType(t.TypeURL)
		if idx == types.UnknownType {
			return nil, fmt.Errorf("unsupported type URL %q", t.TypeURL)
		}
		items := make([]types.Resource, 0, len(t.Resources))
		for _, r := range t.Resources {
			// Typed messages, as a go-control-plane user holds them (the cache marshals them).
			msg, err := anypb.UnmarshalNew(&anypb.Any{TypeUrl: t.TypeURL, Value: r.Value}, proto.UnmarshalOptions{})
			if err != nil {
				return nil, fmt.Errorf("decoding %s %q: %w", t.TypeURL, r.Name, err)
			}
			if got := cachev3.GetResourceName(msg); got != r.Name {
				return nil, fmt.Errorf("%s: exported as %q, decodes with name %q", t.TypeURL, r.Name, got)
			}
			marshalled, err := cachev3.MarshalResource(msg)
			if err != nil {
				return nil, fmt.Errorf("re-encoding %s %q: %w", t.TypeURL, r.Name, err)
			}
			out.resources++
			if string(marshalled) == string(r.Value) {
				out.identicalBytes++
			} else {
				out.reordered = append(out.reordered, fmt.Sprintf("%s (%d vs %d bytes)", r.Name, len(marshalled), len(r.Value)))
			}
			if t.TypeURL == ecdsType {
				out.deltaVersions[r.Name] = cachev3.HashResource(marshalled)
				tec, ok := msg.(*core.TypedExtensionConfig)
				if !ok {
					return nil, fmt.Errorf("%s %q decodes as %T", t.TypeURL, r.Name, msg)
				}
				out.ecds[r.Name] = tec
				out.ecdsBytes[r.Name] = string(r.Value)
			}
			items = append(items, msg)
		}
		// Per-type versions (ours): an ECDS-only change leaves the CDS/LDS/RDS watches asleep.
		out.snapshot.Resources[idx] = cachev3.NewResources(t.Version, items)
		if t.TypeURL == ecdsType {
			out.ecdsVersion = t.Version
		}
	}
	return out, nil
}

// renderFor is one node's copy of an ECDS resource, the way our server renders it: the node id as
// the module URL's query (URLSearchParams form encoding, as url.Values encodes) and the cache-miss flag.
func renderFor(base *core.TypedExtensionConfig, nodeID string, nack bool) (*core.TypedExtensionConfig, error) {
	var filter wasmfilter.Wasm
	if err := base.GetTypedConfig().UnmarshalTo(&filter); err != nil {
		return nil, fmt.Errorf("%s: typed_config is not a Wasm filter: %w", base.GetName(), err)
	}
	vm := filter.GetConfig().GetVmConfig()
	httpURI := vm.GetCode().GetRemote().GetHttpUri()
	if vm == nil || httpURI == nil {
		return nil, fmt.Errorf("%s: no vm_config.code.remote.http_uri", base.GetName())
	}
	vm.NackOnCodeCacheMiss = nack
	httpURI.Uri += "?" + url.Values{"node": {nodeID}}.Encode()
	// Deterministic: allowed_capabilities is a map, which ours writes in sorted key order.
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(&filter)
	if err != nil {
		return nil, err
	}
	return &core.TypedExtensionConfig{Name: base.GetName(), TypedConfig: &anypb.Any{TypeUrl: base.GetTypedConfig().GetTypeUrl(), Value: value}}, nil
}

// perNode holds every known node's first generation and builds its snapshots.
type perNode struct {
	mu    sync.Mutex
	first map[string]int
	gens  []*built
}

// snapshotFor is gens[gen] with the ECDS resources rendered for the node.
func (p *perNode) snapshotFor(nodeID string, gen, firstGen int) (*cachev3.Snapshot, error) {
	g := p.gens[gen]
	snap := &cachev3.Snapshot{Resources: g.snapshot.Resources}
	idx := cachev3.GetResponseType(ecdsType)
	items := make([]types.Resource, 0, len(g.ecds))
	for name, base := range g.ecds {
		// New to the node: fetched while warming (false); changed since: an update (true).
		nack := g.ecdsBytes[name] != p.gens[firstGen].ecdsBytes[name]
		r, err := renderFor(base, nodeID, nack)
		if err != nil {
			return nil, err
		}
		items = append(items, r)
	}
	snap.Resources[idx] = cachev3.NewResources(g.ecdsVersion, items)
	return snap, nil
}

// checkSamples compares this rendering with our server's for the same node and state: the same
// bytes, or the same content (re-encoded here in field-number order, a false bool left out where
// protobufjs writes it).
func (p *perNode) checkSamples(samples []ecdsSample) (identical, equal, total int, err error) {
	for _, s := range samples {
		base, ok := p.gens[0].ecds[s.Name]
		if !ok {
			return 0, 0, 0, fmt.Errorf("sample %q: no such ECDS resource", s.Name)
		}
		r, err := renderFor(base, s.NodeID, s.Nack)
		if err != nil {
			return 0, 0, 0, err
		}
		b, err := cachev3.MarshalResource(r)
		if err != nil {
			return 0, 0, 0, err
		}
		total++
		if string(b) == string(s.Value) {
			identical++
		}
		var ours core.TypedExtensionConfig
		var oursWasm, mineWasm wasmfilter.Wasm
		if proto.Unmarshal(s.Value, &ours) == nil && ours.GetTypedConfig().UnmarshalTo(&oursWasm) == nil &&
			r.GetTypedConfig().UnmarshalTo(&mineWasm) == nil && proto.Equal(&oursWasm, &mineWasm) {
			equal++
		}
	}
	return identical, equal, total, nil
}

// nowMs is the wall clock in ms, the clock the Node side reads as performance.timeOrigin + now().
func nowMs() float64 { return float64(time.Now().UnixNano()) / 1e6 }

func rssBytes() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return -1
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(data), &size, &resident); err != nil {
		return -1
	}
	return resident * int64(os.Getpagesize())
}

type command struct {
	ID  int    `json:"id"`
	Cmd string `json:"cmd"`
}

func main() {
	resourcesPath := flag.String("resources", "", "JSON export of the resources (bench/support/peer-resources.ts)")
	addr := flag.String("listen", "127.0.0.1:0", "gRPC listen address")
	maxStreams := flag.Uint("max-concurrent-streams", 128, "HTTP/2 streams per connection (ours: 128)")
	mode := flag.String("snapshot", "shared", "shared (one snapshot for every node) or per-node")
	flag.Parse()
	if *mode != "shared" && *mode != "per-node" {
		fmt.Fprintf(os.Stderr, "go-control-plane peer: --snapshot: shared or per-node, got %q\n", *mode)
		os.Exit(2)
	}
	if err := run(*resourcesPath, *addr, uint32(*maxStreams), *mode == "per-node"); err != nil {
		fmt.Fprintf(os.Stderr, "go-control-plane peer: %v\n", err)
		os.Exit(1)
	}
}

func run(resourcesPath, addr string, maxStreams uint32, perNodeMode bool) error {
	raw, err := os.ReadFile(resourcesPath)
	if err != nil {
		return fmt.Errorf("reading --resources: %w", err)
	}
	var exported exportFile
	if err := json.Unmarshal(raw, &exported); err != nil {
		return fmt.Errorf("parsing %s: %w", resourcesPath, err)
	}
	if len(exported.Generations) < 2 {
		return fmt.Errorf("%s: need an initial generation and at least one change, got %d", resourcesPath, len(exported.Generations))
	}
	gens := make([]*built, len(exported.Generations))
	for i, g := range exported.Generations {
		if gens[i], err = build(g); err != nil {
			return fmt.Errorf("generation %d: %w", i, err)
		}
	}

	ctx := context.Background()
	current := 0
	var cache cachev3.SnapshotCache
	var callbacks serverv3.Callbacks
	nodes := &perNode{first: map[string]int{}, gens: gens}
	samplesIdentical, samplesEqual, samplesTotal := 0, 0, 0
	if perNodeMode {
		if samplesIdentical, samplesEqual, samplesTotal, err = nodes.checkSamples(exported.EcdsSamples); err != nil {
			return fmt.Errorf("rendering the ECDS samples: %w", err)
		}
		cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
		// A node's snapshot is set when its first request arrives (before the server opens the
		// request's watch), like a control plane that renders per node on connect.
		ensure := func(node *core.Node) error {
			if node.GetId() == "" {
				return nil
			}
			nodes.mu.Lock()
			defer nodes.mu.Unlock()
			if _, ok := nodes.first[node.GetId()]; ok {
				return nil
			}
			nodes.first[node.GetId()] = current
			snap, err := nodes.snapshotFor(node.GetId(), current, current)
			if err != nil {
				return err
			}
			return cache.SetSnapshot(ctx, node.GetId(), snap)
		}
		callbacks = serverv3.CallbackFuncs{
			StreamRequestFunc:      func(_ int64, r *discovery.DiscoveryRequest) error { return ensure(r.GetNode()) },
			StreamDeltaRequestFunc: func(_ int64, r *discovery.DeltaDiscoveryRequest) error { return ensure(r.GetNode()) },
		}
	} else {
		cache = cachev3.NewSnapshotCache(true, sharedHash{}, nil)
		if err := cache.SetSnapshot(ctx, "shared", gens[0].snapshot); err != nil {
			return fmt.Errorf("initial snapshot: %w", err)
		}
	}
	xds := serverv3.NewServer(ctx, cache, callbacks)
	grpcServer := grpc.NewServer(grpc.MaxConcurrentStreams(maxStreams))
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	go func() {
		if err := grpcServer.Serve(lis); err != nil {
			fmt.Fprintf(os.Stderr, "go-control-plane peer: serve: %v\n", err)
			os.Exit(1)
		}
	}()

	out := json.NewEncoder(os.Stdout)
	buildInfo, _ := debug.ReadBuildInfo()
	gcpVersion := "?"
	for _, d := range buildInfo.Deps {
		if d.Path == "github.com/envoyproxy/go-control-plane" {
			gcpVersion = d.Version
		}
	}
	// Every generation's versions, so the driver knows what the clients will ACK before a change.
	versions := make([]map[string]any, len(gens))
	for i, g := range gens {
		versions[i] = map[string]any{"ecdsVersion": g.ecdsVersion, "resourceVersions": g.deltaVersions}
	}
	if err := out.Encode(map[string]any{
		"type":             "ready",
		"generations":      versions,
		"port":             lis.Addr().(*net.TCPAddr).Port,
		"pid":              os.Getpid(),
		"ecdsVersion":      gens[0].ecdsVersion,
		"resourceVersions": gens[0].deltaVersions,
		"resources":        gens[0].resources,
		"identicalBytes":   gens[0].identicalBytes,
		"reordered":        gens[0].reordered,
		"goVersion":        runtime.Version(),
		"gomaxprocs":       runtime.GOMAXPROCS(0),
		"goControlPlane":   gcpVersion,
		"snapshot":         map[bool]string{false: "shared", true: "per-node"}[perNodeMode],
		"samplesIdentical": samplesIdentical,
		"samplesEqual":     samplesEqual,
		"samplesTotal":     samplesTotal,
	}); err != nil {
		return err
	}

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var c command
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			return fmt.Errorf("bad command %q: %w", in.Text(), err)
		}
		switch c.Cmd {
		case "change":
			if current+1 >= len(gens) {
				return fmt.Errorf("change %d: only %d generations exported", current+1, len(gens))
			}
			nodes.mu.Lock()
			current++
			next := gens[current]
			publishedAt := nowMs()
			// SetSnapshot hands every woken watch its response before it returns; the stream
			// goroutines marshal and send them concurrently.
			if perNodeMode {
				for id, first := range nodes.first {
					snap, err := nodes.snapshotFor(id, current, first)
					if err == nil {
						err = cache.SetSnapshot(ctx, id, snap)
					}
					if err != nil {
						nodes.mu.Unlock()
						return fmt.Errorf("change %d, node %s: %w", current, id, err)
					}
				}
			} else if err := cache.SetSnapshot(ctx, "shared", next.snapshot); err != nil {
				nodes.mu.Unlock()
				return fmt.Errorf("change %d: %w", current, err)
			}
			fanoutMs := nowMs() - publishedAt
			nodes.mu.Unlock()
			err = out.Encode(map[string]any{
				"id": c.ID, "publishedAt": publishedAt, "fanoutMs": fanoutMs, "ecdsVersion": next.ecdsVersion,
				"resourceVersions": next.deltaVersions, "identicalBytes": next.identicalBytes, "resources": next.resources,
			})
		case "gc":
			// Collect and return freed pages to the OS, so RSS counts live memory (ours: gc() twice).
			debug.FreeOSMemory()
			err = out.Encode(map[string]any{"id": c.ID, "rss": rssBytes()})
		case "exit":
			grpcServer.Stop()
			_ = out.Encode(map[string]any{"id": c.ID, "ok": true})
			return nil
		default:
			err = out.Encode(map[string]any{"id": c.ID, "error": "unknown command " + c.Cmd})
		}
		if err != nil {
			return fmt.Errorf("writing reply: %w", err)
		}
	}
	// stdin closed: the driver is gone.
	grpcServer.Stop()
	return in.Err()
}
