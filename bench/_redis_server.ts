/**
 * A real `redis-server` (Debian's package) for the tests and the benchmark
 * (`tests/_redis.ts` adds what only tests need): started on a free port
 * in a temporary directory, with the persistence docs/redis.md recommends
 * (`appendonly yes`, `appendfsync always`), and stopped, killed, paused or
 * restarted on the same port and data as a test needs.
 *
 * @module
 */
import { createClient } from "../lib/stores/_redis_client.ts";
import { freePort } from "./process.ts";
import { which } from "./_which.ts";

/** The server binary, or `undefined` where Redis is not installed (CI installs it). */
export const REDIS_SERVER = which("redis-server");

/** Options of {@linkcode RedisServer.start}. */
export interface RedisOptions {
  /** @default {"always"} */
  appendfsync?: "always" | "everysec" | "no";
  /** Clients must give this password (`--requirepass`). @default {none} */
  requirepass?: string;
  /** Speak TLS only (`rediss://`), with this certificate and key (PEM files). @default {plain TCP} */
  tls?: { certFile: string; keyFile: string; caFile: string };
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
      throw new Error(
        "redis-server not found: .ci/run installs it (apt-get install -y redis-server)",
      );
    }
    const dir = await Deno.makeTempDir({ prefix: "startup-lock-redis-" });
    const server = new RedisServer(freePort(), dir, options);
    await server.#launch();
    return server;
  }

  /** `redis://127.0.0.1:PORT`, or `rediss://…` with TLS. */
  get url(): string {
    return `${this.#options.tls ? "rediss" : "redis"}://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    if (!this.#child) throw new Error("redis-server is not running");
    return this.#child.pid;
  }

  /** A client for reading and changing the data directly, as an observer. */
  async client() {
    const { requirepass: password, tls } = this.#options;
    const client = createClient({
      url: this.url,
      ...(password ? { password } : {}),
      ...(tls ? { socket: { tls: true, ca: await Deno.readTextFile(tls.caFile) } } : {}),
    });
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
    const tls = this.#options.tls;
    this.#child = new Deno.Command(REDIS_SERVER!, {
      args: [
        ...(tls
          ? [
            ...["--port", "0", "--tls-port", String(this.port), "--tls-auth-clients", "no"],
            ...["--tls-cert-file", tls.certFile, "--tls-key-file", tls.keyFile],
            ...["--tls-ca-cert-file", tls.caFile],
          ]
          : ["--port", String(this.port)]),
        ...["--bind", "127.0.0.1", "--dir", this.dir],
        ...["--save", "", "--appendonly", "yes"],
        ...["--appendfsync", this.#options.appendfsync ?? "always"],
        ...["--daemonize", "no", "--loglevel", "warning"],
        ...(this.#options.requirepass ? ["--requirepass", this.#options.requirepass] : []),
      ],
      stdout: "null",
      stderr: "null",
      stdin: "null",
    }).spawn();
    const deadline = Date.now() + 10_000;
    const caCerts = tls ? [await Deno.readTextFile(tls.caFile)] : undefined;
    for (;;) {
      try {
        const address = { hostname: "127.0.0.1", port: this.port };
        const conn = caCerts
          ? await Deno.connectTls({ ...address, caCerts })
          : await Deno.connect(address);
        const buf = new Uint8Array(64);
        await conn.write(new TextEncoder().encode("PING\r\n"));
        const n = await conn.read(buf);
        conn.close();
        const reply = n ? new TextDecoder().decode(buf.subarray(0, n)) : "";
        // Up: it answers, even if only to say that a password is needed first.
        if (reply.startsWith("+PONG") || reply.startsWith("-NOAUTH")) return;
      } catch {
        // Not listening yet, or still loading its data.
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not start on ${this.port}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}
