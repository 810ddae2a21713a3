// The Node flags `npm run cp` starts the control plane with (package.json "cp"; every other
// launcher, the dev loop, the tests and the benchmarks, takes them from here; a unit test keeps
// package.json in step).
//
// --max-semi-space-size=16: V8's young generation at most 2 x 16 MiB, Node 22's size. Node 24 and
// 26 size it from the heap limit and grow it to ~50 MiB during an xDS fan-out, memory the process
// keeps: measured with 1,000 idle streams, RSS per stream 58-65 KiB on Node 24 against 43 KiB with
// this flag (5,000: 40 against 22), with the same fan-out CPU (bench:xds --peer, docs/benchmarks.md).
export const CONTROLPLANE_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=16"];
