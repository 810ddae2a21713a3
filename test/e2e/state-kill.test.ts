// "Every change made through the API is persisted (atomic write) and survives restart and
// SIGKILL at any moment: a kill during a write leaves either the old or the new state, never a
// corrupt file." The real control plane process (no Envoy needed) takes a stream of API changes
// and is SIGKILLed at a different moment each round; then the file must parse, hold only values
// that were sent, hold every acknowledged change (or the one in flight after it), and a
// restarted control plane must start (stale temp files and all) and serve exactly that state.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it, type TestContext } from "node:test";
import { allocatePorts, copyFilters, startControlPlane, type ControlPlaneProcess } from "../support/controlplane.ts";
import { httpRequest } from "../support/http.ts";
import { makeWorkDir } from "../support/paths.ts";

const ROUNDS = 6;
/** Kill when this many API responses have arrived in the round (0: as soon as requests go out)... */
const KILL_AFTER_RESPONSES = [0, 1, 3, 8, 21, 55];
/** ...plus this many ms on a timer, so the kill lands at varied points of the server's work. */
const KILL_DELAY_MS = [0, 1, 2, 0, 3, 1];
/** Requests one lane sends at most per round (the round normally ends with the kill first). */
const MAX_PER_LANE = 150;
/**
 * One filter (each restart builds it): four lanes change four of its fields concurrently, so
 * writes overlap and each one merges into the same entry.
 */
const FILTER = "add-header";
const FIELDS = ["enabled", "configuration", "order", "failPolicy"] as const;
type Field = (typeof FIELDS)[number];
/** The manifest's values (filters/add-header/filter.json), served while the state says nothing. */
const DEFAULTS: Record<Field, Value | null> = { enabled: true, configuration: null, order: 10, failPolicy: "reload" };
/** A large configuration makes each state write long enough to be cut by a kill. */
const CONFIG_PADDING = 60_000;

type Value = boolean | string | number;

/** One sequential stream of changes to one field of the filter. */
interface Lane {
  field: Field;
  /** The value the last 200 answered for (the state before this round when none yet). */
  acked: Value | undefined;
  /** Sent, no answer (yet): the kill may have caught its write. */
  inFlight: Value | undefined;
  sent: number;
  /** A non-kill failure: an answer other than 200. */
  failure?: string;
}

interface StateFile {
  filters: Record<string, Record<string, unknown>>;
}

