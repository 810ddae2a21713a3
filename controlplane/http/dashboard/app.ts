// The dashboard page: filters (with the enable switch), connected Envoys and a live event
// timeline. Polls the API (fast while the event stream is down, slowly as a safety net while
// it is live) and refreshes at once on any event.

import { api, ApiError, getToken, setToken, type ClientView, type FilterView, type RoutesApiView } from "./api.ts";
import { byId } from "./dom.ts";
import { addToTimeline, openEventStream, type StreamState } from "./timeline.ts";
import { FiltersTable, renderEnvoys, renderRoutes } from "./views.ts";

const POLL_MS = 2_000;
const POLL_WHILE_LIVE_MS = 15_000;
const EVENT_REFRESH_MS = 150;

const apiStatus = byId("api-status");
const eventsStatus = byId("events-status");
const message = byId<HTMLParagraphElement>("message");
const tokenInput = byId<HTMLInputElement>("token");
const timeline = byId<HTMLOListElement>("timeline");

let streamState: StreamState = "connecting";
let timer: ReturnType<typeof setTimeout> | undefined;
let due = Infinity;
let running = false;
let again = false;

function status(el: HTMLElement, state: string, text: string): void {
  el.dataset.state = state;
  el.textContent = text;
}

function showMessage(text?: string): void {
  message.textContent = text ?? "";
  message.hidden = !text;
}

const reason = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const filters = new FiltersTable(byId<HTMLTableElement>("filters").tBodies[0]!, (name, enabled, input) => void toggle(name, enabled, input));

async function toggle(name: string, enabled: boolean, input: HTMLInputElement): Promise<void> {
  input.dataset.pending = "";
  input.disabled = true;
  try {
    await api<FilterView>(`/api/filters/${encodeURIComponent(name)}/${enabled ? "enable" : "disable"}`, "POST");
    showMessage();
  } catch (err) {
    input.checked = !enabled;
    showMessage(`Could not ${enabled ? "enable" : "disable"} ${name}: ${reason(err)}`);
  } finally {
    delete input.dataset.pending;
    input.disabled = false;
    refreshSoon(0);
  }
}

async function refresh(): Promise<void> {
  try {
    const [filterList, clients] = await Promise.all([api<FilterView[]>("/api/filters"), api<ClientView[]>("/api/clients")]);
    filters.render(filterList);
    byId("filters-empty").hidden = filterList.length > 0;
    renderEnvoys(byId("envoys"), clients);
    byId("envoys-empty").hidden = clients.length > 0;
    // Routes on their own: a control plane without GET /api/routes still shows the rest.
    await api<RoutesApiView>("/api/routes")
      .then((r) => renderRoutes(byId<HTMLTableElement>("routes").tBodies[0]!, byId("routes-source"), byId("routes-error"), r))
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.status === 401) throw err;
      });
    status(apiStatus, "ok", "connected");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      status(apiStatus, "token", getToken() ? "token rejected" : "token required");
      if (document.activeElement !== tokenInput) tokenInput.focus();
    } else {
      status(apiStatus, "down", `API unreachable: ${reason(err)}`);
    }
  }
}

/** A refresh in `ms`, unless one is due sooner; never two at once. Each schedules the next poll. */
function refreshSoon(ms: number): void {
  const at = Date.now() + ms;
  if (timer !== undefined && at >= due) return;
  clearTimeout(timer);
  due = at;
  timer = setTimeout(fire, ms);
}

function fire(): void {
  timer = undefined;
  due = Infinity;
  if (running) {
    again = true;
    return;
  }
  running = true;
  void refresh().finally(() => {
    running = false;
    if (again) refreshSoon(0);
    else refreshSoon(streamState === "live" ? POLL_WHILE_LIVE_MS : POLL_MS);
    again = false;
  });
}

let closeStream = startStream();
function startStream(): () => void {
  return openEventStream({
    event(e) {
      addToTimeline(timeline, e);
      refreshSoon(EVENT_REFRESH_MS);
    },
    state(state, detail) {
      streamState = state;
      status(eventsStatus, state, detail);
      if (state !== "live") refreshSoon(POLL_MS);
    },
  });
}

tokenInput.value = getToken();
byId<HTMLFormElement>("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken(tokenInput.value.trim());
  closeStream();
  closeStream = startStream();
  refreshSoon(0);
});

refreshSoon(0);
