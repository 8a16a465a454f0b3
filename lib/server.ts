/**
 * Runs the lock server: wires the store, the checker, the service and the
 * handler to `Deno.serve`, and shuts everything down on SIGTERM or SIGINT.
 *
 * @module
 */
import type { ServerConfig } from "./config.ts";
import { EventBus } from "./core/events.ts";
import { Gates } from "./core/gates.ts";
import { LockService } from "./core/service.ts";
import { formatDuration } from "./duration.ts";
import { describeError } from "./errors.ts";
import { DependencyChecker } from "./gates/dependencies.ts";
import { loadGate, pressureGate } from "./gates/host.ts";
import type { TokenSource } from "./http/auth.ts";
import { createHandler } from "./http/handler.ts";
import { createLogger, formatLine, type Logger } from "./log.ts";
import { DEFAULT_WRITE_INTERVAL_MS, droppedMessage, LogWriter } from "./log_writer.ts";
import { Metrics } from "./observers/metrics.ts";
import { logEvents } from "./observers/event_log.ts";
import { logEvent } from "./log_events.ts";
import { EXIT } from "./exit.ts";
import { MemoryLockStore } from "./stores/memory.ts";
import type { LockStore } from "./core/store.ts";
import type { RedisStoreModule, RedisTarget } from "./stores/settings.ts";
import type { StoredLock } from "./stores/state_file.ts";
import type { RecoveryGate } from "./gates/recovery.ts";

/** How long in-flight requests may take to finish after a shutdown signal before the process exits anyway. */
export const SHUTDOWN_GRACE_MS = 5_000;

/** A running server. */
export interface RunningServer {
  /** The address it listens on (the real port when 0 was asked for). */
  addr: Deno.NetAddr;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), cancels timers. */
  shutdown(): Promise<void>;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
}

/** What the state file gave back at start. */
export interface PersistedState {
  /** Locks held before the restart, not yet expired. */
  locks: readonly StoredLock[];
  /** After an unreadable state file: no grants until then (wall-clock ms). */
  recoverUntil: number | undefined;
  /** The claim on the state file (`claimStateFile`), to close when the server stops. */
  claim?: Deno.FsFile;
}

const NO_STATE: PersistedState = { locks: [], recoverUntil: undefined };

/**
 * Reads the state file at start and says in one line what it found. Throws
 * when its directory takes no new file: a server that cannot keep its locks
 * must not start. The state file's code is loaded here, only with `--stateFile`.
 */
export async function readPersistedState(
  path: string,
  maxDurationMs: number,
  log: Logger,
): Promise<PersistedState> {
  const { checkWritable, claimStateFile, loadState } = await import("./stores/state_file.ts");
  await checkWritable(path);
  const claim = await claimStateFile(path);
  let loaded;
  try {
    loaded = await loadState(path);
  } catch (error) {
    claim.close();
    throw error;
  }
  switch (loaded.kind) {
    case "missing":
      log.info(
        `State file ${path} does not exist yet: starting with no locks held`,
        logEvent("state_file_missing"),
      );
      return { ...NO_STATE, claim };
    case "loaded": {
      log.info(
        `State file ${path}: ${loaded.locks.length} lock${loaded.locks.length === 1 ? "" : "s"} ` +
          `still held${loaded.expired ? `, ${loaded.expired} expired while stopped` : ""}`,
        logEvent("state_file_loaded"),
      );
      // No lock this server grants lasts longer than --maxDuration: one that ends later (a file
      // edited by hand, a clock set back while stopped) is cut to it, as a grant would be.
      const latest = Date.now() + maxDurationMs;
      const locks = loaded.locks.map((l) => l.expiresAt > latest ? { ...l, expiresAt: latest } : l);
      return { locks, recoverUntil: undefined, claim };
    }
    case "corrupt": {
      // A time ahead of now (written under a clock that ran ahead) would stop grants for as long:
      // whatever was held before was granted before now, so it ends --maxDuration from now at most.
      const until = Math.min(loaded.modifiedAt, Date.now()) + maxDurationMs;
      log.error(
        `State file ${path} is unreadable (${loaded.reason}); ` +
          (loaded.movedTo ? `moved it to ${loaded.movedTo}; ` : "could not move it aside; ") +
          `no grants until ${
            new Date(until).toISOString()
          } (--maxDuration after it was last written)`,
        logEvent("state_file_unreadable"),
      );
      return { locks: [], recoverUntil: until, claim };
    }
  }
}

