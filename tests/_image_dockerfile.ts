/**
 * Reads the Dockerfile and .dockerignore for tests/image_test.ts, which cannot
 * run Docker: what the builder gathers (the library list, each platform's
 * library folder and loader) and what the final stage copies and runs.
 *
 * The parser knows the Dockerfile syntax this project uses (comments, line
 * continuations, heredocs, JSON-form commands), not every Dockerfile.
 *
 * @module
 */

const ROOT = new URL("../", import.meta.url);

/** One instruction: `COPY --from=builder /a /b` is `{ keyword: "COPY", args: "--from=builder /a /b" }`. */
export interface Instruction {
  keyword: string;
  /** The rest of the instruction, continuation lines joined by a space. */
  args: string;
  /** The body of a heredoc (`COPY <<EOF /path`), ending with a newline. */
  heredoc?: string;
  /** 1-based line where it starts. */
  line: number;
}

/** A build stage: its `FROM` and the instructions after it. */
export interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions. */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.split("\n");
  const stages: Stage[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (/^\s*(#|$)/.test(lines[i]!)) continue;
    const line = i + 1;
    let joined = lines[i]!.trim();
    // Continuation lines; comment lines inside are dropped, as Docker does.
    while (joined.endsWith("\\") && i + 1 < lines.length) {
      joined = joined.slice(0, -1).trimEnd();
      const next = lines[++i]!;
      if (!/^\s*#/.test(next)) joined += ` ${next.trim()}`;
    }
    const [, keyword = "", args = ""] = /^(\S+)\s*(.*)$/.exec(joined) ?? [];
    const instruction: Instruction = { keyword: keyword.toUpperCase(), args, line };
    const heredoc = /<<-?(["']?)(\w+)\1/.exec(args);
    if (heredoc) {
      const end = lines.findIndex((l, j) => j > i && l.trim() === heredoc[2]);
      if (end === -1) throw new Error(`Dockerfile line ${line}: heredoc ${heredoc[2]} never ends`);
      instruction.heredoc = lines.slice(i + 1, end).map((l) => `${l}\n`).join("");
      i = end;
    }
    if (instruction.keyword === "FROM") {
      const [, from = "", name] = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ from, name, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`Dockerfile line ${line}: ${keyword} before any FROM`);
      stage.instructions.push(instruction);
    }
  }
  return stages;
}

/** Where a platform keeps its libraries, and where its executables expect the loader. */
export interface PlatformLibraries {
  /** The library folder, such as `/lib/x86_64-linux-gnu`. */
  libdir: string;
  /** The dynamic loader's path, the executables' ELF interpreter. */
  loader: string;
}

/** A file the final stage copies. */
export type ImageCopy =
  | { kind: "from"; stage: string; source: string; dest: string; line: number }
  | { kind: "heredoc"; content: string; dest: string; line: number };

/** What the image is made of and how it runs, as the Dockerfile says. */
export interface ImageSpec {
  /** The builder stage's `ARG LIBRARIES`: file names in the library folder. */
  libraries: string[];
  /** Per `TARGETARCH` (`amd64`, `arm64`): from the builder's `case`. */
  platforms: Record<string, PlatformLibraries>;
  /** The folder the builder gathers the libraries in, and the final stage copies from. */
  staging: string;
  /** The final stage's base (`scratch`). */
  base: string;
  /** The final stage's copies, in order. */
  copies: ImageCopy[];
  env: Record<string, string>;
  /** `USER`, such as `65532:65532`. */
  user: string;
  expose: string[];
  /** The `HEALTHCHECK` command. */
  healthcheck: string[];
  entrypoint: string[];
}

/** Reads the project's Dockerfile. */
export function readImageSpec(): ImageSpec {
  return imageSpec(Deno.readTextFileSync(new URL("Dockerfile", ROOT)));
}

/** Reads an {@linkcode ImageSpec} from a Dockerfile's text. */
export function imageSpec(text: string): ImageSpec {
  const stages = parseDockerfile(text);
  const final = stages.at(-1);
  if (!final || stages.length < 2) {
    throw new Error("The Dockerfile needs a builder and a final stage");
  }
  const builder = stages.slice(0, -1).flatMap((s) => s.instructions);

  const librariesArg = builder.find((i) => i.keyword === "ARG" && i.args.startsWith("LIBRARIES="));
  const libraries = /^LIBRARIES="([^"]*)"$/.exec(librariesArg?.args ?? "")?.[1]?.split(/\s+/);
  if (!libraries) throw new Error('The builder has no ARG LIBRARIES="…"');

  const platforms: Record<string, PlatformLibraries> = {};
  let staging: string | undefined;
  for (const run of builder.filter((i) => i.keyword === "RUN")) {
    for (const m of run.args.matchAll(/(\w+)\) libdir=(\S+); loader=(\S+) ;;/g)) {
      platforms[m[1]!] = { libdir: m[2]!, loader: m[3]! };
      staging ??= /mkdir -p "(\/\w+)\$libdir"/.exec(run.args)?.[1];
    }
  }
  if (!staging || Object.keys(platforms).length === 0) {
    throw new Error(
      "The builder has no RUN with `ARCH) libdir=…; loader=… ;;` lines and a staging folder",
    );
  }

  const spec: ImageSpec = {
    libraries,
    platforms,
    staging,
    base: final.from,
    copies: [],
    env: {},
    user: "",
    expose: [],
    healthcheck: [],
    entrypoint: [],
  };
  for (const i of final.instructions) {
    const where = `Dockerfile line ${i.line}`;
    switch (i.keyword) {
      case "COPY": {
        const words = i.args.split(/\s+/);
        const dest = words.at(-1)!;
        if (i.heredoc !== undefined) {
          spec.copies.push({ kind: "heredoc", content: i.heredoc, dest, line: i.line });
          break;
        }
        const [from, source, ...rest] = words.slice(0, -1);
        const stage = /^--from=(\S+)$/.exec(from ?? "")?.[1];
        if (!stage || !source || rest.length > 0) {
          throw new Error(`${where}: expected COPY --from=STAGE SOURCE DEST, got COPY ${i.args}`);
        }
        spec.copies.push({ kind: "from", stage, source, dest, line: i.line });
        break;
      }
      case "ENV":
        for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) spec.env[m[1]!] = m[2]!;
        break;
      case "USER":
        spec.user = i.args;
        break;
      case "EXPOSE":
        spec.expose.push(...i.args.split(/\s+/));
        break;
      case "HEALTHCHECK":
        spec.healthcheck = jsonCommand(/\bCMD\s+(\[.*\])$/.exec(i.args)?.[1], where);
        break;
      case "ENTRYPOINT":
        spec.entrypoint = jsonCommand(i.args, where);
        break;
      default:
        // Anything else (a RUN, an ADD, ...) would change the image in ways this reader cannot copy.
        throw new Error(
          `${where}: tests/_image_dockerfile.ts does not know ${i.keyword} in the final stage`,
        );
    }
  }
  return spec;
}