describe("operator state under SIGKILL", { timeout: 300_000 }, () => {
  it(`every acknowledged change survives ${ROUNDS} SIGKILLs at varied moments; the file is never corrupt`, async (t: TestContext) => {
    const workDir = makeWorkDir("state-kill");
    const filtersDir = copyFilters(path.join(workDir, "filters"));
    const stateDir = path.join(workDir, "state");
    const stateFile = path.join(stateDir, "state.json");
    let cp: ControlPlaneProcess | undefined;
    let staleTempFiles = 0;
    let responsesTotal = 0;

    const start = async (round: number): Promise<ControlPlaneProcess> => {
      const ports = await allocatePorts();
      // No Envoy here: the upstream is only a value in the pushed resources.
      return startControlPlane({ ports, filtersDir, stateFile, upstreamPort: 9, workDir, name: `controlplane-${round}` });
    };

    /** Parses and checks the state file; every (filter, field) a lane touched is acked or in flight. */
    const checkFile = (lanes: readonly Lane[], when: string): StateFile => {
      if (!fs.existsSync(stateFile)) {
        assert.ok(lanes.every((l) => l.acked === undefined), `${when}: no state file, yet changes were acknowledged`);
        return { filters: {} };
      }
      const text = fs.readFileSync(stateFile, "utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        assert.fail(`${when}: state file is not JSON (${(err as Error).message}): ${JSON.stringify(text.slice(0, 200))}...${JSON.stringify(text.slice(-100))}`);
      }
      const state = parsed as StateFile;
      assert.equal(typeof state.filters, "object", `${when}: {"filters": {...}}`);
      assert.deepEqual(Object.keys(state.filters).filter((name) => name !== FILTER), [], `${when}: only ${FILTER}`);
      for (const [key, value] of Object.entries(state.filters[FILTER] ?? {})) {
        if (key === "enabled") assert.equal(typeof value, "boolean", `${when}: enabled`);
        else if (key === "configuration") assert.match(String(value), /^r\d+-\d+-x+$/, `${when}: a configuration we sent`);
        else if (key === "order") assert.ok(Number.isInteger(value), `${when}: order`);
        else if (key === "failPolicy") assert.ok(value === "open" || value === "closed", `${when}: failPolicy`);
        else assert.fail(`${when}: unexpected field ${key}`);
      }
      for (const lane of lanes) {
        const onDisk = state.filters[FILTER]?.[lane.field];
        const allowed = [lane.acked, lane.inFlight];
        assert.ok(allowed.includes(onDisk as Value | undefined),
          `${when}: ${lane.field} on disk is ${short(onDisk)}, expected the acknowledged ${short(lane.acked)} or the in-flight ${short(lane.inFlight)}`);
      }
      return state;
    };

    /** The restarted control plane serves what the file says (manifest defaults where it says nothing). */
    const checkServed = async (state: StateFile, when: string): Promise<void> => {
      const served = (await cp!.filters()) as unknown as Record<string, unknown>[];
      assert.deepEqual(served.map((f) => f.name), [FILTER], `${when}: filters served`);
      const choice = state.filters[FILTER] ?? {};
      for (const field of FIELDS) {
        assert.equal(served[0]![field], choice[field] ?? DEFAULTS[field], `${when}: ${field} served as the file says`);
      }
    };

    const lanesFrom = (state: StateFile): Lane[] =>
      FIELDS.map((field) => ({ field, acked: state.filters[FILTER]?.[field] as Value | undefined, inFlight: undefined, sent: 0 }));

    let state: StateFile = { filters: {} };
    try {
      for (let round = 0; round < ROUNDS; round++) {
        // Stale temp files (from a kill between write and rename, and planted garbage) must not
        // stop start-up or later writes.
        if (round % 3 === 1) {
          fs.mkdirSync(stateDir, { recursive: true });
          fs.writeFileSync(`${stateFile}.1.tmp`, '{"filters": {"add-header": {"enab');
          fs.writeFileSync(`${stateFile}.${process.pid}.tmp`, "\u0000garbage");
        }
        cp = await start(round);
        await checkServed(state, `round ${round} start`);

        const lanes = lanesFrom(state);
        const url = cp.adminUrl;
        let killed = false;
        let kill: Promise<void> | undefined;
        let responses = 0;
        const doKill = (): void => {
          if (kill) return;
          // The kill's timing is the experiment (a different point of the server's work each
          // round), not a wait for a condition.
          kill = new Promise<void>((resolve) => setTimeout(() => {
            killed = true;
            resolve(cp!.kill("SIGKILL"));
          }, KILL_DELAY_MS[round]));
        };
        const runLane = async (lane: Lane): Promise<void> => {
          while (!killed && lane.sent < MAX_PER_LANE) {
            const value = nextValue(lane, round);
            lane.inFlight = value;
            lane.sent++;
            const put = (what: string, body: object) => httpRequest(`${url}/api/filters/${FILTER}/${what}`, {
              method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
            });
            const request = lane.field === "enabled"
              ? httpRequest(`${url}/api/filters/${FILTER}/${value ? "enable" : "disable"}`, { method: "POST" })
              : lane.field === "configuration" ? put("configuration", { configuration: value })
              : lane.field === "order" ? put("order", { order: value })
              : put("fail-policy", { failPolicy: value });
            let status: number;
            try {
              status = (await request).status;
            } catch (err) {
              if (killed) return; // the kill cut this request: its change may or may not be on disk
              throw err;
            }
            if (status !== 200) {
              lane.failure = `${lane.field}: HTTP ${status}`;
              return;
            }
            lane.acked = value;
            lane.inFlight = undefined;
            responses++;
            responsesTotal++;
            if (responses >= KILL_AFTER_RESPONSES[round]!) doKill();
          }
        };
        const running = lanes.map(runLane);
        if (KILL_AFTER_RESPONSES[round] === 0) doKill();
        await Promise.all(running);
        doKill(); // a lane limit reached before the kill moment: kill now
        await kill;
        assert.deepEqual(lanes.flatMap((l) => (l.failure ? [l.failure] : [])), [], `round ${round}: only 200s before the kill`);

        const temps = fs.existsSync(stateDir) ? fs.readdirSync(stateDir).filter((f) => !["state.json", "modules", "records"].includes(f)) : [];
        assert.ok(temps.every((f) => /^state\.json\.\d+\.tmp$/.test(f)), `round ${round}: only state.json and temp files: ${temps.join(", ")}`);
        const pid = cp.pid;
        if (temps.some((f) => f === `state.json.${pid}.tmp`)) staleTempFiles++;
        state = checkFile(lanes, `round ${round} after SIGKILL after ${responses} responses`);
        t.diagnostic(`round ${round}: killed after ${responses} responses (+${KILL_DELAY_MS[round]} ms); on disk ${JSON.stringify(summary(state))}`);
      }

      // A last start: it serves the last file, and it can still write despite any temp files.
      cp = await start(ROUNDS);
      await checkServed(state, "final start");
      const toggled = !(state.filters[FILTER]?.enabled ?? true);
      const r = await cp.api(`/api/filters/${FILTER}/${toggled ? "enable" : "disable"}`, "POST");
      assert.equal(r.status, 200, r.body);
      const after = JSON.parse(fs.readFileSync(stateFile, "utf8")) as StateFile;
      assert.equal(after.filters[FILTER]?.enabled, toggled, "a write after all the kills lands");
      t.diagnostic(`${responsesTotal} acknowledged changes; ${staleTempFiles} kills landed between a temp write and its rename`);
    } finally {
      await cp?.kill("SIGTERM");
    }
  });
});

/** The next change of a lane: always different from the acknowledged value. */
function nextValue(lane: Lane, round: number): Value {
  switch (lane.field) {
    case "enabled": return !(lane.acked ?? true);
    case "configuration": return `r${round}-${lane.sent}-${"x".repeat(CONFIG_PADDING)}`;
    case "order": return round * 1000 + lane.sent;
    case "failPolicy": return lane.acked === "open" ? "closed" : "open";
  }
}

function short(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v.slice(0, 16) + (v.length > 16 ? "…" : "")) : String(v);
}

function summary(state: StateFile): Record<string, Record<string, unknown>> {
  return Object.fromEntries(Object.entries(state.filters).map(([name, c]) => [name, Object.fromEntries(
    Object.entries(c).map(([k, v]) => [k, typeof v === "string" ? v.split("-").slice(0, 2).join("-") : v]),
  )]));
}
