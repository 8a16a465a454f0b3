/**
 * The systemd units of `deploy/systemd/`: `systemd-analyze verify` accepts them
 * without a warning, the server unit has the hardening it promises, the
 * example default file lists the server's variables with their real defaults,
 * and every command line in the units is one the program accepts; and the
 * drop-in that shares the server's locks in Redis turns the server unit into a
 * server with a Redis store, its password a credential.
 */
import assert from "node:assert/strict";
import { envName, envNames } from "../../lib/args.ts";
import { serveCommand, SERVER_FLAGS } from "../../lib/commands/serve.ts";
import { ENV_VARIABLES } from "../../lib/commands/permissions.ts";
import { EXECUTABLE, parseCommandLine } from "../_command_line.ts";
import { readmeBlock } from "../_readme.ts";
import { which } from "../_which.ts";

const DIR = new URL("../../deploy/systemd/", import.meta.url);
const SERVER_UNIT = "startup-lock.service";
const DEFAULT_FILE = "startup-lock.default";
/** The drop-in for VMs sharing one Redis, and where it is installed. */
const REDIS_DROP_IN = "startup-lock-redis.conf";
const REDIS_DROP_IN_PATH = `${SERVER_UNIT}.d/redis.conf`;
/** Where systemd puts the credentials of a system service (%d). */
const credentialsDir = (unit: string) => `/run/credentials/${unit}`;
const UNITS = [...Deno.readDirSync(DIR)]
  .filter((e) => e.isFile && e.name.endsWith(".service"))
  .map((e) => e.name)
  .sort();

const SYSTEMD_ANALYZE = which("systemd-analyze");
if (!SYSTEMD_ANALYZE) {
  console.error(
    "SKIPPED systemd-analyze tests: systemd-analyze not found (apt-get install -y systemd)",
  );
}

/** One `Key=Value` of a unit file; continuation lines joined. */
interface Setting {
  section: string;
  key: string;
  value: string;
  /** 1-based line of the key. */
  line: number;
}

/** The settings of a unit file, in order. */
function readUnit(name: string): Setting[] {
  const lines = Deno.readTextFileSync(new URL(name, DIR)).split("\n");
  const settings: Setting[] = [];
  let section = "";
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const start = i;
    let text = line;
    while (text.endsWith("\\") && i + 1 < lines.length) {
      text = `${text.slice(0, -1)} ${lines[++i]!.trim()}`;
    }
    const eq = text.indexOf("=");
    assert.ok(eq > 0, `${name}:${start + 1}: not a Key=Value line: ${text}`);
    settings.push({
      section,
      key: text.slice(0, eq).trim(),
      value: text.slice(eq + 1).trim(),
      line: start + 1,
    });
  }
  return settings;
}

/** The values of `section`'s `key`, in order. */
function values(settings: Setting[], section: string, key: string): string[] {
  return settings.filter((s) => s.section === section && s.key === key).map((s) => s.value);
}

