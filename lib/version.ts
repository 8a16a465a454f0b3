/** The program's version; `tests/permissions_test.ts` checks it matches `deno.json`. */
export const VERSION = "0.1.0";
