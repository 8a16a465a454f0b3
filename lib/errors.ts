/**
 * Errors that callers are expected to catch and turn into an exit code or an
 * HTTP status. Anything else that escapes is a bug.
 *
 * @module
 */

/** Bad command-line input or environment: the program prints the message and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** An error that maps to an HTTP status; the handler turns it into a response in one place. */
export class HttpError extends Error {
  override name = "HttpError";
  /** The HTTP status code of the response. */
  readonly status: number;
  /** Extra response headers, such as `Allow` or `Retry-After`. */
  readonly headers: Record<string, string>;

  constructor(
    status: number,
    message: string,
    options: { headers?: Record<string, string>; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = status;
    this.headers = options.headers ?? {};
  }
}

/**
 * What Deno's refusal of a device path (`Requires all access to "/dev/shm/x", run again with the
 * --allow-all flag`) means to a user of the program, whose permissions are fixed.
 */
const DEVICE_PATH = "Deno lets only a program with every permission use a path under /dev " +
  "(/dev/shm included): use a file elsewhere";

/** A one-line description of any thrown value, for logs and user-facing messages. */
export function describeError(error: unknown): string {
  if (error instanceof Deno.errors.NotCapable && error.message.startsWith("Requires all access")) {
    return DEVICE_PATH;
  }
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.message}${cause}`.split("\n")[0] ?? error.name;
  }
  return String(error);
}
