import type { FastifyInstance, FastifyReply } from "fastify";
import type { AdminDeps } from "../admin-deps.ts";
import { dashboardFile, dashboardScript } from "../dashboard/bundle.ts";

// The page and its assets hold no data: everything it shows comes from the API, with the
// operator's token. So they are served without one (route config `public: true`, which the
// auth hook honours) and the page asks for the token when the API answers 401.
const PAGE = { config: { public: true }, schema: { hide: true } } as const;

// Data only ever reaches the DOM as text (app.ts never assigns innerHTML), and the policy
// forbids inline and foreign scripts on top of that.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function send(reply: FastifyReply, type: string, body: string | Buffer): FastifyReply {
  return reply
    .type(type)
    .header("cache-control", "no-cache")
    .header("x-content-type-options", "nosniff")
    .header("content-security-policy", CSP)
    .send(body);
}

/** The operator dashboard served at `/`: filters, Envoys and a live event timeline. */
export async function dashboardRoutes(app: FastifyInstance, _deps: AdminDeps): Promise<void> {
  app.get("/", PAGE, async (_req, reply) => {
    const page = await dashboardFile("index.html");
    return send(reply, page.type, page.body);
  });
  app.get("/dashboard/style.css", PAGE, async (_req, reply) => {
    const css = await dashboardFile("style.css");
    return send(reply, css.type, css.body);
  });
  app.get("/dashboard/app.js", PAGE, async (_req, reply) => send(reply, "text/javascript; charset=utf-8", await dashboardScript()));
  // Browsers ask for it on every page load; an empty answer keeps 404s out of the logs.
  app.get("/favicon.ico", PAGE, async (_req, reply) => reply.code(204).send());
}
