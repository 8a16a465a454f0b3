/**
 * The container image's file system without Docker, for tests/image_test.ts:
 * a folder holding exactly what the Dockerfile's final stage copies, taken from
 * this machine, and the program run inside it with `chroot` as the image's
 * user, in its own PID namespace (it is PID 1, as in a container).
 *
 * Three kinds of files, kept apart:
 * - {@linkcode copyImageFiles}: the image's own, from the Dockerfile;
 * - {@linkcode addRuntimeFiles}: what a container runtime adds to every
 *   container (a `/proc` mount, `/etc/hosts`);
 * - {@linkcode addDenoRunFallback}: only where `dist/startup-lock` was not built
 *   (`deno compile` needs the internet): the Deno runtime and the program's
 *   source, run with `deno run`.
 *
 * @module
 */
import { PERMISSION_FLAGS } from "../lib/commands/permissions.ts";
import { hostTargetArch, type ImageSpec } from "./_image_dockerfile.ts";

const ROOT = new URL("../", import.meta.url);
const COMPILED = new URL("dist/startup-lock", ROOT).pathname;

/** An image file system in a folder, and how to run the program in it. */
export interface ImageRoot {
  dir: string;
  /** What runs the program: the image's `ENTRYPOINT`, or the fallback's `deno run`. */
  program: string[];
  /** The image's `HEALTHCHECK` command, with {@linkcode program} for the executable. */
  healthcheck: string[];
  /** The image's `ENV`, and the fallback's. */
  env: Record<string, string>;
  /** The image's `USER`. */
  user: string;
  /** Whether {@linkcode program} is the compiled executable. */
  compiled: boolean;
}

/** Builds the image's file system in `dir` (which must not exist) from this machine's files. */
export async function assembleImage(dir: string, spec: ImageSpec): Promise<ImageRoot> {
  await Deno.mkdir(dir, { mode: 0o755 });
  // The executable is the COPY whose destination the ENTRYPOINT runs.
  const executable = spec.entrypoint[0];
  if (!executable) throw new Error("The Dockerfile has no ENTRYPOINT");
  const compiled = isFile(COMPILED);
  await copyImageFiles(dir, spec, compiled ? COMPILED : undefined);
  await addRuntimeFiles(dir);
  let program = spec.entrypoint;
  let env = spec.env;
  if (!compiled) {
    const fallback = await addDenoRunFallback(dir);
    program = [...fallback.command, ...spec.entrypoint.slice(1)];
    env = { ...env, ...fallback.env };
  }
  const [healthcheckExe, ...healthcheckArgs] = spec.healthcheck;
  if (healthcheckExe !== executable) {
    throw new Error(`The HEALTHCHECK runs ${healthcheckExe}, not the executable ${executable}`);
  }
  return {
    dir,
    program,
    healthcheck: [...program, ...healthcheckArgs],
    env,
    user: spec.user,
    compiled,
  };
}

/**
 * Writes what the final stage copies, and nothing else. The builder's staging
 * folder holds what its RUN gathers (the libraries and the loader, at their own
 * paths), here taken from this machine for its architecture; other files of the
 * builder come from the same path here. `executable` is the compiled program,
 * or `undefined` to leave it out (the fallback runs the program instead).
 */
export async function copyImageFiles(
  dir: string,
  spec: ImageSpec,
  executable: string | undefined,
): Promise<void> {
  const arch = hostTargetArch();
  const platform = spec.platforms[arch];
  if (!platform) throw new Error(`The Dockerfile does not build for this machine's ${arch}`);
  for (const copy of spec.copies) {
    const where = `Dockerfile line ${copy.line}`;
    if (copy.kind === "heredoc") {
      await writeInto(dir, copy.dest, (path) => Deno.writeTextFile(path, copy.content));
    } else if (copy.stage !== "builder") {
      throw new Error(`${where}: copies from "${copy.stage}", which only the builder stage can be`);
    } else if (copy.source.replace(/\/$/, "") === spec.staging) {
      if (copy.dest !== "/") throw new Error(`${where}: expected the staging folder copied to /`);
      const gathered = [...spec.libraries.map((l) => `${platform.libdir}/${l}`), platform.loader];
      for (const path of gathered) {
        await writeInto(dir, path, (to) => Deno.copyFile(path, to));
      }
    } else if (copy.dest === spec.entrypoint[0]) {
      if (executable) await writeInto(dir, copy.dest, (to) => Deno.copyFile(executable, to));
    } else {
      const dest = copy.dest.endsWith("/") ? copy.dest + copy.source.split("/").at(-1) : copy.dest;
      await writeInto(dir, dest, (to) => Deno.copyFile(copy.source, to));
    }
  }
}