/** Words of a command line or an `Environment=` value: blanks split, quotes group. */
function words(text: string): string[] {
  return [...text.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
}

/** Replaces the unit specifiers the units use with what systemd would on a host "node-1". */
function expandSpecifiers(text: string, unit: string): string {
  const values: Record<string, string> = {
    H: "node-1",
    N: unit.replace(/\.service$/, ""),
    n: unit,
    t: "/run",
    S: "/var/lib",
    d: credentialsDir(unit),
    "%": "%",
  };
  return text.replace(/%(.)/g, (_, c: string) => {
    const value = values[c];
    if (value === undefined) throw new Error(`${unit}: specifier %${c} is not known to this test`);
    return value;
  });
}

const EXEC_KEYS = ["ExecStartPre", "ExecStart", "ExecStartPost", "ExecStop", "ExecStopPost"];

/** Every command a unit runs: the program and its arguments, specifiers expanded. */
function commands(unit: string): { key: string; line: number; argv: string[] }[] {
  return readUnit(unit)
    .filter((s) => s.section === "Service" && EXEC_KEYS.includes(s.key))
    .map((s) => ({
      key: s.key,
      line: s.line,
      // "-", "@", ":", "+" and "!" in front of the path change how systemd runs it.
      argv: words(expandSpecifiers(s.value, unit)).map((w, i) =>
        i === 0 ? w.replace(/^[-@:+!]+/, "") : w
      ),
    }));
}

/**
 * The `Environment=` assignments of a unit, specifiers expanded, then those of
 * its drop-ins (files of this directory), later ones winning as in systemd.
 */
function environment(unit: string, dropIns: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = {};
  const settings = [unit, ...dropIns].flatMap((file) =>
    values(readUnit(file), "Service", "Environment")
  );
  for (const value of settings) {
    for (const word of words(expandSpecifiers(value, unit))) {
      const eq = word.indexOf("=");
      env[word.slice(0, eq)] = word.slice(eq + 1);
    }
  }
  return env;
}

/** The variables the default file sets when every `#NAME=value` line is uncommented. */
function defaultFileSettings(): Map<string, string> {
  const text = Deno.readTextFileSync(new URL(DEFAULT_FILE, DIR));
  const settings = new Map<string, string>();
  for (const line of text.split("\n")) {
    const match = /^#?(STARTUP_LOCK_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (match) settings.set(match[1]!, match[2]!);
  }
  return settings;
}

Deno.test("deploy/systemd holds the server unit, its default file, its Redis drop-in and example application units", () => {
  assert.ok(UNITS.includes(SERVER_UNIT), `deploy/systemd has no ${SERVER_UNIT}`);
  assert.ok(UNITS.includes("example-app.service"), "deploy/systemd has no example-app.service");
  assert.ok(Deno.statSync(new URL(DEFAULT_FILE, DIR)).isFile);
  assert.ok(Deno.statSync(new URL(REDIS_DROP_IN, DIR)).isFile);
  // The install command in its header puts it where the tests verify it.
  const text = Deno.readTextFileSync(new URL(REDIS_DROP_IN, DIR));
  assert.ok(
    text.includes(`deploy/systemd/${REDIS_DROP_IN} /etc/systemd/system/${REDIS_DROP_IN_PATH}\n`),
    `${REDIS_DROP_IN}: installed as /etc/systemd/system/${REDIS_DROP_IN_PATH}`,
  );
});

Deno.test("startup-lock.service runs the server with the default file, restarts it, and is hardened", () => {
  const unit = readUnit(SERVER_UNIT);
  const one = (key: string) => {
    const found = values(unit, "Service", key);
    assert.equal(found.length, 1, `${SERVER_UNIT}: expected one ${key}=, found ${found.length}`);
    return found[0]!;
  };
  assert.equal(one("ExecStart"), EXECUTABLE);
  assert.equal(one("EnvironmentFile"), "-/etc/default/startup-lock");
  assert.equal(one("Restart"), "on-failure");
  assert.equal(one("StateDirectory"), "startup-lock");
  const hardening: Record<string, string> = {
    DynamicUser: "yes",
    NoNewPrivileges: "yes",
    ProtectSystem: "strict",
    ProtectHome: "yes",
    PrivateTmp: "yes",
    PrivateDevices: "yes",
    RestrictAddressFamilies: "AF_INET AF_INET6 AF_UNIX",
    CapabilityBoundingSet: "",
    AmbientCapabilities: "",
    SystemCallFilter: "@system-service",
    SystemCallArchitectures: "native",
    ProtectKernelTunables: "yes",
    ProtectKernelModules: "yes",
    ProtectKernelLogs: "yes",
    ProtectControlGroups: "yes",
    RestrictNamespaces: "yes",
    LockPersonality: "yes",
    RestrictRealtime: "yes",
    RestrictSUIDSGID: "yes",
    ProtectClock: "yes",
    ProtectHostname: "yes",
    UMask: "0077",
  };
  for (const [key, value] of Object.entries(hardening)) assert.equal(one(key), value, key);
  // V8's JIT needs writable and executable memory: the setting would kill the server at start.
  assert.deepEqual(values(unit, "Service", "MemoryDenyWriteExecute"), []);
  const text = Deno.readTextFileSync(new URL(SERVER_UNIT, DIR));
  assert.match(text, /# MemoryDenyWriteExecute= is deliberately not set: V8/);
  assert.match(text, /\$STATE_DIRECTORY/);
});

Deno.test("startup-lock.default lists every server variable, commented out, with its real default", () => {
  const text = Deno.readTextFileSync(new URL(DEFAULT_FILE, DIR));
  for (const name of new Set(text.match(/STARTUP_LOCK_[A-Z0-9_]+/g))) {
    assert.ok(ENV_VARIABLES.includes(name), `${DEFAULT_FILE}: the program reads no ${name}`);
  }
  const active = text.split("\n").filter((l) => /^\s*[A-Z_]+=/.test(l));
  assert.deepEqual(active, [], `${DEFAULT_FILE}: only commented-out settings`);

  const settings = defaultFileSettings();
  const serverVariables = envNames(SERVER_FLAGS);
  assert.deepEqual([...settings.keys()].sort(), [...serverVariables].sort());
  for (const spec of SERVER_FLAGS.filter((s) => serverVariables.includes(envName(s.name)))) {
    assert.equal(settings.get(envName(spec.name)), spec.default ?? "", envName(spec.name));
  }
  // Uncommented, the file changes nothing: the values shown are the defaults. Those of a
  // Redis store's variables too, with a Redis store (without one the program refuses them).
  const env = Object.fromEntries(settings);
  const redisOnly = ["STARTUP_LOCK_NAME", "STARTUP_LOCK_STORE_PASSWORD_FILE"].map((n) => {
    assert.ok(settings.has(n), `${DEFAULT_FILE}: no ${n}`);
    return n;
  });
  const memory = Object.fromEntries([...settings].filter(([k]) => !redisOnly.includes(k)));
  assert.deepEqual(
    serveCommand.parse([], (n) => memory[n]),
    serveCommand.parse([], () => undefined),
  );
  const store = "redis://redis.internal:6379";
  const redis: Record<string, string> = { ...env, STARTUP_LOCK_STORE: store };
  assert.deepEqual(
    serveCommand.parse([], (n) => redis[n]),
    serveCommand.parse(["--store", store], () => undefined),
  );
});

Deno.test("the units' command lines use the program's commands, flags and variables", async (t) => {
  for (const unit of UNITS) {
    await t.step(unit, () => {
      const env = environment(unit);
      for (const name of Object.keys(env).filter((n) => n.startsWith("STARTUP_LOCK_"))) {
        assert.ok(ENV_VARIABLES.includes(name), `${unit}: the program reads no ${name}`);
      }
      const ours = commands(unit).filter((c) => c.argv[0] === EXECUTABLE);
      assert.ok(ours.length > 0, `${unit}: no command runs ${EXECUTABLE}`);
      for (const { key, line, argv } of ours) {
        try {
          parseCommandLine(argv.slice(1), env);
        } catch (error) {
          assert.fail(`${unit}:${line}: ${key}=${argv.join(" ")}: ${(error as Error).message}`);
        }
      }
    });
  }
});

Deno.test("the example application units wait for the local server and give the lock back on ready", () => {
  const run = commands("example-app.service").find((c) => c.key === "ExecStart")!;
  const parsed = parseCommandLine(run.argv.slice(1));
  assert.equal(parsed.command, "run");
  assert.ok(parsed.command === "run" && parsed.options.readyUrl, "run without --readyUrl");
  for (const unit of UNITS.filter((u) => u !== SERVER_UNIT)) {
    const settings = readUnit(unit);
    assert.deepEqual(values(settings, "Unit", "Wants"), [SERVER_UNIT], unit);
    assert.deepEqual(values(settings, "Unit", "After"), [SERVER_UNIT], unit);
  }
});

/**
 * A throw-away root for `systemd-analyze verify --root=`: the machine's own
 * system units (sysinit.target and the rest that every service depends on), our
 * units copied byte for byte to /etc/systemd/system, and a stand-in executable
 * at every path the units run. verify fails a unit whose command does not
 * exist; --root lets it check the real unit files unchanged without installing
 * anything on the machine (rewriting the paths would check other files).
 */
async function verifyRoot(units: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "startup-lock-systemd-" });
  await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
  await Deno.mkdir(`${root}/etc/systemd/system`, { recursive: true });
  const system = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((d) => {
    try {
      return Deno.statSync(d).isDirectory;
    } catch {
      return false;
    }
  });
  assert.ok(system, "no /usr/lib/systemd/system on this machine");
  const copy = await new Deno.Command("cp", {
    args: ["-a", system, `${root}/usr/lib/systemd/`],
  }).output();
  assert.equal(copy.code, 0, new TextDecoder().decode(copy.stderr));
  for (const [name, text] of Object.entries(units)) {
    const path = `${root}/etc/systemd/system/${name}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  const programs = new Set(UNITS.flatMap((u) => commands(u).map((c) => c.argv[0]!)));
  for (const program of programs) {
    assert.ok(program.startsWith("/"), `${program}: systemd needs an absolute path`);
    await Deno.mkdir(`${root}${program.slice(0, program.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${root}${program}`, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  }
  return root;
}

/** Runs systemd-analyze; returns its exit code and everything it printed. */
async function systemdAnalyze(args: string[]): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(SYSTEMD_ANALYZE!, {
    args,
    env: { SYSTEMD_COLORS: "0", SYSTEMD_PAGER: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, output: (decode(out.stdout) + decode(out.stderr)).trim() };
}

function unitTexts(): Record<string, string> {
  return Object.fromEntries(UNITS.map((u) => [u, Deno.readTextFileSync(new URL(u, DIR))]));
}

/** The units, with the Redis drop-in where systemd reads it. */
function unitTextsWithRedis(): Record<string, string> {
  return {
    ...unitTexts(),
    [REDIS_DROP_IN_PATH]: Deno.readTextFileSync(new URL(REDIS_DROP_IN, DIR)),
  };
}

Deno.test({
  name: "systemd-analyze verify accepts every unit without a warning",
  ignore: !SYSTEMD_ANALYZE,
  fn: async (t) => {
    const root = await verifyRoot(unitTexts());
    try {
      const verify = async (units: string[]) => {
        const args = ["verify", `--root=${root}`, "--man=no", "--generators=no", ...units];
        const { code, output } = await systemdAnalyze(args);
        // Name the files as they are in the repository, not in the throw-away root.
        return {
          code,
          output: output.replaceAll(`${root}/etc/systemd/system/`, "deploy/systemd/"),
        };
      };
      const { code, output } = await verify(UNITS);
      assert.equal(output, "", `systemd-analyze verify warned:\n${output}`);
      assert.equal(code, 0);

      await t.step(`${SERVER_UNIT} with ${REDIS_DROP_IN} as ${REDIS_DROP_IN_PATH}`, async () => {
        const dropIn = `${root}/etc/systemd/system/${REDIS_DROP_IN_PATH}`;
        const text = unitTextsWithRedis()[REDIS_DROP_IN_PATH]!;
        await Deno.mkdir(`${root}/etc/systemd/system/${SERVER_UNIT}.d`);
        await Deno.writeTextFile(dropIn, text);
        try {
          const { code, output } = await verify([SERVER_UNIT]);
          assert.equal(output, "", `systemd-analyze verify warned:\n${output}`);
          assert.equal(code, 0);
          // It reads the drop-in: a specifier it does not know is a warning.
          assert.ok(text.includes("%d/"), `${REDIS_DROP_IN}: no credential path %d/…`);
          await Deno.writeTextFile(dropIn, text.replace("%d/", "%Z/"));
          assert.match((await verify([SERVER_UNIT])).output, /Failed to resolve specifiers/);
        } finally {
          await Deno.remove(dropIn);
        }
      });

      await t.step("(it does warn about a unit with a mistake)", async () => {
        const name = "broken.service";
        const broken = unitTexts()[SERVER_UNIT]!.replace(
          "[Service]",
          "[Service]\nProtectSytem=strict",
        );
        await Deno.writeTextFile(`${root}/etc/systemd/system/${name}`, broken);
        const { output } = await verify([name]);
        assert.match(output, /Unknown key 'ProtectSytem'/);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "systemd-analyze security rates startup-lock.service at most 2.0 (OK), with the Redis drop-in too",
  ignore: !SYSTEMD_ANALYZE,
  fn: async (t) => {
    for (const [label, units] of [["alone", unitTexts()], [REDIS_DROP_IN, unitTextsWithRedis()]]) {
      await t.step(String(label), async () => {
        const root = await verifyRoot(units as Record<string, string>);
        try {
          const { code, output } = await systemdAnalyze([
            "security",
            "--offline=yes",
            `--root=${root}`,
            // Exposure is 0.0 (best) to 10.0, given here in tenths.
            "--threshold=20",
            SERVER_UNIT,
          ]);
          const last = output.split("\n").slice(-3).join("\n");
          assert.equal(code, 0, `exposure above 2.0:\n${last}`);
        } finally {
          await Deno.remove(root, { recursive: true });
        }
      });
    }
  },
});

Deno.test({
  name: "systemd-analyze verify accepts the docs' credential drop-in for the server unit",
  ignore: !SYSTEMD_ANALYZE,
  fn: async (t) => {
    const dropIn = readmeBlock("auth-systemd");
    // The variable names the credential that LoadCredential= loads, under %d.
    const id = /^LoadCredential=([^:]+):/m.exec(dropIn)?.[1];
    assert.ok(id, "a LoadCredential= line");
    assert.match(dropIn, new RegExp(`^Environment=STARTUP_LOCK_AUTH_TOKEN_FILE=%d/${id}$`, "m"));

    const root = await verifyRoot(unitTexts());
    try {
      const dir = `${root}/etc/systemd/system/${SERVER_UNIT}.d`;
      await Deno.mkdir(dir);
      const verify = async (text: string) => {
        await Deno.writeTextFile(`${dir}/auth.conf`, `${text}\n`);
        const args = ["verify", `--root=${root}`, "--man=no", "--generators=no", SERVER_UNIT];
        return await systemdAnalyze(args);
      };
      const { code, output } = await verify(dropIn);
      assert.equal(output, "", `systemd-analyze verify warned:\n${output}`);
      assert.equal(code, 0);

      await t.step("and with the credential encrypted, as docs/systemd.md describes", async () => {
        const encrypted = dropIn.replace(
          /^LoadCredential=(\S+?):\S+$/m,
          "LoadCredentialEncrypted=$1:/etc/credstore.encrypted/startup-lock-token",
        );
        assert.notEqual(encrypted, dropIn);
        assert.deepEqual(await verify(encrypted), { code: 0, output: "" });
      });
      await t.step("(it reads the drop-in: a misspelt key in it is reported)", async () => {
        const { output } = await verify(dropIn.replace("LoadCredential=", "LoadCredentail="));
        assert.match(output, /Unknown key 'LoadCredentail'/);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test("startup-lock-redis.conf makes the server unit share its locks in Redis, with no state file and the password as a credential", async () => {
  const dropIn = readUnit(REDIS_DROP_IN);
  assert.deepEqual([...new Set(dropIn.map((s) => s.section))], ["Unit", "Service"]);
  // The server's settings change, not its command.
  assert.deepEqual(dropIn.filter((s) => EXEC_KEYS.includes(s.key)), [], "no Exec*= lines");
  const env = environment(SERVER_UNIT, [REDIS_DROP_IN]);
  for (const name of Object.keys(env).filter((n) => n.startsWith("STARTUP_LOCK_"))) {
    assert.ok(ENV_VARIABLES.includes(name), `${REDIS_DROP_IN}: the program reads no ${name}`);
  }
  // What systemd makes of LoadCredential=ID:PATH: a copy of the file in %d, named ID.
  const credentials = values(dropIn, "Service", "LoadCredential").map((v) => {
    const colon = v.indexOf(":");
    return { id: v.slice(0, colon), path: v.slice(colon + 1) };
  });
  assert.ok(credentials.length > 0, `${REDIS_DROP_IN}: no LoadCredential=`);
  for (const { id, path } of credentials) {
    assert.match(id, /^[A-Za-z0-9_.-]+$/, `${REDIS_DROP_IN}: credential id ${id}`);
    assert.ok(path.startsWith("/etc/"), `${REDIS_DROP_IN}: credential ${id} from ${path}`);
  }
  const dir = await Deno.makeTempDir({ prefix: "startup-lock-credentials-" });
  try {
    for (const { id } of credentials) await Deno.writeTextFile(`${dir}/${id}`, `credential ${id}`);
    const local = Object.fromEntries(
      Object.entries(env).map(([k, v]) => [k, v.replace(credentialsDir(SERVER_UNIT), dir)]),
    );
    const [start] = commands(SERVER_UNIT).filter((c) => c.key === "ExecStart");
    const parsed = parseCommandLine(start!.argv.slice(1), local);
    assert.ok(parsed.command === "serve");
    const { store, stateFile } = parsed.config;
    assert.equal(store.kind, "redis", `${REDIS_DROP_IN}: a Redis STARTUP_LOCK_STORE`);
    assert.equal(stateFile, undefined, "the unit's state file, emptied");
    assert.ok(
      store.kind === "redis" &&
        credentials.some(({ id }) => store.target.password === `credential ${id}`),
      `${REDIS_DROP_IN}: the Redis password is not read from a credential`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
