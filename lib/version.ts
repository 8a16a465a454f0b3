/** The program's version; `tests/unit/commands/permissions_test.ts` checks it matches `deno.json`. */
export const VERSION = "0.1.0";
