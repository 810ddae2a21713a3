/** Wrong command line: exit 2 with the usage. */
export class UsageError extends Error {}

/** The command could not do its job (API refused, build failed, folder exists): exit 1. */
export class CliError extends Error {}
