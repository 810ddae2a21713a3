// Source text for throwaway filters used by the build tests.

/** A complete filter whose request-headers hook runs `statement` (plus optional imports). */
export function filterSource(opts: { rootId?: string; statement?: string; imports?: string } = {}): string {
  const rootId = opts.rootId ?? "test-filter";
  return `export * from "@solo-io/proxy-runtime/proxy";
import { RootContext, Context, registerRootContext, FilterHeadersStatusValues, stream_context } from "@solo-io/proxy-runtime";
${opts.imports ?? ""}

class TestRoot extends RootContext {
  createContext(context_id: u32): Context {
    return new TestContext(context_id, this);
  }
}

class TestContext extends Context {
  onRequestHeaders(headers: u32, end_of_stream: bool): FilterHeadersStatusValues {
    ${opts.statement ?? `stream_context.headers.request.add("x-test", "1");`}
    return FilterHeadersStatusValues.Continue;
  }
}

registerRootContext((context_id: u32): RootContext => { return new TestRoot(context_id); }, "${rootId}");
`;
}
