/**
 * The systemd units of `deploy/systemd/`: `systemd-analyze verify` accepts them
 * without a warning, the server unit has the hardening it promises, the
 * example default file lists the server's variables with their real defaults,
 * and every command line in the units is one the program accepts.
 */
import assert from "node:assert/strict";
import { envName, envNames } from "../lib/args.ts";
import { serveCommand, SERVER_FLAGS } from "../lib/commands/serve.ts";
import { ENV_VARIABLES } from "../lib/permissions.ts";
import { EXECUTABLE, parseCommandLine } from "./_command_line.ts";
import { which } from "./_which.ts";

const DIR = new URL("../deploy/systemd/", import.meta.url);
const SERVER_UNIT = "startup-lock.service";
const DEFAULT_FILE = "startup-lock.default";
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

/** The `Environment=` assignments of a unit, specifiers expanded. */
function environment(unit: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const value of values(readUnit(unit), "Service", "Environment")) {
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

Deno.test("deploy/systemd holds the server unit, its default file and example application units", () => {
  assert.ok(UNITS.includes(SERVER_UNIT), `deploy/systemd has no ${SERVER_UNIT}`);
  assert.ok(UNITS.includes("example-app.service"), "deploy/systemd has no example-app.service");
  assert.ok(Deno.statSync(new URL(DEFAULT_FILE, DIR)).isFile);
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
  // Uncommented, the file changes nothing: the values shown are the defaults. The semaphore's
  // name applies to a Redis store only (beside memory the server refuses it): it is checked
  // beside one.
  const parse = (env: Record<string, string>) => serveCommand.parse([], (n) => env[n]);
  const { STARTUP_LOCK_NAME: _name, ...memory } = Object.fromEntries(settings);
  assert.deepEqual(parse(memory), parse({}));
  const redis = { STARTUP_LOCK_STORE: "redis://redis.internal:6379/0" };
  assert.deepEqual(parse({ ...Object.fromEntries(settings), ...redis }), parse(redis));
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
    await Deno.writeTextFile(`${root}/etc/systemd/system/${name}`, text);
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
  name: "systemd-analyze security rates startup-lock.service at most 2.0 (OK)",
  ignore: !SYSTEMD_ANALYZE,
  fn: async () => {
    const root = await verifyRoot(unitTexts());
    try {
      const { code, output } = await systemdAnalyze([
        "security",
        "--offline=yes",
        `--root=${root}`,
        // Exposure is 0.0 (best) to 10.0, given here in tenths.
        "--threshold=20",
        SERVER_UNIT,
      ]);
      assert.equal(code, 0, `exposure above 2.0:\n${output.split("\n").slice(-3).join("\n")}`);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