/**
 * What Docker and Kubernetes add to every container: `/proc` (a mount point
 * here; {@linkcode imageCommand} mounts it) and `/etc/hosts`, with the lines
 * Docker writes.
 */
export async function addRuntimeFiles(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/proc`, { mode: 0o555 });
  await writeInto(
    dir,
    "/etc/hosts",
    (path) =>
      Deno.writeTextFile(path, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
  );
}

/**
 * Only without the compiled executable: the Deno runtime (`/deno`, it has the
 * same libraries as the executable), the program's source (`/app`: main.ts,
 * deno.json, lib/), and a writable `/tmp` for `DENO_DIR`, where `deno run`
 * keeps its transpiled modules (the executable writes nothing). Returns the
 * command that stands in for the executable, with its permissions, and the
 * variables it needs.
 */
export async function addDenoRunFallback(
  dir: string,
): Promise<{ command: string[]; env: Record<string, string> }> {
  await Deno.copyFile(Deno.execPath(), `${dir}/deno`);
  await Deno.chmod(`${dir}/deno`, 0o755);
  await Deno.mkdir(`${dir}/app`, { mode: 0o755 });
  for (const name of ["main.ts", "deno.json", "lib"]) {
    await copyTree(new URL(name, ROOT).pathname, `${dir}/app/${name}`);
  }
  await Deno.mkdir(`${dir}/tmp`);
  await Deno.chmod(`${dir}/tmp`, 0o1777);
  return {
    command: [
      "/deno",
      "run",
      "--quiet",
      "--config",
      "/app/deno.json",
      ...PERMISSION_FLAGS,
      "/app/main.ts",
    ],
    // No update check: it would reach for the internet.
    env: { DENO_DIR: "/tmp/deno-dir", DENO_NO_UPDATE_CHECK: "1" },
  };
}

/**
 * A command that runs `args` inside the image as its user, with only its
 * variables (and `env`), in new PID and mount namespaces: the program is PID 1,
 * as in a container, and `/proc` is mounted for it alone.
 */
export function imageCommand(
  image: ImageRoot,
  args: string[],
  options: { env?: Record<string, string>; stdout?: "piped" | "null"; stderr?: "piped" | "null" } =
    {},
): Deno.Command {
  return new Deno.Command(findExecutable("unshare")!, {
    args: [
      "--pid",
      "--fork",
      `--mount-proc=${image.dir}/proc`,
      findExecutable("chroot")!,
      `--userspec=${image.user}`,
      image.dir,
      ...args,
    ],
    env: { ...image.env, NO_COLOR: "1", ...options.env },
    clearEnv: true,
    stdin: "null",
    stdout: options.stdout ?? "piped",
    stderr: options.stderr ?? "piped",
  });
}

/** Runs `args` in the image to completion. */
export async function runInImage(
  image: ImageRoot,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await imageCommand(image, args).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The server, running in the image. */
export interface ImageServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT`, from its "Listening on" line. */
  url: string;
  /** The program's process id on this machine. */
  pid: number;
  /** Every stderr line so far. */
  log: string[];
  /** Resolves with the first log line matching `pattern`; rejects after `timeoutMs` or at exit. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** Sends `signal` to the program, as `docker stop` does, and returns its exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

/** Starts the image's program with `args` and resolves once it listens. */
export async function startInImage(image: ImageRoot, args: string[]): Promise<ImageServer> {
  const child = imageCommand(image, [...image.program, ...args], { stdout: "null" }).spawn();
  const log: string[] = [];
  const wake = new Set<() => void>();
  let exited = false;
  const reading = (async () => {
    let buffer = "";
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      const lines = (buffer + chunk).split("\n");
      buffer = lines.pop()!;
      log.push(...lines);
      for (const w of wake) w();
    }
    if (buffer) log.push(buffer);
  })();
  const status = child.status.then(async (s) => {
    await reading;
    exited = true;
    for (const w of wake) w();
    return s;
  });

  const waitForLog = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const settle = (done: () => void) => {
        clearTimeout(timer);
        wake.delete(check);
        done();
      };
      const check = () => {
        const line = log.find((l) => pattern.test(l));
        if (line !== undefined) settle(() => resolve(line));
        else if (exited) {
          settle(() => reject(new Error(`Exited before logging ${pattern}:\n${log.join("\n")}`)));
        }
      };
      const timer = setTimeout(
        () =>
          settle(() =>
            reject(new Error(`No ${pattern} within ${timeoutMs} ms:\n${log.join("\n")}`))
          ),
        timeoutMs,
      );
      wake.add(check);
      check();
    });

  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!exited) {
      // Signal the program, unshare's only child: unshare ignores SIGTERM, and its end does not
      // end the program (PID 1 of its namespace; chroot's setuid clears --kill-child's signal).
      const pid = await programPid(child.pid);
      const targets = signal === "SIGKILL" ? [pid, child.pid] : [pid ?? child.pid];
      for (const target of targets) {
        try {
          if (target !== undefined) Deno.kill(target, signal);
        } catch { /* already gone */ }
      }
    }
    return (await status).code;
  };

  try {
    const listening = await waitForLog(/Listening on http:\/\/[^/]+:\d+\//);
    const port = /:(\d+)\//.exec(listening)![1];
    const pid = await programPid(child.pid);
    if (pid === undefined) throw new Error("Cannot find the program's process under unshare");
    return {
      url: `http://127.0.0.1:${port}`,
      pid,
      log,
      waitForLog,
      stop,
      async [Symbol.asyncDispose]() {
        await stop("SIGKILL");
      },
    };
  } catch (error) {
    await stop("SIGKILL");
    throw error;
  }
}