/** What a server reports beside its own parts. */
export interface BuildOptions {
  /** Log lines dropped so far, for `/metrics`. @default {() => 0} */
  logLinesDropped?: () => number;
  /** What the state file gave back at start. @default {nothing held} */
  state?: PersistedState;
  /** The store, made already (Redis). @default {a memory store, kept in --stateFile if set} */
  store?: LockStore;
  /** The gate the store closes while it recovers (Redis). @default {none} */
  storeRecovery?: RecoveryGate;
  /**
   * The bearer token requests must present, from {@linkcode loadTokenSource}:
   * required when `config.auth` is set.
   */
  auth?: TokenSource;
}

/**
 * The parts of a server, built from a config: the store, the gates, the
 * service with its events, the log and the metrics that subscribe to them,
 * and the handler. The code of a part that only a flag asks for (the state
 * file, the recovery and cooldown gates) is loaded only then: module loading
 * is most of a start-up, and the first answer need not wait for code it never
 * runs.
 * Exported for tests.
 */
export async function buildServer(config: ServerConfig, log: Logger, options: BuildOptions = {}) {
  if (config.auth && !options.auth) {
    throw new TypeError("config.auth is set: pass its token source (loadTokenSource) as auth");
  }
  const state = options.state ?? NO_STATE;
  const events = new EventBus();
  logEvents(events, log);
  const store = options.store ??
    (config.stateFile === undefined
      ? new MemoryLockStore(config.locks)
      : new (await import("./stores/file.ts")).FileLockStore(config.locks, config.stateFile, {
        restore: state.locks,
      }));
  const checker = new DependencyChecker({
    targets: config.checks,
    passIntervalMs: config.passHcMs,
    failIntervalMs: config.failHcMs,
    timeoutMs: config.checkTimeoutMs,
    events,
  });
  const gates = new Gates([
    ...(state.recoverUntil === undefined
      ? []
      : [new (await import("./gates/recovery.ts")).RecoveryGate(state.recoverUntil)]),
    ...(options.storeRecovery ? [options.storeRecovery] : []),
    checker,
    ...(config.maxLoad === undefined ? [] : [loadGate(config.maxLoad)]),
    ...(config.maxPressure === undefined ? [] : [pressureGate(config.maxPressure)]),
    ...(config.cooldownMs === undefined ? [] : [
      new (await import("./gates/cooldown.ts")).CooldownGate({
        cooldownMs: config.cooldownMs,
        events,
      }),
    ]),
  ], events);
  const service = new LockService({
    store,
    gates,
    events,
    maxDurationMs: config.maxDurationMs,
    maxWaiters: config.maxWaiters,
  });
  const metrics = new Metrics(events, {
    status: () => service.status(),
    ...(config.perCore ? { cores: config.perCore.cores } : {}),
    ...(options.logLinesDropped ? { logLinesDropped: options.logLinesDropped } : {}),
  });
  const handler = createHandler({
    service,
    defaultDurationMs: config.timeoutMs,
    maxWaitMs: config.maxWaitMs,
    dependencies: () => checker.dependencies,
    ...(config.perCore ? { perCore: config.perCore } : {}),
    metrics: () => metrics.render(),
    onError: (message) => log.error(message, logEvent("internal_error")),
    ...(options.auth ? { auth: options.auth } : {}),
  });
  return { store, gates, checker, service, handler, events, metrics };
}

/**
 * The token source of `--authToken` or `--authTokenFile`. The check of
 * requests, and `node:crypto` with it (about 6 MB resident), is loaded only
 * here: a server without a token never loads it.
 *
 * @throws {Error} when the token file cannot be read or holds no valid token
 */
export async function loadTokenSource(
  auth: NonNullable<ServerConfig["auth"]>,
  log: Logger,
): Promise<TokenSource> {
  const { FileToken, staticToken } = await import("./http/auth.ts");
  return "token" in auth ? staticToken(auth.token) : new FileToken(auth.tokenFile, { log });
}

/**
 * Starts listening. Rejects with `Deno.errors.AddrInUse` and the like when the
 * address cannot be bound; the caller explains them.
 */
