export * from "./malloc";
export * from "./exports";
