/** The echo upstream of the e2e tests: the one `npm run dev` runs (dev/echo.ts). */
export * from "../../dev/echo.ts";