export async function startServer(
  config: ServerConfig,
  log: Logger,
  options: BuildOptions = {},
): Promise<RunningServer> {
  const { store, gates, service, handler } = await buildServer(config, log, options);
  const aborter = new AbortController();
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    signal: aborter.signal,
    onListen: () => {},
  }, handler);
  const addr = server.addr;
  log.info(
    `Listening on http://${formatHost(addr.hostname)}:${addr.port}/ with ${config.locks} ` +
      `lock${config.locks === 1 ? "" : "s"}` +
      (config.perCore
        ? ` (--locksPerCore ${config.perCore.locksPerCore} × ${config.perCore.cores} ` +
          `core${config.perCore.cores === 1 ? "" : "s"})`
        : "") +
      `, default duration ${formatDuration(config.timeoutMs)}` +
      (config.store.kind === "redis"
        ? `, shared in ${config.store.target.url} as "${config.storeName}"`
        : "") +
      (config.checks.length ? `, checking ${config.checks.map((c) => c.url).join(", ")}` : "") +
      (config.auth ? ", bearer token required" : ""),
    logEvent("listening"),
  );
  gates.start();

  let stopping: Promise<void> | undefined;
  const shutdown = () =>
    stopping ??= (async () => {
      gates.stop();
      service.close(); // Waiting clients get 503 now rather than hold the shutdown up.
      const grace = new Promise<void>((resolve) => {
        const id = setTimeout(resolve, SHUTDOWN_GRACE_MS);
        Deno.unrefTimer(id);
      });
      await Promise.race([server.shutdown(), grace]);
      await store.close();
    })();
  return { addr, shutdown, finished: server.finished };
}

function formatHost(hostname: string): string {
  return hostname.includes(":") ? `[${hostname}]` : hostname;
}

/** Options of {@linkcode runServer}. */
export interface RunOptions {
  /** Warnings about the command line, logged first (a secret given as a flag). @default {none} */
  warnings?: readonly string[];
}

/** Runs the server until SIGTERM or SIGINT; returns the exit code. */
export async function runServer(config: ServerConfig, options: RunOptions = {}): Promise<number> {
  const format = config.logFormat;
  const writer = new LogWriter({
    intervalMs: DEFAULT_WRITE_INTERVAL_MS,
    droppedLine: (count) =>
      formatLine(format, "warn", droppedMessage(count), { event: "log_dropped", count }),
  });
  const log = createLogger(config.logLevel, writer.write, { format });
  for (const warning of options.warnings ?? []) log.warn(warning, logEvent("secret_in_flag"));
  let auth: TokenSource | undefined;
  if (config.auth) {
    try {
      auth = await loadTokenSource(config.auth, log);
    } catch (error) {
      // The file was read a moment ago, when the flags were checked: it changed since.
      const flag = "tokenFile" in config.auth
        ? `--authTokenFile "${config.auth.tokenFile}"`
        : "--authToken";
      log.error(`Cannot use ${flag}: ${describeError(error)}`, logEvent("auth_token_unusable"));
      await writer.close();
      return EXIT.USAGE;
    }
  }
  let state = NO_STATE;
  if (config.stateFile !== undefined) {
    try {
      state = await readPersistedState(config.stateFile, config.maxDurationMs, log);
    } catch (error) {
      log.error(
        `Cannot use --stateFile "${config.stateFile}": ${describeError(error)}`,
        logEvent("state_file_unusable"),
      );
      await writer.close();
      return EXIT.USAGE;
    }
  }
  // Another --locks in Redis for the same --name: at start, or found on a reconnect.
  const { promise: conflicted, resolve: conflict } = Promise.withResolvers<string>();
  let store: LockStore | undefined;
  const storeRecovery = config.store.kind === "redis"
    ? new (await import("./gates/recovery.ts")).RecoveryGate()
    : undefined;
  if (config.store.kind === "redis") {
    const shared = await openRedisStore(config, config.store.target, log, conflict, storeRecovery!);
    const refused = await Promise.race([conflicted, shared.ready.then(() => undefined)]);
    if (refused !== undefined) {
      log.error(refused, logEvent("locks_conflict"));
      await shared.store.close();
      await writer.close();
      return EXIT.USAGE;
    }
    store = shared.store;
  }
  // Listening for signals before the "Listening on" line goes out: whoever started the server may
  // stop it as soon as it reads that line, and must get a clean shutdown.
  const signals: Deno.Signal[] = ["SIGTERM", "SIGINT"];
  const { promise: stopped, resolve: stop } = Promise.withResolvers<Deno.Signal>();
  const listeners = signals.map((signal) => {
    const listener = () => stop(signal);
    Deno.addSignalListener(signal, listener);
    return () => Deno.removeSignalListener(signal, listener);
  });
  let server: RunningServer;
  try {
    server = await startServer(config, log, {
      state,
      ...(auth ? { auth } : {}),
      logLinesDropped: () => writer.dropped,
      ...(store ? { store } : {}),
      ...(storeRecovery ? { storeRecovery } : {}),
    });
  } catch (error) {
    for (const remove of listeners) remove();
    log.error(explainListenError(error, config), logEvent("listen_failed"));
    await store?.close();
    state.claim?.close();
    await writer.close();
    return 1;
  }
  const ended = await Promise.race([stopped, conflicted.then((message) => ({ message }))]);
  if (typeof ended === "object") {
    log.error(`${ended.message}: shutting down`, logEvent("locks_conflict"));
  } else log.info(`Received ${ended}: shutting down`, logEvent("shutting_down"));
  await server.shutdown();
  state.claim?.close();
  log.info("Stopped", logEvent("stopped"));
  await writer.close();
  return typeof ended === "object" ? EXIT.USAGE : 0;
}

