/**
 * A real `redis-server` (Debian's package) for tests: started on a free port
 * in a temporary directory, with the persistence the README recommends
 * (`appendonly yes`, `appendfsync always`), and stopped, killed, paused or
 * restarted on the same port and data as a test needs.
 *
 * @module
 */
import { createClient } from "../lib/stores/_redis_client.ts";
import { which } from "./_which.ts";

/** The server binary, or `undefined` where Redis is not installed (CI installs it). */
export const REDIS_SERVER = which("redis-server");

/** Whether tests that need Redis must be skipped: only outside CI, with no redis-server. */
export const SKIP_REDIS = REDIS_SERVER === undefined && Deno.env.get("CI") === undefined;

/** Options of {@linkcode RedisServer.start}. */
export interface RedisOptions {
  /** @default {"always"} */
  appendfsync?: "always" | "everysec" | "no";
  /** Clients must give this password (`requirepass`). @default {none} */
  password?: string;
}

/** A redis-server child process; see the module documentation. */
export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #options: RedisOptions;
  #child: Deno.ChildProcess | undefined;

  private constructor(port: number, dir: string, options: RedisOptions) {
    this.port = port;
    this.dir = dir;
    this.#options = options;
  }

  /** Starts a server and waits until it answers. */
  static async start(options: RedisOptions = {}): Promise<RedisServer> {
    if (!REDIS_SERVER) {
      throw new Error("redis-server is not installed (apt-get install redis-server)");
    }
    const dir = await Deno.makeTempDir({ prefix: "startup-lock-redis-" });
    const server = new RedisServer(freePort(), dir, options);
    await server.#launch();
    return server;
  }

  /** `redis://127.0.0.1:PORT` */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    if (!this.#child) throw new Error("redis-server is not running");
    return this.#child.pid;
  }

  /** A client for reading and changing the data directly, as an observer. */
  async client() {
    const password = this.#options.password;
    const client = createClient({ url: this.url, ...(password === undefined ? {} : { password }) });
    client.on("error", () => {});
    await client.connect();
    return client;
  }

  /** Stops gracefully (`SHUTDOWN`: the append-only file is written out). */
  async stop(): Promise<void> {
    if (!this.#child) return;
    this.#child.kill("SIGTERM");
    await this.#child.status;
    this.#child = undefined;
  }

  /** `kill -9`: whatever was not on disk yet is lost. */
  async kill(): Promise<void> {
    if (!this.#child) return;
    this.#child.kill("SIGKILL");
    await this.#child.status;
    this.#child = undefined;
  }

  /** Freezes the server (`SIGSTOP`): connections stay open and nothing answers. */
  pause(): void {
    this.#child?.kill("SIGSTOP");
  }

  resume(): void {
    this.#child?.kill("SIGCONT");
  }

  /** Starts again on the same port and data. */
  async restart(): Promise<void> {
    await this.stop();
    await this.#launch();
  }

  /** Starts again on the same port and data after {@linkcode stop} or {@linkcode kill}. */
  async relaunch(): Promise<void> {
    if (this.#child) throw new Error("redis-server is still running");
    await this.#launch();
  }

  /** Kills the server and removes its data, synchronously (for an `unload` listener). */
  killSync(): void {
    try {
      this.#child?.kill("SIGKILL");
    } catch {
      // Gone already.
    }
    this.#child = undefined;
    try {
      Deno.removeSync(this.dir, { recursive: true });
    } catch {
      // Removed already.
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.resume();
    await this.kill();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  async #launch(): Promise<void> {
    this.#child = new Deno.Command(REDIS_SERVER!, {
      args: [
        ...["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir],
        ...["--save", "", "--appendonly", "yes"],
        ...["--appendfsync", this.#options.appendfsync ?? "always"],
        ...["--daemonize", "no", "--loglevel", "warning"],
        ...(this.#options.password === undefined ? [] : ["--requirepass", this.#options.password]),
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: this.port });
        const buf = new Uint8Array(64);
        await conn.write(new TextEncoder().encode("PING\r\n"));
        const n = await conn.read(buf);
        conn.close();
        // With a password, an unauthenticated PING is refused, which also says the server is up.
        if (n && /^(\+PONG|-NOAUTH)/.test(new TextDecoder().decode(buf.subarray(0, n)))) return;
      } catch {
        // Not listening yet, or still loading its data.
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${this.port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A port nobody listens on now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
