/**
 * The settings of the Redis server that the Redis store's guarantees rest
 * on, and what another value costs. The store reads them at every
 * connection (`CONFIG GET`) and warns about each one that breaks a
 * guarantee (docs/redis.md, "The settings the server checks").
 *
 * @module
 */

/**
 * The settings of Redis that the guarantees rest on: for each, the value it
 * needs and what another value costs.
 */
const SETTING_RULES: Record<string, { wanted: string; cost: string }> = {
  appendonly: {
    wanted: "yes",
    cost: "a restart of Redis loses every lock, and every replica then grants nothing for " +
      "--maxDuration (recovery)",
  },
  appendfsync: {
    wanted: "always",
    cost: "a crash of Redis loses the changes of its last second, so a lock may be granted twice",
  },
  "maxmemory-policy": {
    wanted: "noeviction",
    cost: "Redis may evict the semaphore's keys when its memory is full, which loses locks",
  },
};

/** One sentence for each setting that breaks a guarantee. */
export function settingProblems(values: ReadonlyMap<string, string>): string[] {
  const problems: string[] = [];
  for (const [name, { wanted, cost }] of Object.entries(SETTING_RULES)) {
    const value = values.get(name);
    if (value === undefined || value === wanted) continue;
    // Without an append-only file, how often it is synced does not matter.
    if (name === "appendfsync" && values.get("appendonly") !== "yes") continue;
    problems.push(`${name} is ${value}, not ${wanted}: ${cost}`);
  }
  return problems;
}

/** The names of the settings checked, for `CONFIG GET`. */
export const SETTING_NAMES: readonly string[] = Object.keys(SETTING_RULES);