/**
 * The Redis store's module, named in a variable so that Deno does not follow
 * it ahead of time: a server with its locks in memory never loads the Redis
 * client, and `deno task start` needs no download. `deno compile` is told to
 * include it (`scripts/compile.ts`).
 */
export const REDIS_STORE_MODULE = "./stores/redis/store.ts";

/** How long the server waits for Redis at start before it listens anyway (and answers 503). */
export const STORE_CONNECT_WAIT_MS = 3_000;

/**
 * Opens the Redis store. Its module, and the Redis client with it, is loaded
 * only here: a server with its locks in memory never loads them.
 */
async function openRedisStore(
  config: ServerConfig,
  target: RedisTarget,
  log: Logger,
  onConflict: (message: string) => void,
  recovery: RecoveryGate,
): Promise<{ store: LockStore; ready: Promise<void> }> {
  const { RedisLockStore } = await import(REDIS_STORE_MODULE) as RedisStoreModule;
  const store = new RedisLockStore(config.locks, target, {
    name: config.storeName,
    recoveryMs: config.maxDurationMs,
    onRecovery: ({ cause, forMs, detail }) => {
      recovery.hold(cause, forMs);
      log.warn(
        `${detail} (${target.url}, --name ${config.storeName}): locks granted before may still ` +
          `be held, so no grants for ${formatDuration(forMs)} (--maxDuration)`,
        logEvent("redis_recovery"),
      );
    },
    onRecovered: () => recovery.release(),
    onProblem: (problem, message) =>
      problem === "channel"
        ? log.error(message, logEvent("redis_channel_refused"))
        : log.warn(message, logEvent("redis_setting")),
    onConflict: (stored) =>
      onConflict(
        `--locks ${config.locks} differs from the ${stored} slot${stored === 1 ? "" : "s"} ` +
          `that ${target.url} holds for --name ${config.storeName}: every replica of a ` +
          "semaphore must have the same --locks (or use another --name)",
      ),
    onConnection: (up, error) =>
      up ? log.info(`Connected to ${target.url} again`, logEvent("redis_connected")) : log.warn(
        `Cannot reach ${target.url} (${error}): no grants until it answers`,
        logEvent("redis_unreachable"),
      ),
  });
  const ready = store.connect(STORE_CONNECT_WAIT_MS);
  return { store, ready };
}

function explainListenError(error: unknown, config: ServerConfig): string {
  const where = `${formatHost(config.host)}:${config.port}`;
  if (error instanceof Deno.errors.AddrInUse) {
    return `Cannot listen on ${where}: the address is already in use (choose another --port)`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `Cannot listen on ${where}: permission denied (ports below 1024 need privileges)`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `Cannot listen on ${where}: no such address on this machine (check --host)`;
  }
  return `Cannot listen on ${where}: ${describeError(error)}`;
}