async function programPid(unsharePid: number): Promise<number | undefined> {
  const children = await readProc(`${unsharePid}/task/${unsharePid}/children`);
  const pid = Number(children.trim().split(" ")[0]);
  return pid > 0 ? pid : undefined;
}

/**
 * A file of `/proc`, or "" when it cannot be read. Through `cat`: Deno asks for
 * --allow-all to read `/proc/PID/…`, and the test task grants --allow-run.
 */
export async function readProc(path: string): Promise<string> {
  return await commandOutput("cat", [`/proc/${path}`]).catch(() => "");
}

async function commandOutput(command: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(command, { args, stderr: "null" }).output();
  if (out.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${out.code}`);
  return new TextDecoder().decode(out.stdout);
}

/**
 * Why the program cannot run in an image folder here, or `undefined` when it
 * can: `chroot` and new namespaces need root (or CAP_SYS_CHROOT and
 * CAP_SYS_ADMIN), which containers often lack.
 */
export async function imageRunSkipReason(): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return `needs Linux, not ${Deno.build.os}`;
  const missing = ["chroot", "unshare"].filter((name) => !findExecutable(name));
  if (missing.length > 0) return `${missing.join(" and ")} not found`;
  // Not Deno.uid(): the test task grants no --allow-sys.
  const uid = (await commandOutput("id", ["-u"])).trim();
  if (uid !== "0") return `chroot needs root (running as uid ${uid})`;
  // Running a command that does not exist in an empty root: 127 means chroot got that far.
  const dir = await Deno.makeTempDir({ prefix: "startup-lock-chroot-probe-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.mkdir(`${dir}/proc`);
    const probe = await imageCommand(
      { dir, program: [], healthcheck: [], env: {}, user: "65532:65532", compiled: false },
      ["/probe"],
      { stdout: "null" },
    ).output();
    if (probe.code === 127) return undefined;
    const reason = new TextDecoder().decode(probe.stderr).trim().split("\n").at(-1);
    return `chroot in new PID and mount namespaces is not permitted here: ${reason}`;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The path of an executable on `PATH` or in the sbin folders, or `undefined`. */
export function findExecutable(name: string): string | undefined {
  const dirs = [
    ...(Deno.env.get("PATH") ?? "").split(":"),
    "/usr/sbin",
    "/sbin",
    "/usr/bin",
    "/bin",
  ];
  return dirs.filter(Boolean).map((d) => `${d}/${name}`).find((p) => {
    try {
      const info = Deno.statSync(p);
      return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  });
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Creates `path`'s folders in `dir` (mode 755, like an image's) and writes the file. */
async function writeInto(
  dir: string,
  path: string,
  write: (to: string) => Promise<void>,
): Promise<void> {
  const to = `${dir}${path}`;
  await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true, mode: 0o755 });
  await write(to);
}

async function copyTree(from: string, to: string): Promise<void> {
  if (!Deno.statSync(from).isDirectory) return await Deno.copyFile(from, to);
  await Deno.mkdir(to, { mode: 0o755 });
  for await (const entry of Deno.readDir(from)) {
    await copyTree(`${from}/${entry.name}`, `${to}/${entry.name}`);
  }
}
