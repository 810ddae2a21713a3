export * from "@solo-io/proxy-runtime/proxy";
import {
  RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context,
} from "@solo-io/proxy-runtime";
import { readPluginConfiguration } from "../_lib/config";

// __NAME__: stamps `x-__NAME__: <configuration>` ("on" when there is none) on every request
// (the upstream sees it) and response (the client sees it).
//
// - Configuration: "configuration" in filter.json, or at run time
//   PUT /api/filters/__NAME__/configuration (no rebuild).
// - Check it: npm run filters -- test __NAME__ (builds, validates, runs filter.test.json).
// - Save this file with the control plane running and Envoy runs the new module.

class __CLASS__Root extends RootContext {
  value: string = "on";

  createContext(context_id: u32): Context {
    return new __CLASS__(context_id, this);
  }

  // Replaces the runtime's onConfigure, which misreads the configuration (see _lib/config.ts).
  onConfigure(configuration_size: u32): bool {
    const configured = readPluginConfiguration(configuration_size);
    this.value = configured.length > 0 ? configured : "on";
    return true;
  }
}

class __CLASS__ extends Context {
  value: string;

  constructor(context_id: u32, root_context: __CLASS__Root) {
    super(context_id, root_context);
    this.value = root_context.value;
  }

  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.request.add("x-__NAME__", this.value);
    return FilterHeadersStatusValues.Continue;
  }

  onResponseHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    stream_context.headers.response.add("x-__NAME__", this.value);
    return FilterHeadersStatusValues.Continue;
  }
}

// The root id Envoy asks for: the filter name (the control plane reads it from this call).
registerRootContext((context_id: u32): RootContext => {
  return new __CLASS__Root(context_id);
}, "__NAME__");