function jsonCommand(text: string | undefined, where: string): string[] {
  const command: unknown = JSON.parse(text ?? "null");
  if (!Array.isArray(command) || !command.every((w) => typeof w === "string")) {
    throw new Error(`${where}: expected a command in JSON form, ["/path", "arg", …]`);
  }
  return command;
}

/** The `TARGETARCH` of this machine. */
export function hostTargetArch(): string {
  const arches: Record<string, string> = { x86_64: "amd64", aarch64: "arm64" };
  return arches[Deno.build.arch] ?? Deno.build.arch;
}

/**
 * Whether .dockerignore keeps `path` (relative to the project) out of the build
 * context: the last pattern matching the path or one of its parent folders wins,
 * and a leading `!` lets it in again. Patterns use `*`, `?` and `**`.
 */
export function dockerIgnores(path: string): boolean {
  const text = Deno.readTextFileSync(new URL(".dockerignore", ROOT));
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map(
    (l) => {
      const include = l.startsWith("!");
      const pattern = (include ? l.slice(1) : l).replace(/^\/+|\/+$/g, "");
      return { include, regex: globRegExp(pattern) };
    },
  );
  const parts = path.split("/");
  const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
  let ignored = false;
  for (const rule of rules) {
    if (prefixes.some((p) => rule.regex.test(p))) ignored = !rule.include;
  }
  return ignored;
}

function globRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === "*" && glob[i + 1] === "*") {
      source += ".*";
      i++;
    } else if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else source += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}
